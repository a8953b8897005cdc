/**
 * Abuse: property-based fuzzing of every route with random methods, headers,
 * bodies and sizes — no crash, no 5xx, no change to the state. And slow
 * clients that cannot hold the daemon hostage.
 * `TOKEND_SOAK=1` runs 10,000 requests; the default is 2,000.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Daemon, findLeaks, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { MonzoStub } from '../fixtures/monzo-stub.ts';

const RUNS = process.env['TOKEND_SOAK'] === '1' ? 10_000 : 2_000;
let stub: MonzoStub;
let d: Daemon;
let stateFile: string;

before(async () => {
  stub = await new MonzoStub().start();
  stateFile = stateFileWith(tempDir(), stub.login(), 3600);
  d = await Daemon.start(stubEnv(stub, stateFile, { TOKEND_LOG_LEVEL: 'info' }));
});
after(async () => {
  assert.equal((await d.stop()).code, 0);
  await stub.close();
  assert.deepEqual(findLeaks(d.output, stub.issued), []);
});

const routes = ['/token', '/state', '/refresh-tokens', '/set-tokens', '/healthz', '/readyz', '/metrics'];
const setTokenKeys = new Set(['access_token', 'refresh_token', 'expires_in', 'token_type', 'scope', 'user_id', 'client_id']);

/** Whether a request would legitimately change the state (a real refresh or a valid set): those are not fuzz. */
function wouldChangeState(method: string, path: string, contentType: string | undefined, body: string | undefined): boolean {
  if (method !== 'POST') return false;
  const json = contentType !== undefined && /^application\/([a-z.+-]*\+)?json/i.test(contentType.trim());
  if (path === '/refresh-tokens') return body === undefined || body === '' || json;
  if (path === '/set-tokens' && json && body !== undefined && Buffer.byteLength(body, 'latin1') <= 16 * 1024) {
    try {
      const v = JSON.parse(body) as unknown;
      return (
        v !== null &&
        typeof v === 'object' &&
        !Array.isArray(v) &&
        typeof (v as Record<string, unknown>)['access_token'] === 'string' &&
        Object.keys(v).every((k) => setTokenKeys.has(k))
      );
    } catch {
      return false;
    }
  }
  return false;
}

const request = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE'),
  path: fc.oneof(
    fc.constantFrom(...routes),
    fc.webPath(),
    fc.tuple(fc.constantFrom(...routes), fc.webQueryParameters()).map(([p, q]) => `${p}?${q}`),
    fc.string({ maxLength: 40 }).map((s) => `/${encodeURIComponent(s)}`),
  ),
  contentType: fc.option(
    fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data',
      'application/merge-patch+json',
      '',
    ),
    { nil: undefined },
  ),
  // Mostly requests that pass the guards, so the routes themselves are fuzzed.
  host: fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 6 },
    { arbitrary: fc.constantFrom('localhost', '127.0.0.1:1', '[::1]'), weight: 2 },
    { arbitrary: fc.constantFrom('evil.example', 'localhost.evil.example', '', 'a b'), weight: 1 },
  ),
  origin: fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 8 },
    { arbitrary: fc.constantFrom('https://evil.example', 'null', 'http://localhost'), weight: 1 },
  ),
  authorization: fc.option(fc.oneof(fc.string(), fc.constant('Bearer ')), { nil: undefined }),
  body: fc.option(
    fc.oneof(
      fc.json(),
      fc.string(),
      fc
        .record({ access_token: fc.oneof(fc.string(), fc.integer(), fc.constant(null)), expires_in: fc.oneof(fc.integer(), fc.string(), fc.double()) })
        .map((o) => JSON.stringify({ ...o, extra: 1 })),
      fc.integer({ min: 16 * 1024 - 10, max: 40 * 1024 }).map((n) => `{"access_token":"${'a'.repeat(n)}"}`),
      fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b).toString('latin1')),
    ),
    { nil: undefined },
  ),
});

type FuzzRequest = typeof request extends fc.Arbitrary<infer T> ? T : never;

function send(r: FuzzRequest): Promise<{ status: number; body: string }> {
  const [host, port] = d.address.split(':');
  return new Promise((resolve, reject) => {
    const headers: string[] = [];
    if (r.host !== undefined) headers.push(`Host: ${r.host}`);
    else headers.push(`Host: ${d.address}`);
    if (r.contentType !== undefined) headers.push(`Content-Type: ${r.contentType}`);
    if (r.origin !== undefined) headers.push(`Origin: ${r.origin}`);
    if (r.authorization !== undefined && !/[\r\n\0]/.test(r.authorization)) headers.push(`Authorization: ${r.authorization.replace(/[^\x20-\x7e]/g, '')}`);
    const body = r.body === undefined ? Buffer.alloc(0) : Buffer.from(r.body, 'latin1');
    if (r.body !== undefined) headers.push(`Content-Length: ${body.length}`);
    headers.push('Connection: close');
    const s = connect(Number(port), host, () => {
      s.write(`${r.method} ${r.path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      s.end(body);
    });
    let out = '';
    s.on('data', (c) => (out += c.toString('latin1')));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(out);
      resolve({ status: m ? Number(m[1]) : 0, body: out.slice(out.indexOf('\r\n\r\n') + 4) });
    });
  });
}

describe('fuzzing', () => {
  it(`${RUNS} random requests on every route: 0 crashes, 0 5xx, every error is JSON, the state unchanged`, async (t) => {
    const before = readFileSync(stateFile, 'utf8');
    const token = (await d.request('GET', '/token')).json['access_token'];
    const calls = stub.calls.length;
    const statuses = new Map<number, number>();
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        fc.pre(!wouldChangeState(r.method, r.path.split('?')[0] ?? '', r.contentType, r.body));
        fc.pre(!r.path.startsWith('/events'));
        const res = await send(r);
        sent++;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status >= 200 && res.status < 500, `${r.method} ${r.path} → ${res.status}: ${res.body.slice(0, 200)}`);
        if (res.status >= 400 && r.method !== 'HEAD') {
          const body = JSON.parse(res.body.replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, '')) as { error: string; message: string };
          assert.equal(typeof body.error, 'string');
          assert.equal(typeof body.message, 'string');
        }
      }),
      { numRuns: RUNS, maxSkipsPerRun: 100 },
    );
    t.diagnostic(`requests=${sent} statuses=${JSON.stringify(Object.fromEntries(statuses))}`);
    if (process.env['TOKEND_SOAK'] === '1') process.stderr.write(`SOAK fuzz: requests=${sent} statuses=${JSON.stringify(Object.fromEntries(statuses))}\n`);
    assert.equal(readFileSync(stateFile, 'utf8'), before, 'the state file changed');
    assert.equal((await d.request('GET', '/token')).json['access_token'], token);
    assert.equal(stub.calls.length, calls, 'no upstream call was caused');
    assert.equal((await d.request('GET', '/healthz')).status, 200);
  });
});

describe('slow clients', () => {
  it('50 slow-loris connections trickling headers do not block other clients', async () => {
    const sockets: Socket[] = [];
    const [host, port] = d.address.split(':');
    for (let i = 0; i < 50; i++) {
      const s = connect(Number(port), host);
      s.on('error', () => undefined);
      s.write('GET /token HTTP/1.1\r\nHost: localhost\r\n');
      sockets.push(s);
    }
    const trickle = setInterval(() => sockets.forEach((s) => s.write('X-Slow: 1\r\n')), 50);
    try {
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 100 }, () => d.request('GET', '/token')));
      assert.ok(answers.every((a) => a.status === 200));
      assert.ok(Date.now() - started < 5_000, 'other clients were served promptly');
    } finally {
      clearInterval(trickle);
      sockets.forEach((s) => s.destroy());
    }
  });
});
