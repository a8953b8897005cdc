import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OwnerEvent } from '../../src/shared/contract.ts';
import { forwardingLog } from '../../src/owner/log-forward.ts';

function capture(level: string): { events: OwnerEvent[]; log: ReturnType<typeof forwardingLog> } {
  const events: OwnerEvent[] = [];
  return { events, log: forwardingLog(level, (e) => events.push(structuredClone(e))) };
}

describe("the owner thread's log lines", () => {
  it('go to the main thread as events with their level, fields and message', () => {
    const { events, log } = capture('info');
    log.warn({ version: 3 }, 'state loaded');
    log.error('lock lost');
    assert.deepEqual(events, [
      { type: 'log', level: 'warn', fields: { version: 3 }, msg: 'state loaded' },
      { type: 'log', level: 'error', fields: {}, msg: 'lock lost' },
    ]);
  });

  it('below the configured level are not sent at all', () => {
    const { events, log } = capture('warn');
    log.info({ a: 1 }, 'info');
    log.debug('debug');
    log.warn('warn');
    assert.deepEqual(
      events.map((e) => (e.type === 'log' ? e.level : e.type)),
      ['warn'],
    );
    const silent = capture('silent');
    silent.log.error('nothing');
    assert.equal(silent.events.length, 0);
  });

  it('with a field that cannot cross threads still arrive, with the field as JSON has it', () => {
    const events: OwnerEvent[] = [];
    const log = forwardingLog('info', (e) => events.push(structuredClone(e)));
    log.info({ when: 1, fn: () => 1, nested: { ok: true } }, 'odd fields');
    assert.deepEqual(events, [{ type: 'log', level: 'info', fields: { when: 1, nested: { ok: true } }, msg: 'odd fields' }]);
  });
});
