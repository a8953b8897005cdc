/** Human-readable durations and times: shown by `tokend status`, written in the config file. */

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  const sec = s % 60;
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  if (m > 0) return sec > 0 && m < 10 ? `${m}m ${sec}s` : `${m}m`;
  return `${sec}s`;
}

/** Local wall-clock time, HH:MM, with the date when it is not today. */
export function formatClock(atMs: number, nowMs: number): string {
  const at = new Date(atMs);
  const pad = (n: number): string => String(n).padStart(2, '0');
  const hm = `${pad(at.getHours())}:${pad(at.getMinutes())}`;
  return new Date(nowMs).toDateString() === at.toDateString() ? hm : `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${hm}`;
}

const unitMs = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000, ms: 1 } as const;
const unitOrder = Object.keys(unitMs);

/**
 * Milliseconds in a duration as a person writes one: `"90s"`, `"5m"`, `"12h"`,
 * `"90d"`, `"1h30m"`, or what `formatDuration` prints (`"5h 12m"`). Whole
 * numbers only, each unit once and largest first; null for anything else
 * (a bare number would leave the unit to guesswork).
 */
export function parseDuration(text: string): number | null {
  const parts = /^(\d{1,9})(ms|d|h|m|s)(?: ?(\d{1,9})(ms|d|h|m|s))*$/.test(text) ? text.matchAll(/(\d+)(ms|d|h|m|s)/g) : null;
  if (parts === null) return null;
  let total = 0;
  let last = -1;
  for (const [, digits, unit] of parts) {
    const order = unitOrder.indexOf(unit!);
    if (order <= last) return null;
    last = order;
    total += Number(digits) * unitMs[unit as keyof typeof unitMs];
  }
  return Number.isSafeInteger(total) ? total : null;
}
