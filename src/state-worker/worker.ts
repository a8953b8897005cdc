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
import { existsSync } from 'node:fs';
import { workerData, type MessagePort } from 'node:worker_threads';
import type { AttachTask, OwnerApi, OwnerEvent, OwnerOptions, Result, Snapshot } from '../contract.js';
import { exposeOwner } from '../protocol.js';
import { forwardingLog } from './log-forward.js';
import { Owner, toResult } from './owner.js';

let owner: Owner | null = null;
let events: MessagePort | null = null;
/** Events of a start begun before the attach task brought the port. */
const early: OwnerEvent[] = [];
const emit = (event: OwnerEvent): void => {
  if (events) events.postMessage(event);
  else early.push(event);
};

/** Never rejects: a failure is a Result, so an early start with nobody awaiting it yet cannot be an unhandled rejection. */
async function startOwner(options: OwnerOptions): Promise<Result<Snapshot>> {
  try {
    await testHold();
    owner = new Owner(options, forwardingLog(options.logLevel, emit), emit);
    return await owner.start();
  } catch (e) {
    return toResult(e);
  }
}

/**
 * The main thread passes the options as workerData: the lock and the state
 * are taken while piscina is still handing over the first task, not after
 * two more round trips (start to ready, see README: Performance).
 */
let starting: Promise<Result<Snapshot>> | null = (workerData as { options?: OwnerOptions } | null)?.options
  ? startOwner((workerData as { options: OwnerOptions }).options)
  : null;

/** Test hook (TOKEND_TEST_HOOKS=1): hold the start until a file exists, to watch a daemon whose owner is starting. */
async function testHold(): Promise<void> {
  const path = process.env['TOKEND_TEST_HOOKS'] === '1' ? process.env['TOKEND_TEST_HOLD_START'] : undefined;
  while (path !== undefined && !existsSync(path)) await new Promise((resolve) => setTimeout(resolve, 10));
}

export default function attach(task: AttachTask): string {
  events = task.events;
  for (const event of early.splice(0)) events.postMessage(event);
  const api: OwnerApi = {
    start(options) {
      starting ??= startOwner(options);
      return starting;
    },
    setListen: (listen) => requireOwner().setListen(listen),
    refresh: (trigger) => requireOwner().refresh(trigger).catch(toResult),
    ensureFresh: () => requireOwner().ensureFresh().catch(toResult),
    setTokens: (input) => requireOwner().setTokens(input).catch(toResult),
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
