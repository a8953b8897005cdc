/**
 * `tokend status`: every account on a line of its own, then one account in
 * full (the default, or `--account`'s) for a person; `--json` prints
 * GET /accounts for a script.
 */
import type { AccountsState, AccountSummary, DaemonOwner, TokendClient } from '../client/index.js';
import { formatClock, formatDuration } from '../config/duration.js';
import { TokendError } from '../shared/errors.js';

function statusText(s: AccountSummary): string {
  return s.status === 'ok' ? 'ok' : `${s.status}${s.reason ? ` — ${s.reason}` : ''}`;
}

function accessTokenText(s: AccountSummary, nowMs: number): string {
  if (s.expires_at) {
    const at = Date.parse(s.expires_at);
    return at > nowMs ? `valid for ${formatDuration(at - nowMs)} (until ${formatClock(at, nowMs)})` : `expired ${formatDuration(nowMs - at)} ago`;
  }
  return s.access_token_fingerprint ? 'expiry unknown' : 'none';
}

function nextRefreshText(s: AccountSummary, nowMs: number): string {
  if (s.refresh.in_flight) return 'in progress';
  if (!s.refresh.next_at) return 'not scheduled';
  const at = Date.parse(s.refresh.next_at);
  return at <= nowMs ? 'now' : `in ${formatDuration(at - nowMs)} at ${formatClock(at, nowMs)}`;
}

/** One line per account, in configuration order, the default marked `*`: name, status, access token, next refresh (and why, when not ok). */
export function describeAccounts(accounts: readonly AccountSummary[], nowMs: number): string[] {
  const rows = accounts.map((s) => [`${s.default ? '*' : ' '} ${s.name}`, s.status, accessTokenText(s, nowMs), nextRefreshText(s, nowMs), s.reason ?? '']);
  const header = ['  ACCOUNT', 'STATUS', 'ACCESS TOKEN', 'NEXT REFRESH', ''];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? (c ? `— ${c}` : '') : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** One account in full. */
export function describeAccount(s: AccountSummary, owner: DaemonOwner, nowMs: number): string[] {
  const lines: string[] = [];
  const row = (label: string, value: string): number => lines.push(`${`${label}:`.padEnd(15)}${value}`);
  row('account', `${s.name}${s.default ? ' (the default)' : ''}`);
  row('status', statusText(s));
  row('access token', accessTokenText(s, nowMs));
  row('next refresh', nextRefreshText(s, nowMs));
  const last = s.refresh.last_success_at ? `${formatDuration(nowMs - Date.parse(s.refresh.last_success_at))} ago` : 'none since start';
  row('last refresh', last);
  if (s.refresh.last_error) {
    row('last error', `${s.refresh.last_error.error}: ${s.refresh.last_error.message} (${s.refresh.consecutive_failures} in a row)`);
  }
  if (!s.persist.ok) row('persistence', `FAILING: ${s.persist.last_error ?? 'unknown error'}`);
  row('state file', s.state_file);
  row('owner', `pid ${owner.pid}${owner.listen ? `, listening on ${owner.listen}` : ''}${s.lock_held ? '' : ' (lock NOT held)'}`);
  row('provider', s.provider);
  return lines;
}

/** The account shown in full: `name`'s, else the default. */
function shownAccount(state: AccountsState, name: string | null): AccountSummary | undefined {
  const wanted = name ?? state.default_account;
  const found = state.accounts.find((a) => a.name === wanted);
  if (found === undefined && name !== null) {
    throw new TokendError('unknown_account', `no account "${name}": the accounts are ${state.accounts.map((a) => a.name).join(', ') || 'none'}`);
  }
  return found;
}

/** Exit 0 when ready: every account, or with `account` that one. */
export async function printStatus(client: TokendClient, opts: { readonly json: boolean; readonly account: string | null }): Promise<number> {
  const state = await client.accounts();
  const shown = shownAccount(state, opts.account);
  if (opts.json) process.stdout.write(`${JSON.stringify(state, null, 2)}\n`);
  else {
    const now = Date.now();
    const lines = describeAccounts(state.accounts, now);
    if (shown) lines.push('', ...describeAccount(shown, state.owner, now));
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return (opts.account === null ? state.ready : shown?.ready) ? 0 : 1;
}
