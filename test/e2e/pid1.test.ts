/**
 * The container entrypoint, the way the image runs it: the built CLI as PID 1
 * in its own PID namespace (no Docker engine runs here). Node as PID 1
 * ignores SIGTERM unless it installs a handler; tokend must exit cleanly and
 * durably.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CLI, http, parseLog, Proc, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();
const { outputs } = suite;

const unshareWorks = (() => {
  try {
    execFileSync('unshare', ['--fork', '--pid', '--mount-proc', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** The host pid of the namespace's PID 1: unshare's only child. */
function childOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
  assert.equal(children.length, 1);
  return children[0]!;
}

describe('as PID 1 in a PID namespace', { skip: unshareWorks ? false : 'unshare --pid is not permitted here' }, () => {
  for (const load of ['idle', 'under load'] as const) {
    it(`SIGTERM ${load}: exits 0 with the live token on disk and the lock released`, async () => {
      const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
      const p = new Proc(
        ['--fork', '--pid', '--mount-proc', process.execPath, CLI, 'serve'],
        { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0', TOKEND_LOG_LEVEL: 'info' },
        { command: 'unshare' },
      );
      const serving = await p.waitForLog('tokend serving');
      assert.equal(serving['pid'], 1, 'the daemon is PID 1 in its namespace');
      const address = String(serving['listen']);
      assert.equal((await http(address, 'POST', '/refresh-tokens')).status, 200);
      let loading = true;
      const load$ =
        load === 'under load'
          ? Promise.all(
              Array.from({ length: 8 }, async () => {
                while (loading) await http(address, 'GET', '/token').catch(() => null);
              }),
            )
          : Promise.resolve([]);
      process.kill(childOf(p.pid), 'SIGTERM');
      const exit = await p.exited;
      loading = false;
      await load$;
      outputs.push(p.output);
      assert.equal(exit.code, 0, p.output);
      const stopped = p.stderr
        .split('\n')
        .map(parseLog)
        .find((r) => r?.['msg'] === 'stopped');
      assert.ok(stopped, 'a clean stop, not a kill');
      const file = JSON.parse(readFileSync(stateFile, 'utf8'));
      assert.equal(file.refresh_token, suite.stub.live!.refresh_token);
      assert.equal(file.access_token, suite.stub.live!.access_token);
      assert.ok(!existsSync(`${stateFile}.lock`));
    });
  }
});
