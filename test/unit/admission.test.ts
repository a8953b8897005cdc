import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fitCaps, rawAnswer } from '../../src/http/admission.ts';

describe('connection caps', () => {
  it('keep the configured caps when the open-file limit is roomy', () => {
    assert.deepEqual(fitCaps(1024, 512, 1_048_576), { connections: 1024, eventClients: 512 });
    assert.deepEqual(fitCaps(1024, 512, null), { connections: 1024, eventClients: 512 });
  });

  it('fit under the open-file limit with descriptors to spare, event streams leaving room for requests', () => {
    const at256 = fitCaps(1024, 512, 256);
    assert.ok(at256.connections <= 256 - 64, JSON.stringify(at256));
    assert.ok(at256.eventClients < at256.connections);
    const at1024 = fitCaps(1024, 1024, 1024);
    assert.ok(at1024.connections < 1024 && at1024.eventClients < at1024.connections, JSON.stringify(at1024));
  });

  it('a connection past the cap reads a complete JSON 503 that closes the connection', () => {
    const raw = rawAnswer(503, 'Service Unavailable', { code: 'overloaded', message: 'too many connections' });
    const [head, body] = raw.split('\r\n\r\n') as [string, string];
    assert.match(head, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    assert.match(head, /\r\nconnection: close(\r\n|$)/);
    assert.match(head, new RegExp(`\\r\\ncontent-length: ${Buffer.byteLength(body)}(\\r\\n|$)`));
    assert.deepEqual(JSON.parse(body), { error: 'overloaded', message: 'too many connections' });
  });
});
