import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { createGuard, hostName } from '../../src/http/guards.ts';

const req = (headers: Record<string, string>): IncomingMessage => ({ headers }) as unknown as IncomingMessage;
const tcp = { kind: 'tcp', host: '127.0.0.1', port: 4242 } as const;

describe('request guards', () => {
  const guard = createGuard({ listen: tcp, apiKey: null, allowedOrigins: ['https://ok.example'], allowedHosts: [] });

  it('accepts localhost and the listen address, with or without port', () => {
    for (const host of ['localhost', 'localhost:4242', '127.0.0.1:4242', '[::1]:4242']) assert.equal(guard(req({ host }), '/token'), null, host);
  });

  it('refuses a rebinding Host', () => {
    assert.equal(guard(req({ host: 'evil.example:4242' }), '/token')?.code, 'forbidden_host');
  });

  it('refuses an Origin not explicitly allowed, including null', () => {
    assert.equal(guard(req({ host: 'localhost', origin: 'https://evil.example' }), '/token')?.code, 'forbidden_origin');
    assert.equal(guard(req({ host: 'localhost', origin: 'null' }), '/token')?.code, 'forbidden_origin');
    assert.equal(guard(req({ host: 'localhost', origin: 'https://ok.example' }), '/token'), null);
  });

  it('requires the API key on every route but /healthz', () => {
    const keyed = createGuard({ listen: tcp, apiKey: 'a'.repeat(32), allowedOrigins: [], allowedHosts: [] });
    assert.equal(keyed(req({ host: 'localhost' }), '/token')?.code, 'unauthorized');
    assert.equal(keyed(req({ host: 'localhost', authorization: `Bearer ${'a'.repeat(31)}` }), '/token')?.code, 'unauthorized');
    assert.equal(keyed(req({ host: 'localhost', authorization: `Bearer ${'a'.repeat(32)}` }), '/token'), null);
    assert.equal(keyed(req({ host: 'localhost' }), '/healthz'), null);
  });

  it('strips ports and brackets from Host', () => {
    assert.equal(hostName('[::1]:80'), '::1');
    assert.equal(hostName('Example.COM:1'), 'example.com');
  });
});
