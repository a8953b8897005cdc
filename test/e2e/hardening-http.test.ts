/**
 * The HTTP layer against a hostile or careless machine: other local users,
 * descriptor exhaustion, slow clients, browsers, and bytes no client should
 * send. Every daemon here is the built CLI in its own process.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chownSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { CLI, nodeForOtherUsers, Proc, rawExchange, runCli, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();

interface Answer {
  readonly status: number;
  readonly json: Record<string, unknown>;
}

const CLIENT = `
const [host, port, method, path, body] = JSON.parse(process.argv[1]);
const headers = body === null ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
const req = require('node:http').request({ host, port, method, path, headers, agent: false }, (res) => {
  let text = '';
  res.on('data', (d) => (text += d));
  res.on('end', () => process.stdout.write(JSON.stringify({ status: res.statusCode, text })));
});
req.on('error', (e) => process.stdout.write(JSON.stringify({ status: 0, text: e.code })));
req.end(body ?? undefined);
`;

/** One request from a separate process running as `uid` (gid the same). */
async function requestAs(uid: number, address: string, method: string, path: string, body: string | null = null): Promise<Answer> {
  const i = address.lastIndexOf(':');
  const child = spawn(nodeForOtherUsers(), ['-e', CLIENT, JSON.stringify([address.slice(0, i), Number(address.slice(i + 1)), method, path, body])], {
    uid,
    gid: uid,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.once('close', resolve));
  const { status, text } = JSON.parse(out) as { status: number; text: string };
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON
  }
  return { status, json };
}

/** The listen address of a daemon started by hand (not through Daemon.start). */
async function serving(p: Proc): Promise<string> {
  return String((await p.waitForLog('tokend serving'))['listen']);
}

const asRoot = process.geteuid?.() === 0;

describe('the same-user rule on a keyless loopback listener', { skip: !asRoot && 'needs root to act as other users' }, () => {
  it('another user (uid 65534) gets 403 forbidden_user on every route but /healthz, and cannot overwrite the tokens', async () => {
    const { d, stateFile } = await suite.start();
    const before = readFileSync(stateFile, 'utf8');
    for (const path of ['/token', '/state', '/metrics', '/events', '/readyz']) {
      const r = await requestAs(65534, d.address, 'GET', path);
      assert.equal(r.status, 403, path);
      assert.equal(r.json['error'], 'forbidden_user', path);
      assert.match(String(r.json['message']), /uid 65534 may not use this daemon/);
    }
    const set = await requestAs(65534, d.address, 'POST', '/set-tokens', JSON.stringify({ access_token: 'stolen', refresh_token: 'stolen' }));
    assert.equal(set.status, 403);
    assert.equal(readFileSync(stateFile, 'utf8'), before);
    assert.equal((await requestAs(65534, d.address, 'GET', '/healthz')).status, 200);
    // Root (and tokend's own user: here the same) is served.
    const mine = await requestAs(0, d.address, 'GET', '/token');
    assert.equal(mine.status, 200);
    suite.outputs.push(JSON.stringify(mine).replace(String(mine.json['access_token']), ''));
    await suite.finish(d);
    assert.match(d.output, /refused a connection from another user/);
  });

  it('a daemon running as uid 4242 serves its own user, root and TOKEND_ALLOWED_UIDS, and refuses everyone else', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    chownSync(dir, 4242, 4242);
    chownSync(stateFile, 4242, 4242);
    const env = { ...stubEnv(suite.stub, stateFile), HOME: dir, TOKEND_LISTEN: '127.0.0.1:0', TOKEND_LOG_LEVEL: 'debug', TOKEND_ALLOWED_UIDS: '65533' };
    const p = new Proc(['--reuid=4242', '--regid=4242', '--clear-groups', nodeForOtherUsers(), CLI, 'serve'], env, { command: 'setpriv', cwd: dir });
    const address = await serving(p);
    for (const [uid, status] of [
      [4242, 200],
      [0, 200],
      [65533, 200],
      [65534, 403],
    ] as const) {
      const r = await requestAs(uid, address, 'GET', '/token');
      assert.equal(r.status, status, `uid ${uid}: ${JSON.stringify(r.json['error'])}`);
      if (status === 403) assert.equal(r.json['error'], 'forbidden_user');
    }
    p.kill('SIGTERM');
    assert.equal((await p.exited).code, 0, p.output);
    suite.outputs.push(p.output);
  });
});

/** Opens GET /events and resolves once the answer's head has arrived; a 503 is read to its end. */
function openEvents(address: string): Promise<{ res: IncomingMessage; json: Record<string, unknown> | null }> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: address.slice(0, i), port: Number(address.slice(i + 1)), path: '/events', agent: false }, (res) => {
      if (res.statusCode === 200) return resolve({ res, json: null });
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ res, json: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('pipelining clients that never read', () => {
  /** One connection that pipelines requests as fast as the daemon takes them and never reads an answer; resolves when the daemon closes it. */
  const FLOOD = `
const [host, port, path] = JSON.parse(process.argv[1]);
const s = require('net').connect(port, host, () => {
  s.pause();
  const r = 'GET ' + path + ' HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n';
  const more = () => { while (s.write(r.repeat(64))); };
  s.on('drain', more);
  more();
});
s.on('error', () => undefined);
s.on('close', () => process.exit(0));
setTimeout(() => process.exit(3), 20000);
`;
  const cases: Array<[string, number, string]> = [
    ['GET /token', 0, '/token'],
    ['GET /metrics (answered asynchronously)', 0, '/metrics'],
    ['GET /token from another user (refused)', 65534, '/token'],
    ['GET /healthz from another user', 65534, '/healthz'],
  ];
  for (const [name, uid, path] of cases) {
    it(
      `${name}: the connection is cut off, the daemon stays small and keeps answering`,
      { skip: uid !== 0 && !asRoot && 'needs root to act as another user' },
      async () => {
        const { d } = await suite.start();
        const i = d.address.lastIndexOf(':');
        const flood = spawn(nodeForOtherUsers(), ['-e', FLOOD, JSON.stringify([d.address.slice(0, i), Number(d.address.slice(i + 1)), path])], {
          ...(uid === 0 ? {} : { uid, gid: uid }),
          stdio: 'ignore',
        });
        const code = await new Promise<number | null>((resolve) => flood.once('exit', resolve));
        assert.equal(code, 0, 'the daemon closed the flooding connection (exit 3: still open after 20 s)');
        assert.equal((await d.request('GET', '/healthz')).status, 200);
        const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.pid}/status`, 'utf8'))?.[1]);
        assert.ok(rssKb < 300 * 1024, `RSS ${rssKb} kB after the flood`);
        await suite.finish(d);
      },
    );
  }
});

describe('descriptor exhaustion', () => {
  it('under `ulimit -n 256`, 300 event clients and a connection flood get polite 503s; the daemon stays up and serves once they leave', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const env = { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0', TOKEND_LOG_LEVEL: 'debug' };
    const p = new Proc(['-c', `ulimit -n 256; exec "${process.execPath}" "${CLI}" serve`], env, { command: 'sh' });
    const address = await serving(p);
    const caps = await p.waitForLog('connection caps lowered to fit the open-file limit');
    const eventCap = Number(caps['eventClients']);
    const connectionCap = Number(caps['connections']);
    assert.ok(connectionCap <= 256 - 64 && eventCap < connectionCap, JSON.stringify(caps));

    const streams: IncomingMessage[] = [];
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const { res, json } = await openEvents(address);
      if (res.statusCode === 200) streams.push(res);
      else {
        assert.equal(res.statusCode, 503);
        assert.equal(res.headers['connection'], 'close');
        assert.equal(json?.['error'], 'overloaded');
        refused++;
      }
    }
    assert.equal(streams.length, eventCap);
    assert.equal(refused, 300 - eventCap);
    const health = await rawExchange(address, 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', false);
    assert.match(health, /^HTTP\/1\.1 200 /, 'healthz answers with every event stream taken');

    // Past the connection cap: a complete JSON 503 on the socket itself, at once.
    const i = address.lastIndexOf(':');
    const sockets: Socket[] = [];
    const open = (): Promise<string> => {
      const s = connect(Number(address.slice(i + 1)), address.slice(0, i));
      s.write('GET /healthz HTTP/1.1\r\n'); // unfinished: an accepted connection stays quiet
      sockets.push(s);
      return new Promise((resolve) => {
        let out = '';
        s.on('data', (d: Buffer) => (out += d.toString()));
        s.on('error', () => undefined);
        s.on('close', () => resolve(out));
      });
    };
    const answers = Array.from({ length: connectionCap - eventCap + 10 }, open);
    const overloaded = await Promise.race([
      Promise.all(answers.slice(-10)),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the connections past the cap got no answer')), 8_000)),
    ]);
    for (const raw of overloaded) {
      assert.match(raw, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
      assert.match(raw, /\r\nconnection: close\r\n/);
      assert.equal(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))['error'], 'overloaded');
    }
    // A flood past the open-file limit itself: refused or dropped, never fatal.
    await Promise.all(Array.from({ length: 400 }, open));

    for (const s of sockets) s.destroy();
    for (const res of streams) res.destroy();
    assert.equal(p.child.exitCode, null, p.output);
    const token = await rawExchange(address, 'GET /token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', false);
    assert.match(token, /^HTTP\/1\.1 200 /);
    assert.ok(token.includes(suite.stub.live!.access_token));
    p.kill('SIGTERM');
    assert.equal((await p.exited).code, 0, p.output);
    assert.doesNotMatch(p.output, /fatal|EMFILE/);
    suite.outputs.push(p.output);
  });
});

/** Sends `head`, then one `drip` a second, until the daemon closes; resolves with what it said and when. */
function trickle(address: string, head: string, drip: string): Promise<{ answer: string; ms: number }> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect(Number(address.slice(i + 1)), address.slice(0, i), () => s.write(head));
    const timer = setInterval(() => s.writable && s.write(drip), 1_000);
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearInterval(timer);
      resolve({ answer, ms: performance.now() - t0 });
    });
  });
}

describe('slow clients', () => {
  it('a client trickling headers is cut at 10 s, one trickling a body at 30 s, each with a JSON 408', async () => {
    const { d, stateFile } = await suite.start();
    const before = readFileSync(stateFile, 'utf8');
    const [headers, body] = await Promise.all([
      trickle(d.address, 'GET /token HTTP/1.1\r\nHost: localhost\r\n', 'x-pad: 1\r\n'),
      trickle(d.address, 'POST /set-tokens HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n', ' '),
    ]);
    for (const [what, r, limit] of [
      ['headers', headers, 10_000],
      ['body', body, 30_000],
    ] as const) {
      assert.ok(r.ms >= limit - 500 && r.ms <= limit + 3_000, `${what}: cut after ${Math.round(r.ms)} ms, documented ${limit} ms`);
      assert.match(r.answer, /^HTTP\/1\.1 408 /, what);
      const answer = JSON.parse(r.answer.slice(r.answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      assert.equal(answer['error'], 'invalid_request', what);
      assert.match(String(answer['message']), /did not arrive in time/, what);
    }
    assert.equal(readFileSync(stateFile, 'utf8'), before);
    assert.equal((await d.request('GET', '/healthz')).status, 200);
    await suite.finish(d);
    assert.doesNotMatch(d.output, /unexpected error/, 'a client cut off mid-body is not a fault of the daemon');
  });
});

describe('browsers', () => {
  const origin = 'https://app.example';
  const key = 'browser-key-0123456789';

  it('an allowed origin reads every answer (exact Allow-Origin, Vary: Origin) and its preflights are answered', async () => {
    const { d } = await suite.start({ env: { TOKEND_ALLOWED_ORIGINS: origin, TOKEND_API_KEY: key } });
    const auth = { authorization: `Bearer ${key}`, origin };
    const token = await d.request('GET', '/token', { headers: auth });
    assert.equal(token.status, 200);
    assert.equal(token.headers['access-control-allow-origin'], origin);
    assert.equal(token.headers['vary'], 'Origin');
    const denied = await d.request('GET', '/token', { headers: { origin } });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['access-control-allow-origin'], origin, 'a page must be able to read why it was refused');
    const set = await d.request('POST', '/set-tokens', { headers: { ...auth, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(set.status, 400);
    assert.equal(set.headers['access-control-allow-origin'], origin);

    const preflight = await d.request('OPTIONS', '/set-tokens', {
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], origin);
    assert.match(String(preflight.headers['access-control-allow-methods']), /POST/);
    assert.match(String(preflight.headers['access-control-allow-headers']), /Authorization/);
    assert.match(String(preflight.headers['access-control-allow-headers']), /Content-Type/);
    assert.ok(Number(preflight.headers['access-control-max-age']) > 0);
    assert.equal(preflight.headers['vary'], 'Origin');

    for (const other of ['https://evil.example', 'null']) {
      const refused = await d.request('OPTIONS', '/set-tokens', { headers: { origin: other, 'access-control-request-method': 'POST' } });
      assert.equal(refused.status, 403, other);
      assert.equal(refused.json['error'], 'forbidden_origin');
      assert.equal(refused.headers['access-control-allow-origin'], undefined);
    }
    const foreign = await d.request('GET', '/token', { headers: { authorization: `Bearer ${key}`, origin: 'https://evil.example' } });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.headers['access-control-allow-origin'], undefined);
    suite.outputs.push(token.text.replace(String(token.json['access_token']), ''));
    await suite.finish(d);
  });
});

describe('requests no client should send', () => {
  it('HTTP/1.1 without Host gets a JSON 400 saying so; HTTP/1.0 without Host is served', async () => {
    const { d } = await suite.start();
    const v11 = await rawExchange(d.address, 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', false);
    assert.match(v11, /^HTTP\/1\.1 400 /);
    assert.match(v11, /content-type: application\/json/i);
    const body = JSON.parse(v11.slice(v11.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    assert.equal(body['error'], 'invalid_request');
    assert.match(String(body['message']), /Host/);
    const v10 = await rawExchange(d.address, 'GET /healthz HTTP/1.0\r\n\r\n', false);
    assert.match(v10, /^HTTP\/1\.1 200 /);
    await suite.finish(d);
  });

  it('HEAD answers a GET route without a body; OPTIONS lists the methods; other methods get 405 with Allow', async () => {
    const { d } = await suite.start();
    const head = await rawExchange(d.address, 'HEAD /token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', false);
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.ok(head.endsWith('\r\n\r\n'), 'no body after the head');
    const options = await d.request('OPTIONS', '/set-tokens');
    assert.equal(options.status, 204);
    assert.equal(options.headers['allow'], 'POST, OPTIONS');
    const put = await d.request('PUT', '/token');
    assert.equal(put.status, 405);
    assert.equal(put.headers['allow'], 'GET, HEAD, OPTIONS');
    assert.equal((await d.request('OPTIONS', '/nowhere')).status, 404);
    await suite.finish(d);
  });

  it('/set-tokens takes RFC 6750 token characters only, names the field and never echoes the value', async () => {
    const { d, stateFile } = await suite.start();
    const before = readFileSync(stateFile, 'utf8');
    const bad: Array<[string, Record<string, unknown>]> = [
      ['access_token', { access_token: 'abc\u0000def' }],
      ['access_token', { access_token: 'abc\r\nX-Evil: 1' }],
      ['access_token', { access_token: 'abc\ud800def' }],
      ['access_token', { access_token: 'abc def' }],
      ['access_token', { access_token: 'ab=c' }],
      ['refresh_token', { access_token: 'good.token', refresh_token: 'has\ttab' }],
      ['refresh_token', { access_token: 'good.token', refresh_token: 'caf\u00e9' }],
      ['token_type', { access_token: 'good.token', token_type: 'mac' }],
    ];
    for (const [field, body] of bad) {
      const r = await d.request('POST', '/set-tokens', { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json['error'], 'invalid_request');
      assert.match(String(r.json['message']), new RegExp(`${field}: `));
      for (const value of Object.values(body)) assert.ok(!String(r.json['message']).includes(String(value)), 'the value is never echoed');
    }
    assert.equal(readFileSync(stateFile, 'utf8'), before);

    const ok = await d.request('POST', '/set-tokens', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ access_token: 'new-Access_token.1~+/==', token_type: 'bEaReR' }),
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json['token_type'], 'Bearer');
    assert.equal((await d.request('GET', '/token')).json['token_type'], 'Bearer');
    assert.equal((JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, unknown>)['token_type'], 'Bearer');
    await suite.finish(d);
  });
});

describe('configuration refused before anything starts', () => {
  for (const [what, env, pattern] of [
    // With an API key, a non-loopback name passes the loopback rule: it must still be refused here, not at listen.
    [
      'an unresolvable listen host',
      { TOKEND_LISTEN: 'no-such-host.invalid:4242', TOKEND_API_KEY: 'k'.repeat(24) },
      /^tokend: TOKEND_LISTEN \(--listen\): "no-such-host\.invalid" is not an IP address or localhost\n$/,
    ],
    [
      'an API key of spaces',
      { TOKEND_API_KEY: ' '.repeat(24) },
      /^tokend: TOKEND_API_KEY \(--api-key\): must be at least 16 visible ASCII characters, without spaces\n$/,
    ],
    ['a timeout in hex', { TOKEND_UPSTREAM_TIMEOUT_MS: '0x3e8' }, /^tokend: TOKEND_UPSTREAM_TIMEOUT_MS \(--upstream-timeout\): must be an integer/],
  ] as const) {
    it(`${what}: one line, exit 2`, async () => {
      const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
      const p = await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), ...env });
      assert.equal(p.result.code, 2, p.output);
      assert.match(p.stderr, pattern);
      assert.equal(p.stderr.trim().split('\n').length, 1, p.stderr);
      assert.equal(p.stdout, '');
    });
  }
});
