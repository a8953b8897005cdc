/** Which route answers a request: polka's patterns, tokend's own dispatch. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Snapshot } from '../../src/shared/contract.ts';
import { createHttpServer } from '../../src/http/app.ts';
import { EventHub } from '../../src/http/events.ts';
import type { AccountBackend } from '../../src/http/routes.ts';
import type { Log } from '../../src/shared/log.ts';
import { Metrics } from '../../src/daemon/metrics.ts';

const snapshot = {
  status: 'ok',
  reason: null,
  version: 1,
  lockHeld: true,
  persist: { ok: true, lastError: null },
  token: {
    accessToken: 'access-token-value-1',
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
  refresh: () => Promise.resolve({ ok: true, value: snapshot }),
  setTokens: () => Promise.resolve({ ok: true, value: snapshot }),
};

describe('routing', () => {
  const quiet = (): void => undefined;
  const log: Log = { error: quiet, warn: quiet, info: quiet, debug: quiet };
  let ownerStarted: (() => void) | null = null;
  const starting = new Promise<void>((resolve) => (ownerStarted = resolve));
  let started = false;
  const server = createHttpServer({
    listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    apiKey: null,
    allowedOrigins: [],
    allowedHosts: [],
    allowedUids: [],
    maxConnections: 16,
    maxEventClients: 4,
    log,
    metrics: new Metrics(),
    isDraining: () => false,
    starting: () => (started ? null : starting),
    backend: {
      accounts: new Map([['default', account]]),
      defaultAccount: 'default',
      owner: { pid: process.pid, listen: null },
      metricsText: () => Promise.resolve(''),
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
  const ask = async (method: string, path: string): Promise<{ status: number; allow: string | null; body: string }> => {
    const res = await fetch(`${base}${path}`, { method });
    return { status: res.status, allow: res.headers.get('allow'), body: await res.text() };
  };

  it('while the owner starts, /healthz and /readyz answer at once and /token waits for it', async () => {
    assert.equal((await ask('GET', '/healthz')).status, 200);
    assert.equal((await ask('GET', '/readyz')).status, 503);
    const token = ask('GET', '/token');
    started = true;
    ownerStarted?.();
    assert.equal((await token).status, 200);
  });

  it('a route answers its path with a query, a trailing slash or another case (polka patterns)', async () => {
    for (const path of ['/token', '/token?x=1', '/token/', '/TOKEN']) {
      const { status, body } = await ask('GET', path);
      assert.equal(status, 200, path);
      assert.match(body, /"access_token"/, path);
    }
  });

  it('HEAD on a GET route answers the headers alone', async () => {
    assert.deepEqual(await ask('HEAD', '/token'), { status: 200, allow: null, body: '' });
  });

  it('a method the path does not take is 405 with Allow; an unknown path 404; OPTIONS 204', async () => {
    const put = await ask('PUT', '/token');
    assert.equal(put.status, 405);
    assert.equal(put.allow, 'GET, HEAD, OPTIONS');
    const post = await ask('POST', '/token');
    assert.equal(post.status, 405);
    assert.equal(JSON.parse(post.body).error, 'method_not_allowed');
    assert.equal((await ask('GET', '/refresh-tokens')).allow, 'POST, OPTIONS');
    const missing = await ask('GET', '/nope');
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.body).error, 'not_found');
    const options = await ask('OPTIONS', '/state');
    assert.equal(options.status, 204);
    assert.equal(options.allow, 'GET, HEAD, OPTIONS');
  });
});
