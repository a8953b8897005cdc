import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Snapshot } from '../../src/shared/contract.ts';
import { TokendError } from '../../src/shared/errors.ts';
import { createHttpServer } from '../../src/http/app.ts';
import { EventHub } from '../../src/http/events.ts';
import type { AccountBackend } from '../../src/http/routes.ts';
import type { Log } from '../../src/shared/log.ts';
import { Metrics } from '../../src/daemon/metrics.ts';

const ACCESS = 'access-token-value-1';
const KEY = 'api-key-value-1';

const snapshot = {
  status: 'ok',
  reason: null,
  version: 1,
  lockHeld: true,
  persist: { ok: true, lastError: null },
  token: {
    accessToken: ACCESS,
    tokenType: 'Bearer',
    scope: null,
    expiresAtMs: Date.now() + 3_600_000,
    obtainedAtMs: Date.now(),
    fingerprint: 'f',
    refreshFingerprint: null,
    replacedRefreshFingerprint: null,
  },
} as unknown as Snapshot;

const account: AccountBackend = {
  name: 'default',
  snapshot: () => snapshot,
  ensureFresh: () => Promise.resolve({ ok: true, value: snapshot }),
  refresh: () => Promise.resolve({ ok: false, error: { code: 'upstream_error', message: 'the provider is down' } }),
  setTokens: () => Promise.resolve({ ok: true, value: snapshot }),
};

type Line = { level: keyof Log; fields: Record<string, unknown> | undefined; msg: string | undefined };

describe('request logging', () => {
  const lines: Line[] = [];
  let metricsText = (): Promise<string> => Promise.resolve('');
  const logAt =
    (level: keyof Log) =>
    (fields: object | string, msg?: string): void =>
      void lines.push(typeof fields === 'string' ? { level, fields: undefined, msg: fields } : { level, fields: fields as Record<string, unknown>, msg });
  const log: Log = { error: logAt('error'), warn: logAt('warn'), info: logAt('info'), debug: logAt('debug') };
  const server = createHttpServer({
    listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    apiKey: KEY,
    allowedOrigins: [],
    allowedHosts: [],
    allowedUids: [],
    maxConnections: 16,
    maxEventClients: 4,
    log,
    metrics: new Metrics(),
    isDraining: () => false,
    starting: () => null,
    backend: {
      accounts: new Map([['default', account]]),
      defaultAccount: 'default',
      owner: { pid: process.pid, listen: null },
      metricsText: () => metricsText(),
      hub: new EventHub(() => [account]),
      reload: () => Promise.resolve({ ok: false, error: { code: 'reload_unavailable', message: 'no config file' }, problems: [] }),
    },
  });
  let base = '';
  before(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  const ask = async (path: string, init: RequestInit = {}): Promise<{ status: number; logged: Line[] }> => {
    lines.length = 0;
    const res = await fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${KEY}`, ...(init.headers as Record<string, string>) } });
    await res.arrayBuffer();
    return { status: res.status, logged: [...lines] };
  };

  it('a served GET /token logs nothing', async () => {
    const { status, logged } = await ask('/token');
    assert.equal(status, 200);
    assert.deepEqual(logged, []);
  });

  it('a 4xx is logged at debug with its code, status and route, never the header or body contents', async () => {
    const cases: Array<[string, RequestInit, number, string, string]> = [
      ['/token', { headers: { authorization: 'Bearer wrong-key-value' } }, 401, 'unauthorized', '/token'],
      ['/token', { headers: { origin: 'https://evil.example' } }, 403, 'forbidden_origin', '/token'],
      ['/nowhere', {}, 404, 'not_found', 'other'],
      ['/token', { method: 'DELETE' }, 405, 'method_not_allowed', 'other'],
      [
        '/set-tokens',
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"access_token": "${ACCESS}"` },
        400,
        'invalid_json',
        '/set-tokens',
      ],
      [
        '/set-tokens',
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ access_token: ACCESS, bogus: 1 }) },
        400,
        'invalid_request',
        '/set-tokens',
      ],
    ];
    for (const [path, init, status, code, route] of cases) {
      const got = await ask(path, init);
      assert.equal(got.status, status, code);
      assert.deepEqual(got.logged, [{ level: 'debug', fields: { code, status, route }, msg: 'request refused' }], code);
      const text = JSON.stringify(got.logged);
      for (const secret of [ACCESS, KEY, 'wrong-key-value', 'evil.example', '/nowhere']) assert.ok(!text.includes(secret), `${code}: ${secret}`);
    }
  });

  it('a 5xx from a route is logged at error, as before; a code without a status of its own is answered 500', async () => {
    for (const [code, status] of [
      ['persist_failed', 503],
      ['state_locked', 500],
    ] as const) {
      metricsText = () => Promise.reject(new TokendError(code, 'the disk is gone'));
      const got = await ask('/metrics');
      assert.equal(got.status, status, code);
      assert.deepEqual(got.logged, [{ level: 'error', fields: { code, err: 'the disk is gone' }, msg: 'request failed' }], code);
    }
  });
});
