/**
 * Several accounts in one daemon, as a user drives it: `tokend serve
 * --config FILE` naming accounts against two (or more) rotating providers at
 * once, talked to over HTTP and through the CLI. What it guarantees: each
 * account is served and refreshed on its own, and one account's failure
 * (a refused refresh token, a provider down, a corrupt state file, a lock
 * held by another daemon) never touches another.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AccountsDir,
  accountList,
  accountsSuite,
  callsReach,
  eventually,
  EventStream,
  statuses,
  within,
  type StubAccount,
  type TokenEvent,
} from '../fixtures/accounts.ts';
import { findLeaks, freePort, Proc, runCli, tempDir, type Daemon } from '../fixtures/daemon.ts';
import { MonzoStub } from '../fixtures/monzo-stub.ts';

// Nine providers: no two describes share one, so a daemon a failed test left running cannot disturb the next.
const suite = accountsSuite(9);

const json = (body: unknown) => ({ body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
const readState = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8'));
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const refreshTokensOf = (stub: MonzoStub): string[] => stub.issued.filter((t) => t.startsWith('ref_'));

/** The access token `path` serves: one `account`'s provider issued, never `other`'s. */
async function servesOwn(d: Daemon, path: string, account: StubAccount, other: StubAccount): Promise<string> {
  const r = await d.request('GET', path);
  assert.equal(r.status, 200, `${path}: ${r.text}`);
  const token = String(r.json['access_token']);
  assert.ok(account.stub.issued.includes(token), `${path} served a token the provider of ${account.name} never issued`);
  assert.ok(!other.stub.issued.includes(token), `${path} served a token of ${other.name}`);
  return token;
}

/**
 * Each refresh in `fresh` came before the token it replaced had expired (the
 * one in the account's previous event), give or take `graceMs` for a busy machine.
 */
function assertOnTime(accountEvents: readonly TokenEvent[], fresh: readonly TokenEvent[], graceMs = 1_000): void {
  for (const e of fresh) {
    const previous = accountEvents
      .slice(0, accountEvents.indexOf(e))
      .reverse()
      .find((p) => typeof p.data['expires_at'] === 'string');
    if (previous === undefined) continue;
    const late = e.receivedAtMs - Date.parse(String(previous.data['expires_at']));
    assert.ok(late <= graceMs, `a refresh came ${late} ms after the token it replaced had expired`);
  }
}

/** The one line of `tokend status` that names `account`. */
function statusLine(stdout: string, account: string): string {
  const lines = stdout.split('\n').filter((l) => new RegExp(`^\\W*${account}\\b`).test(l));
  assert.equal(lines.length, 1, `expected one line for account ${account}:\n${stdout}`);
  return lines[0]!;
}

describe('two accounts in one daemon', () => {
  const dir = new AccountsDir();
  let work: StubAccount;
  let home: StubAccount;
  let d: Daemon;
  let all: EventStream;
  let workOnly: EventStream;
  let homeOnly: EventStream;
  /** The access tokens the accounts started with: a stream's first events may repeat them. */
  const firstTokens: string[] = [];
  /** A client command with the config file named, pointed at this daemon. */
  const cli = (args: string[], stdin?: string) => runCli([...args, '--listen', d.address], { TOKEND_CONFIG: dir.configFile }, stdin);

  before(async () => {
    // work: a state file named in the config, and the default account; home: the default path in state_dir.
    work = { name: 'work', stub: suite.stubs[0]!, stateFile: join(dir.dir, 'work-tokens.json') };
    home = { name: 'home', stub: suite.stubs[1]! };
    // Lifetimes of a few seconds, and different: each account refreshes several times within the tests, on its own schedule.
    firstTokens.push(dir.login(work, 3).access_token, dir.login(home, 4).access_token);
    dir.write([work, home], { defaultAccount: 'work' });
    d = await suite.start(dir.configFile);
    all = await EventStream.open(d.address, '/events');
    workOnly = await EventStream.open(d.address, '/events?account=work');
    homeOnly = await EventStream.open(d.address, '/events?account=home');
  });
  after(async () => {
    for (const s of [all, workOnly, homeOnly]) s?.close();
    await d?.stop();
  });

  it("each account refreshes on its own schedule and serves its own token, never the other's; /token serves the default account", async () => {
    const [w, h] = await Promise.all([all.refreshes('work', 2, { exclude: firstTokens }), all.refreshes('home', 2, { exclude: firstTokens })]);
    for (const e of w) assert.ok(work.stub.issued.includes(String(e.data['access_token'])), 'an event of work carried a token of another provider');
    for (const e of h) assert.ok(home.stub.issued.includes(String(e.data['access_token'])), 'an event of home carried a token of another provider');
    // Each provider was only ever shown its own account's refresh tokens.
    for (const a of [work, home]) {
      assert.ok(a.stub.calls.length >= 2);
      for (const c of a.stub.calls) assert.ok(a.stub.issued.includes(c.refreshToken), `${a.name}'s provider was sent a refresh token it never issued`);
    }
    await servesOwn(d, '/accounts/work/token', work, home);
    await servesOwn(d, '/accounts/home/token', home, work);
    await servesOwn(d, '/token', work, home);

    const [workState, homeState, defaultState] = await Promise.all(['/accounts/work/state', '/accounts/home/state', '/state'].map((p) => d.request('GET', p)));
    assert.equal(workState!.status, 200, workState!.text);
    assert.equal(workState!.json['state_file'], work.stateFile);
    assert.equal(homeState!.json['state_file'], join(dir.stateDir, 'home.json'), 'an account without state_file keeps its state in <state_dir>/<name>.json');
    assert.equal(defaultState!.json['state_file'], work.stateFile, 'GET /state is the default account');
    assert.deepEqual(
      findLeaks(workState!.text + homeState!.text, [...refreshTokensOf(work.stub), ...refreshTokensOf(home.stub)]),
      [],
      'a refresh token in /state',
    );

    assert.deepEqual(await statuses(d), { work: 'ok', home: 'ok' });
    const ready = await d.request('GET', '/readyz');
    assert.equal(ready.status, 200, ready.text);
  });

  it('GET /events: every event names its account, and ?account=NAME sends that account only', async () => {
    await Promise.all([workOnly.refreshes('work', 1), homeOnly.refreshes('home', 1), all.refreshes('work', 1), all.refreshes('home', 1)]);
    const named = (s: EventStream): unknown[] => [...new Set(s.events.map((e) => e.data['account']))].sort();
    assert.deepEqual(named(all), ['home', 'work'], 'every event names its account');
    assert.deepEqual(named(workOnly), ['work'], '?account=work sent another account');
    assert.deepEqual(named(homeOnly), ['home'], '?account=home sent another account');
    for (const e of workOnly.events) if (typeof e.data['access_token'] === 'string') assert.ok(work.stub.issued.includes(e.data['access_token']));
    for (const e of homeOnly.events) if (typeof e.data['access_token'] === 'string') assert.ok(home.stub.issued.includes(e.data['access_token']));
  });

  it('an unknown account is 404 unknown_account, naming it, on every route', async () => {
    const never = `acc_never_stored_${randomBytes(6).toString('hex')}`;
    suite.secrets.push(never);
    for (const [method, path, opts] of [
      ['GET', '/accounts/nosuch/token', {}],
      ['GET', '/accounts/nosuch/state', {}],
      ['POST', '/accounts/nosuch/refresh-tokens', {}],
      ['POST', '/accounts/nosuch/set-tokens', json({ access_token: never })],
    ] as const) {
      const r = await d.request(method, path, opts);
      assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
      assert.equal(r.json['error'], 'unknown_account', `${method} ${path}: ${r.text}`);
      assert.match(String(r.json['message']), /nosuch/);
    }
    const stream = await EventStream.open(d.address, '/events?account=nosuch').catch((e: Error) => e);
    if (stream instanceof EventStream) {
      stream.close();
      assert.fail('GET /events?account=nosuch opened a stream');
    }
    assert.match(stream.message, /answered 404/);
  });

  it('set-tokens and refresh-tokens act on the named account alone', async () => {
    const handSet = `acc_handset_${randomBytes(8).toString('hex')}`;
    suite.secrets.push(handSet);
    // Just after a scheduled refresh: none is in flight to replace the tokens set.
    await all.refreshes('home', 1, { from: all.events.length });
    const set = await d.request('POST', '/accounts/home/set-tokens', json({ access_token: handSet, expires_in: 600 }));
    assert.equal(set.status, 200, set.text);
    assert.equal((await d.request('GET', '/accounts/home/token')).json['access_token'], handSet);
    assert.equal(readState(dir.stateFileOf(home))['access_token'], handSet, 'on disk before it is acknowledged');
    await servesOwn(d, '/accounts/work/token', work, home);
    assert.ok(!readFileSync(dir.stateFileOf(work), 'utf8').includes(handSet), "work's state file got home's token");

    const calls = home.stub.calls.length;
    const refreshed = await d.request('POST', '/accounts/home/refresh-tokens');
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.ok(home.stub.calls.length > calls, "home's provider was not asked");
    assert.ok(home.stub.issued.includes(String(refreshed.json['access_token'])), "the refresh answered with a token home's provider never issued");
    // Unprefixed, the default account.
    const byDefault = await d.request('POST', '/refresh-tokens');
    assert.equal(byDefault.status, 200, byDefault.text);
    assert.ok(work.stub.issued.includes(String(byDefault.json['access_token'])), 'POST /refresh-tokens did not act on the default account');
  });

  it('GET /metrics labels each account series with its account', async () => {
    const r = await d.request('GET', '/metrics');
    assert.equal(r.status, 200);
    for (const name of ['work', 'home']) assert.match(r.text, new RegExp(`[{,]account="${name}"`), `no series for account ${name}`);
  });

  it('tokend token -a NAME prints that account token alone; without -a, the default account', async () => {
    for (const flag of ['-a', '--account']) {
      const r = await cli(['token', flag, 'home']);
      suite.keep(r.stderr);
      assert.equal(r.result.code, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, /^\S+\n$/);
      assert.ok(home.stub.issued.includes(r.stdout.trim()), `token ${flag} home printed a token home's provider never issued`);
    }
    const r = await cli(['token']);
    suite.keep(r.stderr);
    assert.equal(r.result.code, 0, r.stderr);
    assert.ok(work.stub.issued.includes(r.stdout.trim()), 'tokend token without -a printed a token other than the default account');
  });

  it('tokend set -a NAME and tokend refresh -a NAME act on that account', async () => {
    const handSet = `acc_handset_${randomBytes(8).toString('hex')}`;
    suite.secrets.push(handSet);
    await all.refreshes('work', 1, { from: all.events.length });
    const from = all.events.length;
    const set = await cli(['set', '-a', 'work', '--stdin'], JSON.stringify({ access_token: handSet, expires_in: 600 }));
    suite.keep(set.output);
    assert.equal(set.result.code, 0, set.output);
    // Work's tokens live 3 s: a refresh already under way when the set arrives may replace the hand-set token right
    // after (its rotated refresh token must be kept), so the set is seen in work's events rather than in a later read.
    await all.waitFor('work serving the hand-set token', (e) => e.data['account'] === 'work' && e.data['access_token'] === handSet, { from });
    assert.ok(!all.of('home').some((e) => e.data['access_token'] === handSet), 'home served the token set for work');
    await servesOwn(d, '/accounts/home/token', home, work);

    const calls = work.stub.calls.length;
    const refresh = await cli(['refresh', '-a', 'work']);
    suite.keep(refresh.output);
    assert.equal(refresh.result.code, 0, refresh.output);
    assert.match(refresh.stdout, /^refreshed: expires at \d{4}-/);
    assert.ok(work.stub.calls.length > calls, "work's provider was not asked");
    assert.notEqual((await d.request('GET', '/accounts/work/token')).json['access_token'], handSet);
  });

  it('tokend status lists every account, one line each; --json gives the same list to scripts', async () => {
    const r = await cli(['status']);
    suite.keep(r.output);
    assert.equal(r.result.code, 0, r.output);
    for (const name of ['work', 'home']) assert.match(statusLine(r.stdout, name), /\bok\b/);

    const j = await cli(['status', '--json']);
    suite.keep(j.stderr);
    assert.equal(j.result.code, 0, j.output);
    const list = accountList(JSON.parse(j.stdout));
    assert.deepEqual(list.map((a) => [a.name, a.status]).sort(), [
      ['home', 'ok'],
      ['work', 'ok'],
    ]);
    assert.deepEqual(findLeaks(j.stdout, [...refreshTokensOf(work.stub), ...refreshTokensOf(home.stub)]), [], 'a refresh token in status --json');
  });

  it('an unknown account on the command line: a clear error naming it, a failing exit code, nothing on stdout', async () => {
    for (const args of [
      ['token', '-a', 'nosuch'],
      ['refresh', '--account', 'nosuch'],
    ]) {
      const r = await cli(args);
      suite.keep(r.output);
      assert.notEqual(r.result.code, 0, `${args.join(' ')} succeeded: ${r.output}`);
      assert.equal(r.stdout, '', args.join(' '));
      assert.match(r.stderr, /account/i, args.join(' '));
      assert.match(r.stderr, /nosuch/, args.join(' '));
    }
  });

  it('SIGTERM flushes every account: each state file holds its provider latest refresh token (a refresh in flight included), exit 0, locks released', async () => {
    home.stub.faults.push({ kind: 'delay', ms: 500 });
    const arrived = home.stub.nextRequest();
    void d.request('POST', '/accounts/home/refresh-tokens').catch(() => null);
    await within(10_000, 'a refresh of home to reach its provider', arrived);
    d.kill('SIGTERM');
    const exit = await d.exited;
    assert.equal(exit.code, 0, d.output);
    for (const a of [work, home]) {
      const file = dir.stateFileOf(a);
      const state = readState(file);
      assert.equal(state['refresh_token'], a.stub.live!.refresh_token, `${a.name}: the latest rotated refresh token is not on disk`);
      assert.equal(state['refresh_intent'] ?? null, null, `${a.name}: a refresh intent left open`);
      assert.ok(!existsSync(`${file}.lock`), `${a.name}: lock left behind`);
      assert.ok(!existsSync(`${file}.owner.json`), `${a.name}: owner record left behind`);
    }
  });
});

describe("one account's failure never touches another", () => {
  it('invalid_grant on one account: it alone needs a login (HTTP, /readyz, status); the other keeps refreshing on time', async () => {
    const dir = new AccountsDir();
    const revoked: StubAccount = { name: 'payroll', stub: suite.stubs[2]! };
    const steady: StubAccount = { name: 'ledger', stub: suite.stubs[3]! };
    dir.login(revoked, 3);
    dir.login(steady, 3);
    dir.write([revoked, steady], { defaultAccount: 'ledger' });
    const d = await suite.start(dir.configFile);
    const events = await EventStream.open(d.address, '/events');
    try {
      // A login elsewhere: the provider refuses the refresh token the daemon holds for this account.
      revoked.stub.login();
      const refused = await events.waitFor(
        'account payroll to need re-authorization',
        (e) => e.data['account'] === 'payroll' && e.data['status'] === 'reauthorization_required',
      );
      const fresh = await events.refreshes('ledger', 2, { from: events.events.indexOf(refused) });
      assertOnTime(events.of('ledger'), fresh);

      assert.deepEqual(await statuses(d), { payroll: 'reauthorization_required', ledger: 'ok' });
      const token = await d.request('GET', '/accounts/payroll/token');
      assert.equal(token.status, 503, token.text);
      assert.equal(token.json['error'], 'reauthorization_required');
      assert.match(String(token.json['message']), /tokend login/);
      const served = await d.request('GET', '/accounts/ledger/token');
      assert.equal(served.status, 200, served.text);
      assert.ok(steady.stub.issued.includes(String(served.json['access_token'])));
      assert.ok(Date.parse(String(served.json['expires_at'])) > Date.now(), 'ledger served an expired token');
      const ready = await d.request('GET', '/readyz');
      assert.equal(ready.status, 503, ready.text);
      assert.match(ready.text, /payroll/, '/readyz must name the account that is not usable');

      // The refused token stays in the file for diagnosis, and nothing retries it.
      const file = readState(dir.stateFileOf(revoked));
      assert.ok(revoked.stub.issued.includes(String(file['refresh_token'])));
      assert.notEqual(file['refresh_token'], revoked.stub.live!.refresh_token);
      const calls = revoked.stub.calls.length;
      assert.equal((await d.request('POST', '/accounts/payroll/refresh-tokens')).status, 503);
      assert.equal(revoked.stub.calls.length, calls, 'a refused refresh token was presented again');

      const status = await runCli(['status', '--listen', d.address], { TOKEND_CONFIG: dir.configFile });
      suite.keep(status.output);
      assert.equal(status.result.code, 1, 'status exits 1 while an account is not usable');
      assert.match(statusLine(status.stdout, 'payroll'), /reauthorization_required/);
      assert.match(statusLine(status.stdout, 'ledger'), /\bok\b/);
    } finally {
      events.close();
    }
    await suite.finish(d);
  });

  it('an outage of one provider (503s, then nothing listening): the other account keeps refreshing on time', async () => {
    const downStub = await new MonzoStub().start();
    suite.stubs.push(downStub);
    const dir = new AccountsDir();
    const down: StubAccount = { name: 'billing', stub: downStub };
    const up: StubAccount = { name: 'ledger', stub: suite.stubs[3]! };
    dir.login(down, 3);
    dir.login(up, 3);
    dir.write([down, up], { defaultAccount: 'ledger' });
    for (let i = 0; i < 100; i++) downStub.faults.push({ kind: 'status', status: 503, body: { code: 'internal_service', message: 'down for maintenance' } });
    const d = await suite.start(dir.configFile);
    const events = await EventStream.open(d.address, '/events?account=ledger');
    try {
      await callsReach(downStub, 2, 15_000, 'two refreshes of account billing to fail');
      const explicit = await d.request('POST', '/accounts/billing/refresh-tokens');
      assert.equal(explicit.status, 502, explicit.text);
      assert.equal(explicit.json['error'], 'upstream_error');
      const from = events.events.length;
      await downStub.close();
      const fresh = await events.refreshes('ledger', 2, { from });
      assertOnTime(events.of('ledger'), fresh);
      const served = await d.request('GET', '/accounts/ledger/token');
      assert.equal(served.status, 200, served.text);
      assert.ok(up.stub.issued.includes(String(served.json['access_token'])));

      const state = await d.request('GET', '/accounts/billing/state');
      const refresh = state.json['refresh'] as Record<string, unknown>;
      assert.notEqual(refresh['last_error'], null, state.text);
      assert.ok(Number(refresh['consecutive_failures']) >= 1, state.text);
      assert.equal((await statuses(d))['ledger'], 'ok');
      // By now the token of billing has expired: not ready, and /readyz says which account.
      const ready = await d.request('GET', '/readyz');
      assert.equal(ready.status, 503, ready.text);
      assert.match(ready.text, /billing/);
    } finally {
      events.close();
    }
    await suite.finish(d);
  });
});

describe('state files and locks', () => {
  it('a corrupt state file: that account starts as failed with its file untouched, and the other serves', async () => {
    const dir = new AccountsDir();
    const fine: StubAccount = { name: 'current', stub: suite.stubs[4]! };
    const broken: StubAccount = { name: 'archive', stub: suite.stubs[5]! };
    dir.login(fine, 3600);
    const brokenFile = dir.stateFileOf(broken);
    const corrupt = '{"access_token": "acc_truncat';
    writeFileSync(brokenFile, corrupt, { mode: 0o600 });
    dir.write([fine, broken], { defaultAccount: 'current' });
    const d = await suite.start(dir.configFile);
    await d.waitForLine((l) => l.includes(brokenFile) && l.includes('not valid JSON'));
    assert.deepEqual(await statuses(d), { current: 'ok', archive: 'failed' });
    const token = await d.request('GET', '/accounts/current/token');
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json['access_token'], fine.stub.live!.access_token);
    const none = await d.request('GET', '/accounts/archive/token');
    assert.notEqual(none.status, 200, none.text);
    assert.equal(typeof none.json['error'], 'string', none.text);
    const ready = await d.request('GET', '/readyz');
    assert.equal(ready.status, 503, ready.text);
    assert.match(ready.text, /archive/);
    assert.equal(readFileSync(brokenFile, 'utf8'), corrupt);
    await suite.finish(d);
    assert.equal(readFileSync(brokenFile, 'utf8'), corrupt, 'the corrupt file was written over at stop');
    assert.ok(!d.output.includes('acc_truncat'), 'the content of the corrupt file was printed');
    for (const a of [fine, broken]) assert.ok(!existsSync(`${dir.stateFileOf(a)}.lock`), `${a.name}: lock left behind`);
  });

  it("a second daemon configured with one of the first one's accounts exits 75 naming the owner; the first serves on", async () => {
    const dir = new AccountsDir();
    const mine: StubAccount = { name: 'mine', stub: suite.stubs[4]! };
    const shared: StubAccount = { name: 'shared', stub: suite.stubs[5]! };
    dir.login(mine, 3600);
    dir.login(shared, 3600);
    dir.write([mine, shared], { defaultAccount: 'mine' });
    const first = await suite.start(dir.configFile);

    // Its own account (not logged in yet), and `shared` by the first daemon's state file.
    const other = new AccountsDir();
    const own: StubAccount = { name: 'own', stub: suite.stubs[4]! };
    other.write([own, { ...shared, stateFile: dir.stateFileOf(shared) }], { defaultAccount: 'own' });
    const second = await runCli(['serve', '--config', other.configFile], { TOKEND_LISTEN: '127.0.0.1:0' });
    suite.keep(second.output);
    assert.equal(second.result.code, 75, second.output);
    assert.match(second.stderr, new RegExp(`owned by pid ${first.pid}\\b`));
    assert.equal(second.stdout, '');
    assert.ok(!existsSync(`${other.stateFileOf(own)}.lock`), "the refused daemon left its own account's lock behind");

    for (const a of [mine, shared]) {
      const r = await first.request('GET', `/accounts/${a.name}/token`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json['access_token'], a.stub.live!.access_token);
    }
    assert.deepEqual(await statuses(first), { mine: 'ok', shared: 'ok' });
    await suite.finish(first);
  });
});

describe('reload (SIGHUP)', () => {
  const dir = new AccountsDir();
  let alpha: StubAccount;
  let beta: StubAccount;
  let gamma: StubAccount;
  let d: Daemon;

  before(async () => {
    alpha = { name: 'alpha', stub: suite.stubs[6]! };
    beta = { name: 'beta', stub: suite.stubs[7]!, redirectUri: `http://127.0.0.1:${await freePort()}/authorization-code` };
    gamma = { name: 'gamma', stub: suite.stubs[8]! };
    for (const a of [alpha, beta, gamma]) dir.login(a, 3600);
    dir.write([alpha, beta], { defaultAccount: 'alpha' });
    d = await suite.start(dir.configFile);
  });
  after(async () => {
    await d?.stop();
  });

  it('an account added to the file starts and one removed stops: its refresh in flight saved, its lock released for `tokend login -a`', async () => {
    assert.deepEqual(await statuses(d), { alpha: 'ok', beta: 'ok' });
    const alphaToken = (await d.request('GET', '/accounts/alpha/token')).json['access_token'];
    const alphaCalls = alpha.stub.calls.length;
    const betaFile = dir.stateFileOf(beta);

    // Removed while a refresh of it waits for its provider.
    beta.stub.faults.push({ kind: 'delay', ms: 800 });
    const arrived = beta.stub.nextRequest();
    const refresh = d.request('POST', '/accounts/beta/refresh-tokens').catch(() => null);
    await within(10_000, 'the refresh of beta to reach its provider', arrived);
    dir.write([alpha, gamma], { defaultAccount: 'alpha' });
    d.kill('SIGHUP');
    await eventually('gamma to start and beta to go', async () => {
      const s = await statuses(d);
      return s['gamma'] === 'ok' && !('beta' in s) && JSON.stringify(s);
    });
    await eventually("beta's lock and owner record to go", async () => !existsSync(`${betaFile}.lock`) && !existsSync(`${betaFile}.owner.json`));
    await refresh;
    const saved = readState(betaFile);
    assert.equal(saved['refresh_token'], beta.stub.live!.refresh_token, 'the refresh in flight at the reload did not reach the file');
    assert.equal(saved['refresh_intent'] ?? null, null);

    assert.equal(d.child.exitCode, null, 'the daemon exited on SIGHUP');
    assert.deepEqual(await statuses(d), { alpha: 'ok', gamma: 'ok' });
    assert.equal((await d.request('GET', '/accounts/gamma/token')).json['access_token'], gamma.stub.live!.access_token);
    assert.equal((await d.request('GET', '/accounts/alpha/token')).json['access_token'], alphaToken, 'alpha was disturbed by the reload');
    assert.equal(alpha.stub.calls.length, alphaCalls);
    const gone = await d.request('GET', '/accounts/beta/token');
    assert.equal(gone.status, 404, gone.text);
    assert.equal(gone.json['error'], 'unknown_account');

    // The released account can be taken: `tokend login -a beta` with a config that still names it stores into its file.
    const naming = dir.write([alpha, beta], { defaultAccount: 'alpha', file: 'with-beta.toml' });
    const login = suite.track(new Proc(['login', '-a', 'beta', '--no-browser', '--timeout', '30'], { TOKEND_CONFIG: naming }));
    const url = new URL((await login.waitForLine((l) => l.startsWith('  http'))).trim());
    await login.waitForLine((l) => l.startsWith('waiting for the authorization callback'));
    const hop = await fetch(url, { redirect: 'manual' });
    const callback = await fetch(hop.headers.get('location')!);
    assert.equal(callback.status, 200);
    await callback.text();
    const exit = await login.exited;
    assert.equal(exit.code, 0, login.output);
    assert.match(login.stderr, new RegExp(`stored by ${escape(betaFile)}`));
    assert.equal(readState(betaFile)['access_token'], beta.stub.live!.access_token);
  });

  it('a file with problems is refused on SIGHUP: the problems are logged and every account keeps running', async () => {
    const running = await statuses(d);
    assert.deepEqual(running, { alpha: 'ok', gamma: 'ok' });
    // Line 4 (after state_dir, listen and default_account): a misspelt key; gamma is also dropped, which must not happen.
    dir.write([alpha], { defaultAccount: 'alpha', head: 'lisen = "127.0.0.1:1"' });
    d.kill('SIGHUP');
    await d.waitForLine((l) => l.includes(`${dir.configFile}:4: lisen: unknown key`));
    assert.equal(d.child.exitCode, null, 'the daemon exited on an invalid file');
    assert.deepEqual(await statuses(d), running);
    assert.equal((await d.request('GET', '/accounts/gamma/token')).json['access_token'], gamma.stub.live!.access_token);
    const refreshed = await d.request('POST', '/accounts/gamma/refresh-tokens');
    assert.equal(refreshed.status, 200, refreshed.text);
    assert.equal(readState(dir.stateFileOf(gamma))['refresh_token'], gamma.stub.live!.refresh_token);
    assert.equal((await d.request('GET', '/accounts/alpha/token')).status, 200);
    await suite.finish(d);
  });
});

describe('the config file', () => {
  it('a file with several problems: each on its own line with its line number, exit 2, nothing started', async () => {
    const dir = tempDir('tokend-accounts-');
    const file = join(dir, 'config.toml');
    const inlineSecret = `inline-secret-${randomBytes(6).toString('hex')}`;
    suite.secrets.push(inlineSecret);
    const text = [
      'listen = "here"', // 1
      'lisen = "127.0.0.1:1"', // 2
      `state_dir = ${JSON.stringify(join(dir, 'state'))}`, // 3
      'default_account = "work"', // 4
      '', // 5
      '[accounts.work]', // 6
      'provider = "custom"', // 7
      'token_url = "ftp://example.com/token"', // 8
      'client_id = "w"', // 9
      `client_secret = "${inlineSecret}"`, // 10
      '', // 11
      '[accounts.Home]', // 12
      'client_id = "h"', // 13
      'refresh_lead = "5 minutes"', // 14
    ];
    writeFileSync(file, `${text.join('\n')}\n`, { mode: 0o600 });
    const expected: Array<[number, string, RegExp]> = [
      [1, 'listen', /"here" is not HOST:PORT/],
      [2, 'lisen', /unknown key/],
      [8, 'accounts.work.token_url', /not an http\(s\) URL/],
      [10, 'accounts.work.client_secret', /client_secret_file/],
      [12, 'accounts.Home', /account name/],
      [14, 'accounts.Home.refresh_lead', /not a duration/],
    ];
    for (const [args, env] of [
      [['serve', '--config', file], {}],
      [['serve'], { TOKEND_CONFIG: file }],
    ] as const) {
      const r = await runCli([...args], env);
      suite.keep(r.output);
      assert.equal(r.result.code, 2, r.output);
      assert.equal(r.stdout, '');
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, expected.length, r.stderr);
      for (const [line, key, what] of expected) {
        const prefix = `${file}:${line}: ${key}: `;
        const found = lines.filter((l) => l.replace(/^tokend: /, '').startsWith(prefix));
        assert.equal(found.length, 1, `expected one line starting ${prefix}:\n${r.stderr}`);
        assert.match(found[0]!, what);
      }
      assert.ok(!existsSync(join(dir, 'state')), 'something started: the state directory was created');
    }
  });
});
