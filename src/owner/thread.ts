/**
 * The owner thread's entry: piscina runs `attach` once per worker with the
 * two ports of a fresh MessageChannel pair: RPC (Comlink) and events (plain
 * postMessage, so pushing a snapshot costs no RPC round trip).
 *
 * piscina must run this worker with `atomics: 'disabled'`: otherwise, once
 * this task returns, the idle worker sleeps in Atomics.wait(), its event loop
 * stops, RPC calls hang, refresh timers never fire and proper-lockfile's
 * refresher freezes until another process steals the lock.
 */
import { existsSync, readFileSync, unlinkSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import type { AttachTask, OwnerApi, OwnerEvent } from '../shared/contract.js';
import { exposeOwner } from '../shared/protocol.js';
import { forwardingLog } from './log-forward.js';
import { Owner, toResult } from './owner.js';

let owner: Owner | null = null;

/**
 * Test hook (TOKEND_TEST_HOOKS=1): hold the start until a file exists, to
 * watch a daemon whose owner is starting. Its directory is watched, not the
 * file (a file watch follows the inode, and this one does not exist yet).
 */
async function testHold(): Promise<void> {
  const path = process.env['TOKEND_TEST_HOOKS'] === '1' ? process.env['TOKEND_TEST_HOLD_START'] : undefined;
  if (path === undefined) return;
  await new Promise<void>((resolve) => {
    const watcher = watch(dirname(path), () => {
      if (existsSync(path)) done();
    });
    const done = (): void => {
      watcher.close();
      resolve();
    };
    if (existsSync(path)) done();
  });
}

/**
 * Test hook (TOKEND_TEST_HOOKS=1): crash this thread when the file named by
 * TOKEND_TEST_CRASH_OWNER appears, as its content says: `throw` (an uncaught
 * error in a timer), `oom` (out of memory). The file is removed first, so
 * the next thread lives, unless it says `loop` (every thread crashes).
 */
function testCrashTrigger(): void {
  const path = process.env['TOKEND_TEST_HOOKS'] === '1' ? process.env['TOKEND_TEST_CRASH_OWNER'] : undefined;
  if (path === undefined) return;
  const fire = (): void => {
    let how: string;
    try {
      how = readFileSync(path, 'utf8').trim();
    } catch {
      return;
    }
    // Seen between its creation and its content: the next change says how.
    if (how === '') return;
    watcher.close();
    if (how !== 'loop') unlinkSync(path);
    const hog: unknown[] = [];
    setTimeout(() => {
      if (how === 'oom') for (;;) hog.push(new Array(1_000).fill({ hog: hog.length }));
      throw new Error(`test hook: owner thread crashed (${how})`);
    });
  };
  const watcher = watch(dirname(path), fire);
  fire();
}

export default function attach(task: AttachTask): string {
  testCrashTrigger();
  const emit = (event: OwnerEvent): void => task.events.postMessage(event);
  const api: OwnerApi = {
    async start(options) {
      if (owner) return { ok: false, error: { code: 'internal_error', message: 'owner already started in this thread' } };
      await testHold();
      owner = new Owner(options, forwardingLog(options.logLevel, emit), emit);
      return owner.start().catch(toResult);
    },
    setListen: (listen) => requireOwner().setListen(listen),
    refresh: (trigger) => requireOwner().refresh(trigger).catch(toResult),
    ensureFresh: () => requireOwner().ensureFresh().catch(toResult),
    setTokens: (input) => requireOwner().setTokens(input).catch(toResult),
    hurry: async () => owner?.hurry(),
    close: async (timeoutMs) => {
      const result = owner ? await owner.close(timeoutMs).catch(toResult) : { ok: true as const, value: null };
      emit({ type: 'closed' });
      return result;
    },
  };
  exposeOwner(api, task.rpc);
  return 'attached';
}

function requireOwner(): Owner {
  if (!owner) throw new Error('owner not started');
  return owner;
}
