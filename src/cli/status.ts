/** `tokend status`: the daemon's state for a person (or `--json` for a script). */
import type { DaemonState, TokendClient } from '../client/index.js';
import { formatClock, formatDuration } from '../config/duration.js';

export function describeState(s: DaemonState, nowMs: number): string[] {
  const lines: string[] = [];
  const row = (label: string, value: string): number => lines.push(`${`${label}:`.padEnd(15)}${value}`);
  row('status', s.status === 'ok' ? 'ok' : `${s.status}${s.reason ? ` — ${s.reason}` : ''}`);
  if (s.expires_at) {
    const at = Date.parse(s.expires_at);
    row('access token', at > nowMs ? `valid for ${formatDuration(at - nowMs)} (until ${formatClock(at, nowMs)})` : `expired ${formatDuration(nowMs - at)} ago`);
  } else {
    row('access token', s.access_token_fingerprint ? 'expiry unknown' : 'none');
  }
  if (s.refresh.in_flight) row('next refresh', 'in progress');
  else if (s.refresh.next_at) {
    const at = Date.parse(s.refresh.next_at);
    row('next refresh', at <= nowMs ? 'now' : `in ${formatDuration(at - nowMs)} at ${formatClock(at, nowMs)}`);
  } else row('next refresh', 'not scheduled');
  const last = s.refresh.last_success_at ? `${formatDuration(nowMs - Date.parse(s.refresh.last_success_at))} ago` : 'none since start';
  row('last refresh', last);
  if (s.refresh.last_error) {
    row('last error', `${s.refresh.last_error.error}: ${s.refresh.last_error.message} (${s.refresh.consecutive_failures} in a row)`);
  }
  if (!s.persist.ok) row('persistence', `FAILING: ${s.persist.last_error ?? 'unknown error'}`);
  row('state file', s.state_file);
  row('owner', `pid ${s.owner.pid}${s.owner.listen ? `, listening on ${s.owner.listen}` : ''}${s.lock_held ? '' : ' (lock NOT held)'}`);
  row('provider', s.provider);
  return lines;
}

export async function printStatus(client: TokendClient, json: boolean): Promise<number> {
  const state = await client.state();
  if (json) process.stdout.write(`${JSON.stringify(state, null, 2)}\n`);
  else process.stdout.write(`${describeState(state, Date.now()).join('\n')}\n`);
  return state.ready ? 0 : 1;
}
