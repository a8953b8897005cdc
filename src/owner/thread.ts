/**
 * The owner thread's entry: piscina runs `attach` once per account with the
 * two ports of a fresh MessageChannel pair: RPC (Comlink) and events (plain
 * postMessage, so pushing a snapshot costs no RPC round trip).
 *
 * One thread owns every account, each through its own attach: its own ports
 * and its own `Owner` (lock, state, refresh engine), held by this attach's
 * closure and by nothing shared. An account's RPC never queues behind
 * another's on a port, its owner's failure (a corrupt file, a refused login,
 * a lost lock) stays in its closure, and the contract stays one owner per
 * endpoint, as a login with no daemon uses it. What they share is the
 * thread: when it dies every port closes, and each account's handle on the
 * main side attaches again to the new thread and reloads from its own file.
 *
 * piscina must run this worker with `atomics: 'disabled'`: otherwise, once
 * this task returns, the idle worker sleeps in Atomics.wait(), its event loop
 * stops, RPC calls hang, refresh timers never fire and proper-lockfile's
 * refresher freezes until another process steals the lock.
 */
import type { AttachTask, OwnerApi, OwnerEvent } from '../shared/contract.js';
import { exposeOwner } from '../shared/protocol.js';
import { forwardingLog } from './log-forward.js';
import { Owner, toResult } from './owner.js';
import { withTestHooks } from './test-hooks.js';

export default function attach(task: AttachTask): string {
  let owner: Owner | null = null;
  const requireOwner = (): Owner => {
    if (!owner) throw new Error('owner not started');
    return owner;
  };
  const emit = (event: OwnerEvent): void => task.events.postMessage(event);
  const api: OwnerApi = {
    async start(options) {
      if (owner) return { ok: false, error: { code: 'internal_error', message: 'owner already started on this port' } };
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
  // The API as it is, unless TOKEND_TEST_HOOKS=1 (the end-to-end tests).
  exposeOwner(withTestHooks(api), task.rpc);
  return 'attached';
}
