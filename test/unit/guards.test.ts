import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { createCors, createGuard, hostName, isPreflight, preflightHeaders } from '../../src/http/guards.ts';

const req = (headers: Record<string, string>, more: Record<string, unknown> = {}): IncomingMessage => ({ headers, ...more }) as unknown as IncomingMessage;
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

  it('refuses an HTTP/1.1 request without Host with a JSON 400; HTTP/1.0 may omit it', () => {
    const v11 = guard(req({}, { httpVersionMajor: 1, httpVersionMinor: 1 }), '/token');
    assert.equal(v11?.code, 'invalid_request');
    assert.match(v11.message, /Host/);
    assert.equal(guard(req({}, { httpVersionMajor: 1, httpVersionMinor: 0 }), '/token'), null);
  });

  it('lets a preflight (OPTIONS, no credentials) past the API key, but not past the Origin check', () => {
    const keyed = createGuard({ listen: tcp, apiKey: 'a'.repeat(32), allowedOrigins: ['https://ok.example'], allowedHosts: [] });
    const pre = { host: 'localhost', 'access-control-request-method': 'POST' };
    assert.equal(keyed(req({ ...pre, origin: 'https://ok.example' }, { method: 'OPTIONS' }), '/set-tokens'), null);
    assert.equal(keyed(req({ ...pre, origin: 'https://evil.example' }, { method: 'OPTIONS' }), '/set-tokens')?.code, 'forbidden_origin');
    assert.equal(keyed(req({ host: 'localhost', origin: 'https://ok.example' }, { method: 'POST' }), '/set-tokens')?.code, 'unauthorized');
  });
});

describe('CORS', () => {
  const headersSet = (origin: string | undefined): Record<string, string> => {
    const set: Record<string, string> = {};
    const res = { setHeader: (k: string, v: string) => (set[k] = v) };
    createCors(['https://ok.example'])(req(origin === undefined ? {} : { origin }), res as never);
    return set;
  };

  it('names an allowed origin exactly, with Vary: Origin', () => {
    assert.deepEqual(headersSet('https://ok.example'), { 'access-control-allow-origin': 'https://ok.example', vary: 'Origin' });
  });

  it('says nothing to other origins, to null, or without an Origin', () => {
    assert.deepEqual(headersSet('https://evil.example'), {});
    assert.deepEqual(headersSet('null'), {});
    assert.deepEqual(headersSet(undefined), {});
  });

  it('a preflight is OPTIONS with Origin and Access-Control-Request-Method; its answer allows the key and JSON', () => {
    assert.equal(isPreflight(req({ origin: 'https://ok.example', 'access-control-request-method': 'POST' }, { method: 'OPTIONS' })), true);
    assert.equal(isPreflight(req({ origin: 'https://ok.example' }, { method: 'OPTIONS' })), false);
    const h = preflightHeaders(['POST', 'OPTIONS']);
    assert.equal(h['access-control-allow-methods'], 'POST, OPTIONS');
    assert.match(h['access-control-allow-headers'] ?? '', /Authorization/);
    assert.match(h['access-control-allow-headers'] ?? '', /Content-Type/);
    assert.ok(Number(h['access-control-max-age']) > 0);
  });
});
