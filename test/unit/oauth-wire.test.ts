/**
 * The token request on a real socket, against a provider on loopback that
 * misbehaves: huge, endless, compressed or redirected answers, an abandoned
 * request, endpoints tokend must not send secrets to.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import type { ProviderSettings } from '../../src/shared/contract.ts';
import {
  discover,
  monzoApproval,
  OAuthClient,
  type DiscoveryOutcome,
  type TokenOutcome,
  type TokenResponse,
  type UpstreamFailure,
} from '../../src/provider/oauth.ts';
import { BodyTooLarge, BodyUndecodable, MAX_BODY_BYTES, readBody } from '../../src/provider/upstream-body.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

let server: Server;
let base = '';
let handler: Handler = (_req, res) => res.end();
/** Bytes the handler managed to write before the client went away. */
let written = 0;

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks).toString()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const timeouts = { connectMs: 2_000, headersMs: 5_000, bodyMs: 5_000, totalMs: 5_000 };
const settings = (over: Partial<ProviderSettings> = {}): ProviderSettings => ({
  name: 'custom',
  tokenUrl: `${base}/token`,
  issuer: null,
  clientId: 'client',
  clientSecret: 'client-secret-value',
  authMethod: 'client_secret_post',
  ...over,
});
const pair = JSON.stringify({ access_token: 'acc_1', refresh_token: 'ref_2', token_type: 'Bearer', expires_in: 60 });

async function refresh(opts: { settings?: Partial<ProviderSettings>; signal?: AbortSignal; totalMs?: number } = {}): Promise<TokenOutcome> {
  const client = new OAuthClient(settings(opts.settings), { ...timeouts, totalMs: opts.totalMs ?? timeouts.totalMs });
  try {
    return await client.refresh('ref_1', opts.signal);
  } finally {
    await client.close();
  }
}
const failed = async (p: Promise<TokenOutcome>): Promise<UpstreamFailure> => {
  const r = await p;
  if (r.kind === 'tokens') assert.fail('expected a failure');
  return r;
};
const refreshed = async (p: Promise<TokenOutcome>): Promise<TokenResponse> => {
  const r = await p;
  if (r.kind !== 'tokens') assert.fail(r.message);
  return r.tokens;
};
/** The message of a discovery that must fail. */
const refused = async (p: Promise<DiscoveryOutcome>): Promise<string> => {
  const r = await p;
  if (r.kind === 'discovered') assert.fail('discovery was expected to fail');
  return r.message;
};

/** Stream `total` bytes of a JSON-looking body, stopping when the client hangs up. */
function stream(res: ServerResponse, total: number, headers: Record<string, string | number> = {}): void {
  written = 0;
  res.writeHead(200, { 'content-type': 'application/json', ...headers });
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const more = (): void => {
    while (written < total && !res.destroyed) {
      written += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    if (!res.destroyed) res.end();
  };
  res.write('{"access_token":"');
  more();
}

describe('upstream answers are read up to 1 MiB', () => {
  it('a 60 MB answer fails as transient with no status (the rotation may be lost), and is not read to the end', async () => {
    handler = (_req, res) => stream(res, 60 * 1024 * 1024);
    const e = await failed(refresh());
    assert.equal(e.kind, 'transient');
    assert.equal(e.status, null);
    assert.equal(e.error, 'answer_too_large');
    assert.match(e.message, /token request to http:\/\/127\.0\.0\.1:\d+\/token failed: the answer was over 1 MiB and was not read/);
    assert.ok(written < 20 * 1024 * 1024, `the provider wrote ${written} bytes before the connection closed`);
  });

  it('a content-length over the cap is refused before reading', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': String(MAX_BODY_BYTES + 1) });
      res.write('{');
    };
    assert.equal((await failed(refresh())).error, 'answer_too_large');
  });

  it('an answer of exactly the cap is read', async () => {
    const padded = pair.replace('{', `{"pad":"${'x'.repeat(MAX_BODY_BYTES - pair.length - 9)}",`);
    assert.equal(Buffer.byteLength(padded), MAX_BODY_BYTES);
    handler = (_req, res) => res.end(padded);
    await refreshed(refresh());
  });

  it('an error answer over the cap is as unread as a success', async () => {
    handler = (_req, res) => {
      res.writeHead(500);
      res.end(Buffer.alloc(2 * MAX_BODY_BYTES, 'x'));
    };
    const e = await failed(refresh());
    assert.equal(e.status, null);
    assert.equal(e.error, 'answer_too_large');
  });

  it("Monzo's approval check reads no more than the cap either", async () => {
    handler = (_req, res) => stream(res, 60 * 1024 * 1024);
    assert.equal(await monzoApproval(base, 'acc_1'), 'unknown');
    assert.ok(written < 20 * 1024 * 1024, `the provider wrote ${written} bytes`);
    handler = (_req, res) => {
      res.writeHead(403);
      res.end('{"code":"forbidden.insufficient_permissions"}');
    };
    assert.equal(await monzoApproval(base, 'acc_1'), 'pending');
  });

  it('a body that never ends fails at the deadline', async () => {
    handler = (_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write(' '), 50);
      res.on('close', () => clearInterval(t));
    };
    const e = await failed(refresh({ totalMs: 600 }));
    assert.equal(e.kind, 'transient');
    assert.equal(e.status, null);
    assert.match(e.message, /timed out/);
  });
});

describe('compressed answers', () => {
  for (const [coding, encode] of [
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ] as const) {
    it(`a ${coding} answer is decoded (a provider may compress unasked)`, async () => {
      handler = (_req, res) => {
        res.writeHead(200, { 'content-encoding': coding, 'content-type': 'application/json' });
        res.end(encode(Buffer.from(pair)));
      };
      const r = await refreshed(refresh());
      assert.equal(r.refreshToken, 'ref_2');
    });
  }

  it('a small gzip bomb is stopped at 1 MiB of decoded text', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024, ' '));
    assert.ok(bomb.length < MAX_BODY_BYTES);
    handler = (_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end(bomb);
    };
    assert.equal((await failed(refresh())).error, 'answer_too_large');
  });

  it('an unknown coding, or a body that does not decode, is a clear failure', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-encoding': 'zstd' });
      res.end('xxxx');
    };
    assert.match((await failed(refresh())).message, /content coding tokend does not decode \(zstd\)/);
    handler = (_req, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' });
      res.end('not gzip at all');
    };
    const e = await failed(refresh());
    assert.equal(e.error, 'answer_undecodable');
    assert.equal(e.status, null);
  });

  it('readBody on its own: the cap counts what arrives, without a content-length', async () => {
    await assert.rejects(readBody(Readable.from([Buffer.alloc(600), Buffer.alloc(600)]), {}, 1000), BodyTooLarge);
    assert.equal(await readBody(Readable.from([Buffer.from('\ufeff{}')]), {}, 1000), '{}');
    await assert.rejects(readBody(Readable.from([Buffer.from('x')]), { 'content-encoding': 'gzip, br' }), BodyUndecodable);
    for (const coding of ['constructor', 'toString', '__proto__']) {
      await assert.rejects(readBody(Readable.from([Buffer.from('x')]), { 'content-encoding': coding }), BodyUndecodable, coding);
    }
  });
});

describe('an abandoned request', () => {
  it('aborted while waiting for the answer: transient, no status, said to be abandoned', async () => {
    let arrivedNow = (): void => undefined;
    const arrived = new Promise<void>((resolve) => (arrivedNow = resolve));
    handler = () => arrivedNow();
    const ac = new AbortController();
    const pending = refresh({ signal: ac.signal });
    await arrived;
    ac.abort();
    const e = await failed(pending);
    assert.equal(e.kind, 'transient');
    assert.equal(e.status, null);
    assert.equal(e.error, 'aborted');
    assert.equal(e.kind === 'transient' && e.retryAfterMs, null);
    assert.match(e.message, /token request to .* was abandoned before its answer was read/);
  });

  it('aborted while the body arrives: the same', async () => {
    const ac = new AbortController();
    handler = (_req, res) => {
      res.writeHead(200);
      res.write('{"access_token":', () => setTimeout(() => ac.abort(), 50));
    };
    const e = await failed(refresh({ signal: ac.signal }));
    assert.equal(e.error, 'aborted');
    assert.equal(e.status, null);
  });

  it('aborted once the answer has been read: the tokens stand', async () => {
    const ac = new AbortController();
    handler = (_req, res) => res.end(pair);
    const r = await refresh({ signal: ac.signal });
    ac.abort();
    assert.equal(r.kind === 'tokens' && r.tokens.accessToken, 'acc_1');
  });

  it('an error answer read before the abort keeps its status and kind', async () => {
    const ac = new AbortController();
    handler = (_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":"invalid_grant"}');
    };
    const e = await failed(refresh({ signal: ac.signal }));
    ac.abort();
    assert.equal(e.kind, 'invalid_grant');
    assert.equal(e.status, 400);
  });

  it('aborted during discovery: abandoned too', async () => {
    let arrivedNow = (): void => undefined;
    const arrived = new Promise<void>((resolve) => (arrivedNow = resolve));
    handler = () => arrivedNow();
    const ac = new AbortController();
    const pending = refresh({ settings: { tokenUrl: '', issuer: base }, signal: ac.signal });
    await arrived;
    ac.abort();
    const e = await failed(pending);
    assert.equal(e.error, 'aborted');
    assert.match(e.message, /discovery at .* was abandoned/);
  });

  it('a timeout is not mistaken for an abandon', async () => {
    handler = () => undefined;
    const e = await failed(refresh({ signal: new AbortController().signal, totalMs: 300 }));
    assert.match(e.message, /timed out/);
    assert.notEqual(e.error, 'aborted');
  });
});

describe('where secrets may go', () => {
  it('a token endpoint in plain http to another host is refused before anything is sent', async () => {
    // 192.0.2.0/24 is reserved for documentation: nothing answers there, and nothing is tried.
    const e = await failed(refresh({ settings: { tokenUrl: 'http://192.0.2.1/token' } }));
    assert.equal(e.error, 'insecure_endpoint');
    assert.match(e.message, /plain http to a host that is not this machine/);
  });

  it('a redirect from the token endpoint is a clear failure; the redirect is not followed', async () => {
    let followed = false;
    handler = (req, res) => {
      if (req.url === '/elsewhere') followed = true;
      res.writeHead(307, { location: `${base}/elsewhere` });
      res.end();
    };
    const e = await failed(refresh());
    assert.equal(e.kind, 'rejected');
    assert.match(e.message, /307, a redirect: tokend does not follow redirects/);
    assert.equal(followed, false);
  });

  it('a provider echoing the request gets none of its secrets repeated', async () => {
    for (const authMethod of ['client_secret_post', 'client_secret_basic'] as const) {
      handler = (req, res, body) => {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_request', error_description: `got ${body} with ${req.headers.authorization ?? ''}` }));
      };
      const e = await failed(refresh({ settings: { authMethod } }));
      assert.doesNotMatch(e.message, /ref_1|client-secret-value|Basic (?!\[redacted\])/, e.message);
      assert.match(e.message, /invalid_request: got grant_type=refresh_token/);
    }
  });

  it('discovery: a document naming another issuer, or a token endpoint in clear, is refused', async () => {
    const doc =
      (over: Record<string, unknown>): Handler =>
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: base, authorization_endpoint: `${base}/auth`, token_endpoint: `${base}/token`, ...over }));
      };
    handler = doc({});
    const found = await discover(base, timeouts);
    assert.equal(found.kind === 'discovered' && found.discovery.tokenEndpoint, `${base}/token`);
    handler = doc({ issuer: 'https://evil.example' });
    assert.match(await refused(discover(base, timeouts)), /names another issuer \(https:\/\/evil\.example\/\): refused/);
    handler = doc({ token_endpoint: 'http://evil.example/token' });
    assert.match(await refused(discover(base, timeouts)), /token_endpoint http:\/\/evil\.example\/token is plain http/);
    handler = doc({ authorization_endpoint: 'javascript:alert(1)' });
    assert.match(await refused(discover(base, timeouts)), /authorization_endpoint .* is not an http\(s\) URL/);
    assert.match(await refused(discover('http://192.0.2.1', timeouts)), /the issuer is plain http/);
  });

  it('discovery: a redirect is named as one; a huge document is not read', async () => {
    handler = (_req, res) => {
      res.writeHead(301, { location: 'https://elsewhere.example/' });
      res.end();
    };
    assert.match(await refused(discover(base, timeouts)), /answered 301 \(a redirect, which tokend does not follow\)/);
    handler = (_req, res) => stream(res, 10 * 1024 * 1024);
    assert.match(await refused(discover(base, timeouts)), /over 1 MiB/);
  });
});
