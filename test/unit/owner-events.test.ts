/** The main thread's side of the owner's events port: each event type has its place, and an unknown one is logged. */
import assert from 'node:assert/strict';
import type { MessagePort } from 'node:worker_threads';
import { after, before, describe, it } from 'node:test';
import type { Piscina } from 'piscina';
import type { AttachTask, OwnerApi, OwnerEvent, OwnerOptions, Snapshot } from '../../src/shared/contract.ts';
import type { Logger } from '../../src/shared/log.ts';
import { exposeOwner } from '../../src/shared/protocol.ts';
import { OwnerHandle } from '../../src/daemon/owner-handle.ts';

type Line = { level: string; fields: unknown; msg: unknown };

const snapshotAt = (seq: number): Snapshot => ({ seq, version: seq, status: 'ok' }) as unknown as Snapshot;

describe("the owner's events port", () => {
  const lines: Line[] = [];
  const waiters: Array<() => void> = [];
  const heard = (): void => void waiters.splice(0).forEach((w) => w());
  const at = (level: string) => (fields: unknown, msg?: unknown) => {
    lines.push({ level, fields, msg });
    heard();
  };
  const logger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug'), fatal: at('fatal') };
  const log = { ...logger, child: () => logger } as unknown as Logger;
  const snapshots: number[] = [];
  const measured: OwnerEvent[] = [];
  let events: MessagePort | null = null;
  let rpc: MessagePort | null = null;
  let handle: OwnerHandle | null = null;

  /** Post an event as the owner thread does, and wait until the main side has handled it. */
  const post = async (event: unknown): Promise<void> => {
    const handled = new Promise<void>((resolve) => waiters.push(resolve));
    events?.postMessage(event);
    await handled;
  };

  before(async () => {
    const api = { start: async () => ({ ok: true, value: snapshotAt(1) }) } as unknown as OwnerApi;
    const pool = {
      threads: [],
      run: async (task: AttachTask) => {
        events = task.events;
        rpc = task.rpc;
        exposeOwner(api, task.rpc);
        return 'attached';
      },
      destroy: async () => undefined,
    } as unknown as Piscina;
    const started = await OwnerHandle.start(
      {} as OwnerOptions,
      Promise.resolve(log),
      {
        onSnapshot: (s) => {
          snapshots.push(s.seq);
          heard();
        },
        onEvent: (e) => {
          measured.push(e);
          heard();
        },
        onRestart: () => undefined,
        onFailed: () => undefined,
        onFatal: () => undefined,
      },
      { pool, onError: () => undefined },
    );
    assert.ok(started.ok);
    handle = started.value;
  });

  after(async () => {
    handle?.destroy();
    // The owner's ends of both ports: the main side's close with them.
    rpc?.close();
    events?.close();
  });

  it('an unknown event type is logged as an error naming the type, and the port goes on', async () => {
    await post({ type: 'from_a_newer_owner', token: 'secret-value' });
    assert.deepEqual(lines.at(-1), {
      level: 'error',
      fields: { type: 'from_a_newer_owner' },
      msg: 'unknown event from the owner thread: ignored',
    });
    assert.doesNotMatch(JSON.stringify(lines), /secret-value/);
    await post({ type: 'refresh', outcome: 'success', seconds: 0.1 });
    assert.deepEqual(measured, [{ type: 'refresh', outcome: 'success', seconds: 0.1 }]);
  });

  it('a snapshot is adopted, a measurement handed on, a log line written', async () => {
    await post({ type: 'snapshot', snapshot: snapshotAt(2) });
    assert.deepEqual(snapshots, [2]);
    assert.equal(handle?.snapshot.seq, 2);
    await post({ type: 'persist', ok: true, seconds: 0.01 });
    assert.deepEqual(measured.at(-1), { type: 'persist', ok: true, seconds: 0.01 });
    await post({ type: 'log', level: 'warn', fields: { version: 2 }, msg: 'from the owner' });
    assert.deepEqual(lines.at(-1), { level: 'warn', fields: { version: 2 }, msg: 'from the owner' });
  });
});
