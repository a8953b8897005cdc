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
import type { AttachTask, OwnerApi, OwnerEvent } from '../shared/contract.js';
import { exposeOwner } from '../shared/protocol.js';
import { forwardingLog } from './log-forward.js';
import { Owner, toResult } from './owner.js';
import { withTestHooks } from './test-hooks.js';

let owner: Owner | null = null;

export default function attach(task: AttachTask): string {
  const emit = (event: OwnerEvent): void => task.events.postMessage(event);
  const api: OwnerApi = {
    async start(options) {
      if (owner) return { ok: false, error: { code: 'internal_error', message: 'owner already started in this thread' } };
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

function requireOwner(): Owner {
  if (!owner) throw new Error('owner not started');
  return owner;
}
