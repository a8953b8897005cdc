/**
 * `tokend reload` (POST /reload), as a user drives it: edit the config file,
 * run the command, read what changed. What it guarantees: it returns once the
 * accounts run as the file says (an added account serves, a removed one has
 * released its lock), an invalid file changes nothing and says why (exit 2),
 * reloads never overlap, and a daemon configured by the environment says it
 * has nothing to reload.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AccountsDir, accountsSuite, statuses, type StubAccount } from '../fixtures/accounts.ts';
import { Daemon, runCli, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';

const suite = accountsSuite(4);

const readState = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8'));

describe('tokend reload', () => {
  const dir = new AccountsDir();
  let alpha: StubAccount;
  let beta: StubAccount;
  let gamma: StubAccount;
  let d: Daemon;
  /** `tokend reload` pointed at this daemon, its output kept for the scan. */
  const reload = async () => {
    const r = await runCli(['reload', '--listen', d.address], {});
    suite.track(r);
    return r;
  };

  before(async () => {
    alpha = { name: 'alpha', stub: suite.stubs[0]! };
    beta = { name: 'beta', stub: suite.stubs[1]! };
    gamma = { name: 'gamma', stub: suite.stubs[2]! };
    for (const a of [alpha, beta, gamma]) dir.login(a, 3600);
    dir.write([alpha, beta], { defaultAccount: 'alpha' });
    d = await suite.start(dir.configFile);
  });
  after(async () => {
    await d?.stop();
  });

  it('an account added to the file serves and one removed has released its lock when the command returns; the rest are untouched', async () => {
    assert.deepEqual(await statuses(d), { alpha: 'ok', beta: 'ok' });
    const alphaCalls = alpha.stub.calls.length;
    const betaFile = dir.stateFileOf(beta);
    assert.ok(existsSync(`${betaFile}.lock`));

    dir.write([alpha, gamma], { defaultAccount: 'alpha' });
    const r = await reload();
    assert.equal(r.result.code, 0, r.output);
    assert.equal(r.stdout, 'started: gamma\nstopped: beta\nunchanged: alpha\n');
    assert.equal(r.stderr, '');

    // No waiting: the answer came once the accounts were brought to the file.
    assert.deepEqual(await statuses(d), { alpha: 'ok', gamma: 'ok' });
    const token = await d.request('GET', '/accounts/gamma/token');
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json['access_token'], gamma.stub.live!.access_token);
    assert.equal((await d.request('GET', '/accounts/beta/token')).json['error'], 'unknown_account');
    assert.ok(!existsSync(`${betaFile}.lock`), "beta's lock is still held");
    assert.ok(!existsSync(`${betaFile}.owner.json`), "beta's owner record is still there");
    assert.equal(readState(betaFile)['refresh_token'], beta.stub.live!.refresh_token);
    assert.equal(alpha.stub.calls.length, alphaCalls, 'alpha was disturbed by the reload');
    const log = await d.waitForLog('configuration reloaded');
    assert.deepEqual([log['added'], log['removed'], log['restarted']], [['gamma'], ['beta'], []]);

    // Another daemon can take the released account.
    const other = new AccountsDir();
    other.write([{ ...beta, stateFile: betaFile }]);
    const second = await suite.start(other.configFile);
    const taken = await second.request('GET', '/accounts/beta/token');
    assert.equal(taken.status, 200, taken.text);
    assert.equal(taken.json['access_token'], beta.stub.live!.access_token);
    await suite.finish(second);
  });

  it('a file that does not validate: each problem on its own line, exit 2, and every account keeps running as before', async () => {
    const running = await statuses(d);
    assert.deepEqual(running, { alpha: 'ok', gamma: 'ok' });
    // Line 4 (after state_dir, listen and default_account): a misspelt key; gamma is also dropped, which must not happen.
    dir.write([alpha], { defaultAccount: 'alpha', head: 'lisen = "127.0.0.1:1"' });
    const r = await reload();
    assert.equal(r.result.code, 2, r.output);
    assert.equal(r.stdout, '');
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 2, r.stderr);
    assert.ok(lines[0]!.startsWith(`tokend: ${dir.configFile}:4: lisen: unknown key`), lines[0]);
    assert.equal(lines[1], `tokend: config reload refused: 1 problem in ${dir.configFile}; the configuration in use goes on unchanged`);
    // The problem in the daemon's own words, as its log line has it.
    const logged = await d.waitForLog(/^config reload refused: /);
    assert.equal(`tokend: ${String(logged['msg']).slice('config reload refused: '.length)}`, lines[0]);

    assert.deepEqual(await statuses(d), running);
    assert.equal((await d.request('GET', '/accounts/gamma/token')).json['access_token'], gamma.stub.live!.access_token);
    const refreshed = await d.request('POST', '/accounts/gamma/refresh-tokens');
    assert.equal(refreshed.status, 200, refreshed.text);
  });

  it('two reloads at once: the second waits for the first, then reads the file itself (one reports beta started, the other unchanged)', async () => {
    dir.write([alpha, gamma, beta], { defaultAccount: 'alpha' });
    const [one, two] = await Promise.all([reload(), reload()]);
    for (const r of [one, two]) {
      assert.equal(r.result.code, 0, r.output);
      assert.equal(r.stderr, '');
    }
    const outs = [one.stdout, two.stdout].sort();
    assert.deepEqual(outs, ['started: beta\nunchanged: alpha\nunchanged: gamma\n', 'unchanged: alpha\nunchanged: gamma\nunchanged: beta\n']);
    assert.deepEqual(await statuses(d), { alpha: 'ok', gamma: 'ok', beta: 'ok' });
    await suite.finish(d);
  });
});

describe('tokend reload against a daemon configured by the environment', () => {
  it('says there is no config file to read again, exits 2 (reload_unavailable), and the daemon serves on', async () => {
    const stub = suite.stubs[3]!;
    const d = suite.track(await Daemon.start(stubEnv(stub, join(tempDir(), 'tokens.json'))));
    const r = suite.track(await runCli(['reload', '--listen', d.address], {}));
    assert.equal(r.result.code, 2, r.output);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tokend: nothing to reload: this daemon was configured by the environment, not a config file .*\n$/);
    const http = await d.request('POST', '/reload', { headers: {} });
    assert.equal(http.status, 409, http.text);
    assert.equal(http.json['error'], 'reload_unavailable');
    assert.equal((await d.request('GET', '/healthz')).status, 200);
    assert.deepEqual(await statuses(d), { default: 'waiting_for_login' });
    await suite.finish(d);
  });
});
