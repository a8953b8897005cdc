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
import type { AttachTask, OwnerApi, OwnerEvent } from '../contract.js';
import { createLogger } from '../log.js';
import { exposeOwner } from '../protocol.js';
import { Owner, toResult } from './owner.js';

let owner: Owner | null = null;

export default function attach(task: AttachTask): string {
  const emit = (event: OwnerEvent): void => task.events.postMessage(event);
  const api: OwnerApi = {
    async start(options) {
      if (owner) return { ok: false, error: { code: 'internal_error', message: 'owner already started in this thread' } };
      const log = await createLogger(options.logLevel, options.prettyLogs, 'tokend-owner');
      owner = new Owner(options, log, emit);
      return owner.start().catch(toResult);
    },
    setListen: (listen) => requireOwner().setListen(listen),
    refresh: (trigger) => requireOwner().refresh(trigger).catch(toResult),
    ensureFresh: () => requireOwner().ensureFresh().catch(toResult),
    setTokens: (input) => requireOwner().setTokens(input).catch(toResult),
    close: (timeoutMs) => (owner ? owner.close(timeoutMs).catch(toResult) : Promise.resolve({ ok: true, value: null })),
  };
  exposeOwner(api, task.rpc);
  return 'attached';
}

function requireOwner(): Owner {
  if (!owner) throw new Error('owner not started');
  return owner;
}
