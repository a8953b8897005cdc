import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TokendClient, type TokenEvent } from '../../src/client/index.ts';
import { Daemon, freePort, Proc, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();

const READER = fileURLToPath(new URL('../fixtures/reader.ts', import.meta.url));

const start = async (env: NodeJS.ProcessEnv = {}, expiresInSec = 3600): Promise<Daemon> => (await suite.start({ env, expiresInSec })).d;
const finish = suite.finish;

/** Requests the daemon has answered on a route, from its own metrics. */
async function requestsOn(d: Daemon, route: string): Promise<number> {
  const text = (await d.request('GET', '/metrics')).text;
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^tokend_http_requests_total\\{route="${route}",status="\\d+"\\} (\\d+)`, 'gm'))) sum += Number(m[1]);
  return sum;
}

describe('client library', () => {
  it('getAccessToken: 200 concurrent callers make one request, then the cache answers', async () => {
    const d = await start();
    const client = new TokendClient({ url: d.address });
    const tokens = await Promise.all(Array.from({ length: 200 }, () => client.getAccessToken()));
    assert.deepEqual(new Set(tokens), new Set([suite.stub.live!.access_token]));
    await client.getAccessToken();
    assert.equal(await requestsOn(d, '/token'), 1);
    await client.close();
    await finish(d);
  });

  it('honours the API key and finds the daemon through the owner record', async () => {
    const key = 'client-key-0123456789';
    const pair = suite.stub.login();
    const stateFile = stateFileWith(tempDir(), pair, 3600);
    const d = await Daemon.start(stubEnv(suite.stub, stateFile, { TOKEND_API_KEY: key }));
    const anonymous = new TokendClient({ stateFile });
    await assert.rejects(anonymous.getAccessToken(), (e: Error & { code?: string }) => e.code === 'unauthorized');
    const keyed = new TokendClient({ stateFile, apiKey: key });
    assert.equal(await keyed.getAccessToken(), pair.access_token);
    assert.equal((await keyed.state()).status, 'ok');
    await Promise.all([anonymous.close(), keyed.close()]);
    await finish(d);
  });

  it('onChange: one event per token change, and it reconnects with Last-Event-ID after a restart', async () => {
    const port = await freePort();
    const pair = suite.stub.login();
    const stateFile = stateFileWith(tempDir(), pair, 3600);
    const env = stubEnv(suite.stub, stateFile, { TOKEND_LISTEN: `127.0.0.1:${port}` });
    let d = await Daemon.start(env);
    const client = new TokendClient({ url: d.address });
    const events: TokenEvent[] = [];
    let notify: () => void = () => undefined;
    const stopListening = client.onChange((e) => {
      events.push(e);
      notify();
    });
    const nextEvent = (): Promise<TokenEvent> => new Promise((resolve) => (notify = () => resolve(events.at(-1)!)));
    const initial = await nextEvent();
    assert.equal(initial.access_token, pair.access_token, 'the current state on connect');
    const changed = nextEvent();
    await d.request('POST', '/refresh-tokens');
    assert.equal((await changed).access_token, suite.stub.live!.access_token);
    const count = events.length;
    await d.request('GET', '/token');
    assert.equal(events.length, count, 'a read is not a change');

    await finish(d);
    d = await Daemon.start(env);
    const afterRestart = nextEvent();
    await d.request('POST', '/refresh-tokens');
    assert.equal((await afterRestart).access_token, suite.stub.live!.access_token);
    stopListening();
    await client.close();
    await finish(d);
  });

  it('20 client processes reading over HTTP and from the file while the token refreshes every 1.5 s: 0 torn reads, 0 stale tokens', async (t) => {
    // 3 s tokens, refreshed at half-life: 1.5 s of slack for each refresh while 20 readers and another test file load 2 cores.
    suite.stub.expiresIn = 3;
    try {
      const d = await start({ TOKEND_WAKE_INTERVAL_MS: '100' }, 3);
      const refreshes = suite.stub.calls.length;
      const readers = Array.from({ length: 20 }, (_, i) => {
        const mode = i % 2 === 0 ? 'http' : 'file';
        return new Proc(['--import', 'tsx', READER, mode, mode === 'http' ? d.address : d.stateFile, '5000'], {}, { command: process.execPath });
      });
      await Promise.all(readers.map((r) => r.exited));
      const reports = readers.map(
        (r) => JSON.parse(r.stdout) as { mode: string; reads: number; torn: number; stale: number; errors: number; distinct: number },
      );
      const total = (mode: string, key: 'reads' | 'torn' | 'stale' | 'errors'): number =>
        reports.filter((r) => r.mode === mode).reduce((a, r) => a + r[key], 0);
      assert.ok(suite.stub.calls.length - refreshes >= 3, `the token refreshed during the run (${suite.stub.calls.length - refreshes} times)`);
      assert.equal(total('file', 'torn'), 0);
      assert.equal(total('file', 'stale'), 0);
      assert.equal(total('http', 'stale'), 0);
      assert.equal(total('http', 'errors'), 0);
      assert.ok(
        reports.every((r) => r.reads >= 20),
        JSON.stringify(reports),
      );
      assert.ok(
        reports.every((r) => r.distinct >= 3),
        'every reader saw the token change',
      );
      t.diagnostic(`http reads=${total('http', 'reads')} file reads=${total('file', 'reads')} refreshes=${suite.stub.calls.length - refreshes}`);
      await finish(d);
    } finally {
      suite.stub.expiresIn = 3600;
    }
  });
});

describe('metrics', () => {
  it('GET /metrics is Prometheus text with refresh, expiry, HTTP, persistence, lock and restart series', async () => {
    const d = await start();
    await d.request('POST', '/refresh-tokens');
    await d.request('GET', '/token');
    const r = await d.request('GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const samples = new Map<string, number>();
    for (const line of r.text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/.exec(line);
      assert.ok(m, `not a Prometheus sample line: ${line}`);
      samples.set(m[1]!, Number(m[2]!));
    }
    assert.equal(samples.get('tokend_refresh_total{outcome="success"}'), 1);
    assert.ok(samples.get('tokend_token_expires_in_seconds')! > 3500);
    assert.ok(samples.get('tokend_last_refresh_success_timestamp_seconds')! > Date.now() / 1000 - 60);
    assert.equal(samples.get('tokend_http_requests_total{route="/token",status="200"}'), 1);
    assert.ok(samples.get('tokend_http_request_duration_seconds_count{route="/token"}')! >= 1);
    assert.ok(samples.get('tokend_persist_duration_seconds_count{result="ok"}')! >= 2);
    assert.equal(samples.get('tokend_lock_held'), 1);
    assert.equal(samples.get('tokend_worker_restarts_total'), 0);
    assert.equal(samples.get('tokend_status{status="ok"}'), 1);
    assert.ok(!r.text.includes(suite.stub.live!.access_token));
    await finish(d);
  });
});
