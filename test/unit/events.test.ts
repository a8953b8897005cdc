import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import type { Snapshot } from '../../src/shared/contract.ts';
import { EventHub, MAX_BUFFERED_BYTES } from '../../src/http/events.ts';

/** A snapshot whose token changes with `n`, ~8 KB per event frame. */
const snapshot = (n: number): Snapshot =>
  ({
    status: 'ok',
    reason: null,
    version: n,
    token: {
      accessToken: 'a'.repeat(8000),
      tokenType: 'Bearer',
      expiresAtMs: null,
      obtainedAtMs: 0,
      fingerprint: `f${n}`,
      refreshFingerprint: null,
      scope: null,
    },
  }) as unknown as Snapshot;

describe('event stream', () => {
  it('a client that never reads is dropped once its backlog passes the bound, not kept in memory', async () => {
    let current = snapshot(0);
    const hub = new EventHub(() => current);
    const server = createServer((req, res) => hub.subscribe(req, res)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as { port: number }).port, '127.0.0.1', () => {
      client.write('GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n');
      client.pause(); // never reads: the kernel buffers fill, then the daemon's
    });
    try {
      while (hub.size === 0) await new Promise((r) => setImmediate(r));
      let published = 0;
      // 32 MB: more than the loopback socket buffers of both ends can hold.
      while (hub.size > 0 && published < 4_000) {
        const next = snapshot(++published);
        hub.publish('default', next, current);
        current = next;
        if (published % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      assert.equal(hub.size, 0, `still subscribed after ${published} events (bound ${MAX_BUFFERED_BYTES} bytes)`);
    } finally {
      hub.closeAll();
      client.destroy();
      server.close();
    }
  });
});
