/**
 * The disk refuses: a full file system (a small tmpfs), a read-only one, and
 * the lock taken away. Serving goes on from memory, /readyz reports the
 * failure, writes are retried, and the old file stays intact.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, openSync, readFileSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CLI, Daemon, http, nodeForOtherUsers, Proc, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();
const { outputs } = suite;

const mounts: string[] = [];

const canMount = (() => {
  const dir = tempDir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

after(() => {
  for (const m of mounts) execFileSync('umount', ['-l', m], { stdio: 'ignore' });
});

/** A 256 KiB tmpfs holding a state file. */
function smallFs(): { dir: string; stateFile: string } {
  const dir = tempDir();
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', dir]);
  mounts.push(dir);
  return { dir, stateFile: stateFileWith(dir, suite.stub.login(), 3600) };
}

/** Fill the file system until it refuses; returns the filler's path. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
  } finally {
    closeSync(fd);
  }
  return path;
}

const start = async (stateFile: string): Promise<Daemon> => (await suite.start({ stateFile, env: { TOKEND_WAKE_INTERVAL_MS: '100' } })).d;
const finish = suite.finish;

/** Room again: once `logLine` is logged the live pair is on disk and /readyz is 200; then stop. */
async function recovers(d: Daemon, stateFile: string, logLine: string): Promise<void> {
  await d.waitForLog(logLine, 10_000);
  assert.equal(JSON.parse(readFileSync(stateFile, 'utf8')).refresh_token, suite.stub.live!.refresh_token);
  assert.equal((await d.request('GET', '/readyz')).status, 200);
  await finish(d);
}

describe('a refusing disk', { skip: canMount ? false : 'mounting a tmpfs is not permitted here' }, () => {
  it('full before a refresh: the refresh token is not redeemed, the old token is served, /readyz says why, and it recovers', async () => {
    const { dir, stateFile } = smallFs();
    const d = await start(stateFile);
    const before = readFileSync(stateFile, 'utf8');
    const calls = suite.stub.calls.length;
    const filler = fill(dir);
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 503);
    assert.equal(r.json['error'], 'persist_failed');
    assert.match(String(r.json['message']), /cannot write state file .* \(ENOSPC\)/);
    assert.equal(suite.stub.calls.length, calls, 'no rotation without a durable intent');
    assert.equal(readFileSync(stateFile, 'utf8'), before, 'the old file is intact');
    assert.equal((await d.request('GET', '/token')).status, 200);
    const ready = await d.request('GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.match(String(ready.json['message']), /state file cannot be written/);
    unlinkSync(filler);
    await recovers(d, stateFile, 'token refreshed');
  });

  it('full after the provider rotated: the new pair is served from memory, written once there is room', async () => {
    const { dir, stateFile } = smallFs();
    const d = await start(stateFile);
    suite.stub.faults.push({ kind: 'delay', ms: 300 });
    const arrived = suite.stub.nextRequest();
    const refresh = d.request('POST', '/refresh-tokens');
    await arrived;
    // On disk now: the old pair and the intent recorded before the call.
    const before = readFileSync(stateFile, 'utf8');
    assert.notEqual(JSON.parse(before).refresh_intent, null);
    const filler = fill(dir);
    const r = await refresh;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json['access_token'], suite.stub.live!.access_token, 'the rotated pair is kept, not dropped');
    assert.equal(readFileSync(stateFile, 'utf8'), before, 'the old file is intact');
    assert.equal((await d.request('GET', '/token')).json['access_token'], suite.stub.live!.access_token);
    assert.equal((await d.request('GET', '/readyz')).status, 503);
    unlinkSync(filler);
    await recovers(d, stateFile, 'state written after earlier failures');
  });

  it('a read-only file system: refused with a clear error, nothing changed, recovered after remount', async () => {
    const { dir, stateFile } = smallFs();
    const d = await start(stateFile);
    const before = readFileSync(stateFile, 'utf8');
    execFileSync('mount', ['-o', 'remount,ro', dir]);
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 503);
    assert.match(String(r.json['message']), /\(EROFS\)/);
    assert.equal(readFileSync(stateFile, 'utf8'), before);
    assert.equal((await d.request('GET', '/token')).status, 200);
    execFileSync('mount', ['-o', 'remount,rw', dir]);
    await d.waitForLog('token refreshed', 10_000);
    await finish(d);
  });
});

describe('the lock', () => {
  it('a lock taken away while running stops refreshing at once: lock_lost everywhere, no upstream call', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const d = await start(stateFile);
    rmSync(`${stateFile}.lock`, { recursive: true });
    await d.waitForLog(/^state file lock lost/, 15_000);
    const calls = suite.stub.calls.length;
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 503);
    assert.equal(r.json['error'], 'lock_lost');
    assert.equal(suite.stub.calls.length, calls);
    assert.equal((await d.request('GET', '/state')).json['status'], 'lock_lost');
    assert.equal((await d.request('GET', '/readyz')).status, 503);
    await finish(d);
  });
});

const canDropPrivileges =
  process.getuid?.() === 0 &&
  (() => {
    try {
      execFileSync(
        'setpriv',
        ['--reuid=65534', '--regid=65534', '--clear-groups', nodeForOtherUsers(), '-e', `require('fs').accessSync(${JSON.stringify(CLI)})`],
        { stdio: 'ignore' },
      );
      return true;
    } catch {
      return false;
    }
  })();

describe('permissions', { skip: canDropPrivileges ? false : 'needs root to run the daemon as an unprivileged user' }, () => {
  /** A state directory owned by `nobody`, and a daemon running as `nobody` (root would ignore the modes). */
  async function asNobody(): Promise<{ d: Proc; dir: string; stateFile: string; address: string }> {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    chownSync(dir, 65534, 65534);
    chownSync(stateFile, 65534, 65534);
    const d = new Proc(
      ['--reuid=65534', '--regid=65534', '--clear-groups', nodeForOtherUsers(), CLI, 'serve'],
      { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0', TOKEND_WAKE_INTERVAL_MS: '100' },
      { command: 'setpriv' },
    );
    const serving = await d.waitForLog('tokend serving');
    return { d, dir, stateFile, address: String(serving['listen']) };
  }

  it('a permission error on write: refused with EACCES, nothing changed, the old token served, recovered when fixed', async () => {
    const { d, dir, stateFile, address } = await asNobody();
    const before = readFileSync(stateFile, 'utf8');
    chmodSync(dir, 0o500);
    const r = await http(address, 'POST', '/refresh-tokens');
    assert.equal(r.status, 503);
    assert.match(String(r.json['message']), /\(EACCES\)/);
    assert.equal(readFileSync(stateFile, 'utf8'), before);
    assert.equal((await http(address, 'GET', '/token')).status, 200);
    assert.equal((await http(address, 'GET', '/readyz')).status, 503);
    chmodSync(dir, 0o700);
    await d.waitForLog('token refreshed', 10_000);
    d.kill('SIGTERM');
    assert.equal((await d.exited).code, 0);
    outputs.push(d.output);
  });

  it('a state file it may not read: a clear message at start, exit 1, the file untouched', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    chownSync(dir, 65534, 65534);
    const before = readFileSync(stateFile, 'utf8');
    const p = new Proc(
      ['--reuid=65534', '--regid=65534', '--clear-groups', nodeForOtherUsers(), CLI, 'serve'],
      { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0' },
      { command: 'setpriv' },
    );
    const exit = await p.exited;
    assert.equal(exit.code, 1, p.output);
    assert.match(p.stderr, /cannot read state file .*tokens\.json: .*EACCES/);
    assert.equal(readFileSync(stateFile, 'utf8'), before);
  });
});
