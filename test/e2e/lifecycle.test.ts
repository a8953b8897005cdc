import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Pool } from 'undici';
import { Daemon, parseLog, runCli, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();
const { outputs } = suite;

function keep<T extends { output: string }>(p: T): T {
  outputs.push(p.output);
  return p;
}

/** A second `tokend serve` on a state file another daemon owns; it runs to its exit. */
const secondDaemon = async (stateFile: string) => keep(await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0' }));

describe('ownership of the state file', () => {
  it("a second daemon on the same file exits 75 naming the owner (pid, address), and leaves the owner's files alone", async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const first = await Daemon.start(stubEnv(suite.stub, stateFile));
    const inFlight = join(dir, '.tokens.json.tmp-inflight');
    writeFileSync(inFlight, '{"access_token": "half wr');
    const second = await secondDaemon(stateFile);
    assert.equal(second.result.code, 75);
    assert.ok(existsSync(inFlight), "the second daemon removed the owner's temp file");
    assert.match(second.stderr, new RegExp(`owned by pid ${first.pid} on .* listening on ${first.address.replace(/\./g, '\\.')}`));
    assert.equal(second.stdout, '');
    assert.equal((await first.request('GET', '/token')).status, 200, 'the first daemon must keep serving');
    assert.equal((await first.stop()).code, 0);
    keep(first);
  });

  it('while the owner thread starts, /healthz answers, /readyz says starting and GET /token waits for the state', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const release = join(dir, 'release-start');
    const d = new Daemon({ ...stubEnv(suite.stub, stateFile), TOKEND_TEST_HOOKS: '1', TOKEND_TEST_HOLD_START: release });
    d.address = String((await d.waitForLog('listening; the owner thread is starting'))['listen']);
    assert.equal((await d.request('GET', '/healthz')).status, 200);
    const ready = await d.request('GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.equal(ready.json['error'], 'not_ready');
    assert.match(String(ready.json['message']), /starting/);
    let released = false;
    const token = d.request('GET', '/token').then((r) => ({ ...r, afterRelease: released }));
    // A round trip after it: the token request has had every chance to be answered
    // early (a missing gate answers it at once); then let the owner start.
    await d.request('GET', '/healthz');
    released = true;
    writeFileSync(release, '');
    const answer = await token;
    assert.equal(answer.status, 200);
    assert.equal(answer.afterRelease, true, 'GET /token was answered before the owner had loaded the state');
    assert.equal(answer.json['access_token'], suite.stub.live!.access_token);
    await d.waitForLog('tokend serving');
    assert.equal((await d.request('GET', '/readyz')).status, 200);
    assert.equal((await d.stop()).code, 0);
    keep(d);
  });

  it('after SIGKILL, a restart takes the lock over at once (the recorded pid is gone), removes the temp files left, and serves the same token', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const first = await Daemon.start(stubEnv(suite.stub, stateFile));
    const token = (await first.request('GET', '/token')).json['access_token'];
    const left = join(dir, '.tokens.json.tmp-crashed');
    writeFileSync(left, '{"access_token": "half wr');
    first.kill('SIGKILL');
    await first.exited;
    assert.ok(existsSync(`${stateFile}.lock`), 'SIGKILL leaves the lock directory behind');
    const started = Date.now();
    const second = await Daemon.start(stubEnv(suite.stub, stateFile));
    assert.ok(Date.now() - started < 5_000, 'must not wait out the stale timeout');
    assert.ok(!existsSync(left), 'a temp file left by a crash must be removed at start');
    assert.equal((await second.request('GET', '/token')).json['access_token'], token);
    assert.equal((await second.stop()).code, 0);
    keep(second);
  });

  it('on clean exit the lock and the owner record are removed', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    assert.ok(existsSync(`${stateFile}.owner.json`));
    assert.equal((await d.stop()).code, 0);
    assert.ok(!existsSync(`${stateFile}.lock`));
    assert.ok(!existsSync(`${stateFile}.owner.json`));
    keep(d);
  });
});

describe('corrupt state', () => {
  it('refuses to start on a corrupt file, exit 1, with a clear message; the file is untouched', async () => {
    const dir = tempDir();
    const stateFile = join(dir, 'tokens.json');
    const corrupt = '{"access_token": "acc_truncat';
    writeFileSync(stateFile, corrupt);
    const r = keep(await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0' }));
    assert.equal(r.result.code, 1);
    assert.match(r.stderr, /state file .*tokens\.json is not valid JSON/);
    assert.ok(!r.stderr.includes('acc_truncat'));
    assert.equal(readFileSync(stateFile, 'utf8'), corrupt);
    assert.ok(!existsSync(`${stateFile}.lock`), 'the lock is released on a failed start');
  });

  it('--move-corrupt-aside moves it aside and starts waiting for login', async () => {
    const dir = tempDir();
    const stateFile = join(dir, 'tokens.json');
    writeFileSync(stateFile, 'not json');
    const d = await Daemon.start(stubEnv(suite.stub, stateFile), ['--move-corrupt-aside']);
    const aside = readdirSync(dir).find((n) => n.startsWith('tokens.json.corrupt-'));
    assert.ok(aside, 'moved aside');
    assert.equal(readFileSync(join(dir, aside), 'utf8'), 'not json');
    assert.equal((await d.request('GET', '/state')).json['status'], 'waiting_for_login');
    assert.equal((await d.stop()).code, 0);
    keep(d);
  });
});

describe('signals', () => {
  it('SIGTERM during a refresh loses nothing: the refresh completes, is on disk, and a restart serves a token the provider accepts', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    suite.stub.faults.push({ kind: 'delay', ms: 500 });
    const arrived = suite.stub.nextRequest();
    const refresh = d.request('POST', '/refresh-tokens').catch(() => null);
    await arrived;
    d.kill('SIGTERM');
    const exit = await d.exited;
    await refresh;
    keep(d);
    assert.equal(exit.code, 0, d.output);
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.refresh_token, suite.stub.live!.refresh_token, 'the rotated refresh token is on disk');
    assert.equal(file.refresh_intent, null);
    const again = await Daemon.start(stubEnv(suite.stub, stateFile));
    const token = (await again.request('GET', '/token')).json['access_token'] as string;
    assert.ok(suite.stub.accepts(token));
    assert.equal((await again.request('POST', '/refresh-tokens')).status, 200, 'the stored refresh token still works');
    assert.equal((await again.stop()).code, 0);
    keep(again);
  });

  it('SIGTERM while the owner thread is still starting: once it has started, a clean stop (exit 0, lock released)', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const before = readFileSync(stateFile, 'utf8');
    const release = join(dir, 'release-start');
    const d = new Daemon({ ...stubEnv(suite.stub, stateFile), TOKEND_TEST_HOOKS: '1', TOKEND_TEST_HOLD_START: release });
    await d.waitForLog('listening; the owner thread is starting');
    d.kill('SIGTERM');
    writeFileSync(release, '');
    const exit = await d.exited;
    keep(d);
    assert.equal(exit.code, 0, d.output);
    assert.ok(!existsSync(`${stateFile}.lock`), 'the lock is released');
    assert.equal(JSON.parse(readFileSync(stateFile, 'utf8')).refresh_token, JSON.parse(before).refresh_token);
  });

  it('SIGINT exits 0 with the lock released', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    assert.equal((await d.stop('SIGINT')).code, 0);
    assert.ok(!existsSync(`${stateFile}.lock`));
    keep(d);
  });

  it('two SIGTERMs back to back are one stop request: the refresh in flight completes and its new pair is on disk', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const d = await Daemon.start(stubEnv(suite.stub, stateFile));
    suite.stub.faults.push({ kind: 'delay', ms: 1_500 });
    const arrived = suite.stub.nextRequest();
    void d.request('POST', '/refresh-tokens').catch(() => null);
    await arrived;
    // Back to back, as GNU timeout sends them; the second after the first was seen, so the kernel cannot merge them.
    d.kill('SIGTERM');
    await d.waitForLog('shutting down');
    d.kill('SIGTERM');
    const exit = await d.exited;
    keep(d);
    assert.equal(exit.code, 0, d.output);
    assert.match(d.stderr, /the same stop request/);
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.refresh_token, suite.stub.live!.refresh_token, 'the rotated refresh token is on disk');
    assert.equal(file.refresh_intent, null);
    assert.ok(!existsSync(`${stateFile}.lock`));
  });

  it('a deliberate second SIGINT stops waiting for the provider: a prompt clean exit, the old pair intact and the intent left open', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const before = suite.stub.live!;
    const d = await Daemon.start(stubEnv(suite.stub, stateFile, { TOKEND_SHUTDOWN_TIMEOUT_MS: '120000', TOKEND_UPSTREAM_TIMEOUT_MS: '120000' }));
    suite.stub.faults.push({ kind: 'hang' });
    const arrived = suite.stub.nextRequest();
    void d.request('POST', '/refresh-tokens').catch(() => null);
    await arrived;
    d.kill('SIGINT');
    await d.waitForLog('shutting down');
    // Past the window in which a repeated signal is the same request.
    await new Promise((r) => setTimeout(r, 1_200));
    d.kill('SIGINT');
    await d.waitForLog('second stop request: no longer waiting for the provider');
    // Without the hurry the daemon would wait out its 120 s timeouts for a provider that never answers.
    const exit = await Promise.race([d.exited, new Promise<null>((r) => setTimeout(() => r(null), 30_000).unref())]);
    if (exit === null) d.kill('SIGKILL');
    keep(d);
    assert.ok(exit, 'the daemon still waited for the provider after the second SIGINT');
    assert.equal(exit.code, 0, d.output);
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.refresh_token, before.refresh_token, 'the file holds the still-valid token');
    assert.equal(typeof file.refresh_intent?.refresh_token_fingerprint, 'string', 'the interrupted refresh left its intent');
    assert.ok(!existsSync(`${stateFile}.lock`));
    const again = await Daemon.start(stubEnv(suite.stub, stateFile));
    await again.waitForLog(/a refresh was interrupted/);
    assert.equal((await again.stop()).code, 0);
    keep(again);
  });
});

describe('the owner thread', () => {
  it('when it dies, calls in flight fail instead of hanging (naming the cause), and a new one reloads from the file and serves', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const crash = join(dir, 'crash-owner');
    const d = await Daemon.start({ ...stubEnv(suite.stub, stateFile), TOKEND_TEST_HOOKS: '1', TOKEND_TEST_CRASH_OWNER: crash });
    const token = (await d.request('GET', '/token')).json['access_token'];
    suite.stub.faults.push({ kind: 'hang' });
    const arrived = suite.stub.nextRequest();
    const pending = d.request('POST', '/refresh-tokens');
    await arrived;
    writeFileSync(crash, 'throw');
    const failed = await pending;
    assert.equal(failed.status, 500);
    assert.match(String(failed.json['message']), /owner thread stopped before answering \(test hook: owner thread crashed \(throw\)\); it is being restarted/);
    const died = await d.waitForLog('owner thread died; starting a new one from the state file');
    assert.match(String(died['cause']), /test hook: owner thread crashed/);
    await d.waitForLog('owner thread restarted');
    assert.equal((await d.request('GET', '/token')).json['access_token'], token, 'reloaded from the file');
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 200, r.text);
    assert.equal(JSON.parse(readFileSync(stateFile, 'utf8')).refresh_token, suite.stub.live!.refresh_token);
    const restarts = /^tokend_worker_restarts_total (\d+)$/m.exec((await d.request('GET', '/metrics')).text)?.[1];
    assert.equal(restarts, '1');
    assert.equal((await d.stop()).code, 0);
    keep(d);
  });
});

describe('memory', () => {
  // Node 24's V8 declines a young-generation collection asked for at idle, so the daemon starts no trimmer there
  // (src/daemon/idle-trim.ts).
  const node20 = process.versions.node.startsWith('20.');
  it(
    'once a burst of requests is over, the idle daemon hands back the young generation the burst grew, and serves on',
    { skip: !node20 && 'the idle trim runs on Node 20 only (see the comment above)' },
    async () => {
      const { d } = await suite.start();
      // 40,000 GET /token on 50 keep-alive connections: V8 grows the main thread's young generation.
      const pool = new Pool(d.base, { connections: 50 });
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next++ < 40_000) {
          const r = await pool.request({ method: 'GET', path: '/token' });
          assert.equal(r.statusCode, 200);
          await r.body.dump();
        }
      };
      await Promise.all(Array.from({ length: 50 }, worker));
      await pool.close();
      // Watched without a request: a scrape allocates, and V8 may then shrink on its own.
      const rss = (): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${d.pid}/status`, 'utf8'))![1]);
      const rssGrown = rss();
      const trimmed = (): boolean => d.stderr.includes('"idle: young generation trimmed"');
      // Node 20 unmaps the freed semi-space pages at once; Node 24's V8 keeps them pooled for reuse.
      const released = (): boolean => process.versions.node.startsWith('20.') && rss() < rssGrown - 4 * 1024;
      const deadline = Date.now() + 45_000;
      while (!trimmed() && !released() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
      assert.ok(trimmed() || released(), `no trim within 45 s of quiet; RSS ${rssGrown} -> ${rss()} kB`);
      if (trimmed()) {
        const rec = parseLog(d.stderr.split('\n').find((l) => l.includes('"idle: young generation trimmed"'))!)!;
        const [youngBefore, youngAfter] = rec['youngMb'] as [number, number];
        assert.ok(youngAfter < youngBefore, `young generation ${youngBefore} -> ${youngAfter} MB`);
      }
      assert.equal((await d.request('GET', '/token')).status, 200);
      await suite.finish(d);
    },
  );
});
