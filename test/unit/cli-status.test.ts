/** `tokend status` for a person: each account on a line, then one in full. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccountSummary } from '../../src/client/index.ts';
import { describeAccount, describeAccounts } from '../../src/cli/status.ts';

const NOW = Date.parse('2026-12-02T10:00:00Z');
const HOUR = 3_600_000;

function account(name: string, more: Partial<AccountSummary> = {}): AccountSummary {
  return {
    name,
    default: false,
    status: 'ok',
    reason: null,
    ready: true,
    expires_at: new Date(NOW + 5 * HOUR + 12 * 60_000).toISOString(),
    expires_in: 5 * 3600 + 12 * 60,
    scope: null,
    obtained_at: null,
    access_token_fingerprint: 'abc',
    refresh_token_fingerprint: 'def',
    replaced_refresh_token_fingerprint: null,
    provider: 'monzo',
    account: {},
    version: 3,
    state_file: `/state/${name}.json`,
    lock_held: true,
    refresh: {
      in_flight: false,
      next_at: new Date(NOW + 4 * HOUR + 52 * 60_000).toISOString(),
      last_attempt_at: null,
      last_success_at: null,
      last_error: null,
      consecutive_failures: 0,
    },
    persist: { ok: true, last_error: null, last_write_at: null },
    ...more,
  };
}

describe('tokend status', () => {
  it('one line per account in configuration order: name (the default marked *), status, access token, next refresh, and why when not ok', () => {
    const lines = describeAccounts(
      [
        account('personal', { default: true }),
        account('work', {
          status: 'failed',
          reason: 'state file /state/work.json is not valid JSON',
          ready: false,
          expires_at: null,
          access_token_fingerprint: null,
          refresh: { ...account('x').refresh, next_at: null },
        }),
      ],
      NOW,
    );
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^ {2}ACCOUNT +STATUS +ACCESS TOKEN +NEXT REFRESH$/);
    assert.match(lines[1]!, /^\* personal +ok +valid for 5h 12m \(until \d\d:\d\d\) +in 4h 52m at \d\d:\d\d$/);
    assert.match(lines[2]!, /^ {2}work +failed +none +not scheduled +— state file \/state\/work\.json is not valid JSON$/);
    // Columns line up.
    assert.equal(lines[1]!.indexOf('ok'), lines[0]!.indexOf('STATUS'));
    assert.equal(lines[2]!.indexOf('none'), lines[0]!.indexOf('ACCESS TOKEN'));
  });

  it('one account in full keeps the rows of the one-account status (status, access token, next refresh, state file, owner)', () => {
    const lines = describeAccount(account('default', { default: true }), { pid: 42, listen: '127.0.0.1:4242' }, NOW).join('\n');
    assert.match(lines, /^account: +default \(the default\)$/m);
    assert.match(lines, /^status: +ok$/m);
    assert.match(lines, /^access token: +valid for 5h 12m \(until \d\d:\d\d\)$/m);
    assert.match(lines, /^next refresh: +in 4h 52m at \d\d:\d\d$/m);
    assert.match(lines, /^state file: +\/state\/default\.json$/m);
    assert.match(lines, /^owner: +pid 42, listening on 127\.0\.0\.1:4242$/m);
  });
});
