/** POST /reload: what a reload did, or why it changed nothing, behind the guards of every control route. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createHttpServer } from '../../src/http/app.ts';
import { EventHub } from '../../src/http/events.ts';
import type { AccountBackend, ReloadResult } from '../../src/http/routes.ts';
import type { Log } from '../../src/shared/log.ts';
import { Metrics } from '../../src/daemon/metrics.ts';
import { describeReload } from '../../src/cli/reload.ts';
import { http } from '../fixtures/daemon.ts';

const quiet = (): void => undefined;
const log: Log = { error: quiet, warn: quiet, info: quiet, debug: quiet };
const KEY = 'reload-api-key-0123456789';
const auth = { authorization: `Bearer ${KEY}` };

const done: ReloadResult = {
  ok: true,
  started: ['gamma'],
  stopped: ['beta'],
  restarted: ['delta'],
  unchanged: ['alpha'],
  failed: [{ account: 'delta', error: { code: 'state_corrupt', message: 'state file /s/delta.json is not valid JSON' } }],
  defaultAccount: 'alpha',
};

describe('POST /reload', () => {
  let answer: () => Promise<ReloadResult> = () => Promise.resolve(done);
  let calls = 0;
  let server: Server;
  let address = '';
  const hub = new EventHub(() => []);

  before(async () => {
    server = createHttpServer({
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
        accounts: new Map<string, AccountBackend>(),
        defaultAccount: 'alpha',
        owner: { pid: process.pid, listen: null },
        metricsText: () => Promise.resolve(''),
        hub,
        reload: () => {
          calls++;
          return answer();
        },
      },
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });
  beforeEach(() => {
    calls = 0;
    answer = () => Promise.resolve(done);
  });

  it('answers 200 with every account named by what the reload did, the failed ones with their code', async () => {
    const r = await http(address, 'POST', '/reload', { headers: auth });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {
      started: ['gamma'],
      stopped: ['beta'],
      restarted: ['delta'],
      unchanged: ['alpha'],
      failed: [{ account: 'delta', error: 'state_corrupt', message: 'state file /s/delta.json is not valid JSON' }],
      default_account: 'alpha',
    });
    assert.equal(calls, 1);
  });

  it('an invalid file: 422 config_invalid with each problem as a string; a daemon without a config file: 409 reload_unavailable', async () => {
    const problems = ['/etc/tokend.toml:4: lisen: unknown key', '/etc/tokend.toml:9: accounts.b.client_id: required'];
    answer = () => Promise.resolve({ ok: false, error: { code: 'config_invalid', message: 'config reload refused: 2 problems' }, problems });
    const invalid = await http(address, 'POST', '/reload', { headers: auth });
    assert.equal(invalid.status, 422, invalid.text);
    assert.deepEqual(invalid.json, { error: 'config_invalid', message: 'config reload refused: 2 problems', problems });

    answer = () => Promise.resolve({ ok: false, error: { code: 'reload_unavailable', message: 'nothing to reload' }, problems: [] });
    const none = await http(address, 'POST', '/reload', { headers: auth });
    assert.equal(none.status, 409, none.text);
    assert.deepEqual(none.json, { error: 'reload_unavailable', message: 'nothing to reload' });
  });

  it('guarded as every control route: no API key 401, a foreign Host or an Origin 403, a body not JSON 415; none reaches the reload', async () => {
    for (const [headers, status, code] of [
      [{}, 401, 'unauthorized'],
      [{ authorization: 'Bearer wrong-key-0123456789' }, 401, 'unauthorized'],
      [{ ...auth, host: 'evil.example' }, 403, 'forbidden_host'],
      [{ ...auth, origin: 'https://evil.example' }, 403, 'forbidden_origin'],
    ] as const) {
      const r = await http(address, 'POST', '/reload', { headers });
      assert.equal(r.status, status, `${JSON.stringify(headers)}: ${r.text}`);
      assert.equal(r.json['error'], code);
    }
    const form = await http(address, 'POST', '/reload', { headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'a=1' });
    assert.equal(form.status, 415, form.text);
    assert.equal(calls, 0);
  });

  it('takes POST only: GET is 405 with Allow', async () => {
    const r = await http(address, 'GET', '/reload', { headers: auth });
    assert.equal(r.status, 405);
    assert.equal(r.headers['allow'], 'POST, OPTIONS');
    assert.equal(calls, 0);
  });

  it('the client library: reload() resolves with the report; an invalid file rejects with config_invalid and the problems', async () => {
    const { TokendClient, TokendClientError } = await import('../../src/client/index.ts');
    const client = new TokendClient({ url: address, apiKey: KEY });
    try {
      const report = await client.reload();
      assert.deepEqual(describeReload(report), ['started: gamma', 'stopped: beta', 'restarted: delta', 'unchanged: alpha']);
      answer = () => Promise.resolve({ ok: false, error: { code: 'config_invalid', message: 'refused' }, problems: ['f:1: bad'] });
      await assert.rejects(
        client.reload(),
        (err: unknown) =>
          err instanceof TokendClientError && err.code === 'config_invalid' && err.status === 422 && (err.body?.['problems'] as string[])[0] === 'f:1: bad',
      );
    } finally {
      await client.close();
    }
  });
});
