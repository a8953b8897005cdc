/**
 * The device authorization grant (RFC 8628): the provider's answer checked
 * before anything is shown or sent back, and the poll loop on Node's mock
 * timers — the provider's pace (`interval`, `slow_down`), its verdicts
 * (`access_denied`, `expired_token`), the code's own expiry, cancelling.
 * HTTP is undici's MockAgent: no socket is opened.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { MockAgent } from 'undici';
import {
  DEVICE_CODE_GRANT,
  NO_DEVICE_ENDPOINT,
  pollDeviceToken,
  startDeviceAuthorization,
  type DeviceAuthorization,
  type DevicePollOutcome,
} from '../../src/login/device.ts';
import { terminalQr } from '../../src/login/qr.ts';

const ORIGIN = 'https://idp.test';
const SECRET = 'client-secret-Qx7vB2nM9kL4pZ8w';
const client = { clientId: 'tokend-cli', clientSecret: SECRET, authMethod: 'client_secret_post' as const };
const endpoint = { ...client, tokenUrl: `${ORIGIN}/token` };
const DEVICE_CODE = 'dc-GmFq0aXr7Ty2Lw9eKp4Ns6Vb1Hj3Uc8Z';

interface Seen {
  readonly atMs: number;
  readonly form: URLSearchParams;
}

let agent: MockAgent;
/** Requests the mock provider received, with the (mocked) time of each. */
let seen: Seen[];

beforeEach(() => {
  agent = new MockAgent();
  agent.disableNetConnect();
  seen = [];
});
afterEach(async () => {
  await agent.close();
});

/** The provider answers each request with the next of `answers`, recording it. */
function provider(path: string, answers: Array<{ status: number; body: unknown; headers?: Record<string, string> }>): void {
  agent
    .get(ORIGIN)
    .intercept({ path, method: 'POST' })
    .reply((req) => {
      seen.push({ atMs: Date.now(), form: new URLSearchParams(req.body as string) });
      const a = answers.shift() ?? { status: 500, body: { error: 'no_more_answers' } };
      return { statusCode: a.status, data: JSON.stringify(a.body), responseOptions: { headers: { 'content-type': 'application/json', ...a.headers } } };
    })
    .persist();
}

describe('startDeviceAuthorization', () => {
  const rfcAnswer = {
    device_code: DEVICE_CODE,
    user_code: 'WDJB-MJHT',
    verification_uri: `${ORIGIN}/device`,
    verification_uri_complete: `${ORIGIN}/device?user_code=WDJB-MJHT`,
    expires_in: 1800,
    interval: 5,
  };

  it("reads the provider's answer and authenticates the client as at the token endpoint", async () => {
    provider('/device/auth', [{ status: 200, body: rfcAnswer }]);
    const started = await startDeviceAuthorization(`${ORIGIN}/device/auth`, client, 'openid offline_access', { dispatcher: agent });
    assert.deepEqual(started, {
      kind: 'started',
      authorization: {
        deviceCode: DEVICE_CODE,
        userCode: 'WDJB-MJHT',
        verificationUri: `${ORIGIN}/device`,
        verificationUriComplete: `${ORIGIN}/device?user_code=WDJB-MJHT`,
        expiresInSec: 1800,
        intervalSec: 5,
      },
    });
    assert.deepEqual(Object.fromEntries(seen[0]!.form), { scope: 'openid offline_access', client_id: 'tokend-cli', client_secret: SECRET });
  });

  it('no interval means 5 s; seconds as digit strings and the older verification_url are understood', async () => {
    const older = { device_code: DEVICE_CODE, user_code: 'WDJB-MJHT', verification_url: `${ORIGIN}/device`, expires_in: '900' };
    provider('/device/auth', [{ status: 200, body: older }]);
    const started = await startDeviceAuthorization(`${ORIGIN}/device/auth`, client, null, { dispatcher: agent });
    assert.equal(started.kind, 'started');
    if (started.kind !== 'started') return;
    assert.equal(started.authorization.intervalSec, 5);
    assert.equal(started.authorization.expiresInSec, 900);
    assert.equal(started.authorization.verificationUri, `${ORIGIN}/device`);
    assert.equal(started.authorization.verificationUriComplete, null);
    assert.equal(seen[0]!.form.has('scope'), false);
  });

  it('a client with no configured method and a secret authenticates with Basic, as at the token endpoint', async () => {
    let authorization: unknown;
    agent
      .get(ORIGIN)
      .intercept({ path: '/device/auth', method: 'POST' })
      .reply((req) => {
        authorization = (req.headers as Record<string, string>)['authorization'];
        return { statusCode: 200, data: JSON.stringify(rfcAnswer) };
      });
    const r = await startDeviceAuthorization(`${ORIGIN}/device/auth`, { ...client, authMethod: null }, null, { dispatcher: agent });
    assert.equal(r.kind, 'started');
    assert.equal(authorization, `Basic ${Buffer.from(`tokend-cli:${SECRET}`).toString('base64')}`);
  });

  it('a provider without a device endpoint: the error names the paste flow', async () => {
    const r = await startDeviceAuthorization(null, client, null, { dispatcher: agent });
    assert.deepEqual(r, { kind: 'unsupported', message: NO_DEVICE_ENDPOINT });
    assert.match(NO_DEVICE_ENDPOINT, /run `tokend login` and paste the URL your browser lands on/);
  });

  it('an endpoint in clear to another machine gets nothing: the client secret never leaves', async () => {
    const r = await startDeviceAuthorization('http://idp.example/device', client, null, { dispatcher: agent });
    assert.equal(r.kind, 'failed');
    assert.match(r.kind === 'failed' ? r.message : '', /^device authorization at http:\/\/idp\.example\/device refused: the endpoint is plain http/);
    assert.equal(seen.length, 0);
  });

  it('an answer missing or misshaping a field is refused in one line naming the field, echoing no value', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ device_code: undefined }, /no device_code/],
      [{ device_code: 'line\nbreak' }, /no device_code/],
      [{ user_code: undefined }, /no user_code/],
      [{ user_code: 'ABCD\u001b[2J' }, /no user_code/],
      [{ user_code: 'X'.repeat(65) }, /no user_code/],
      [{ verification_uri: undefined }, /has no verification_uri/],
      [{ verification_uri: 'http://phish.example/device' }, /verification_uri that is plain http to a host that is not this machine/],
      [{ verification_uri_complete: 'javascript:alert(1)' }, /verification_uri_complete that is not an http\(s\) URL/],
      [{ expires_in: undefined }, /no expires_in/],
      [{ expires_in: -5 }, /no expires_in/],
    ];
    for (const [change, why] of cases) {
      seen = [];
      provider('/device/auth', [{ status: 200, body: { ...rfcAnswer, ...change } }]);
      const r = await startDeviceAuthorization(`${ORIGIN}/device/auth`, client, null, { dispatcher: agent });
      assert.equal(r.kind, 'failed', JSON.stringify(change));
      const message = r.kind === 'failed' ? r.message : '';
      assert.match(message, why);
      assert.match(message, /^device authorization at https:\/\/idp\.test\/device\/auth failed: the answer /);
      assert.doesNotMatch(message, /\n/);
      assert.ok(!message.includes(DEVICE_CODE));
      agent.get(ORIGIN).cleanMocks();
    }
  });

  it("a refusal is in the provider's words, scrubbed of the client secret", async () => {
    provider('/device/auth', [{ status: 401, body: { error: 'invalid_client', error_description: `unknown client with secret ${SECRET}` } }]);
    const r = await startDeviceAuthorization(`${ORIGIN}/device/auth`, client, null, { dispatcher: agent });
    assert.deepEqual(r, {
      kind: 'failed',
      message:
        'device authorization at https://idp.test/device/auth failed: provider rejected the request with 401 (invalid_client: unknown client with secret [redacted])',
    });
  });

  it('the interval and expiry are bounded', async () => {
    provider('/device/auth', [{ status: 200, body: { ...rfcAnswer, interval: 100_000, expires_in: 10_000_000 } }]);
    const r = await startDeviceAuthorization(`${ORIGIN}/device/auth`, client, null, { dispatcher: agent });
    assert.equal(r.kind, 'started');
    if (r.kind === 'started') assert.deepEqual([r.authorization.intervalSec, r.authorization.expiresInSec], [300, 3600]);
  });
});

describe('pollDeviceToken', () => {
  const T0 = Date.UTC(2026, 0, 1);
  const authorization: DeviceAuthorization = {
    deviceCode: DEVICE_CODE,
    userCode: 'WDJB-MJHT',
    verificationUri: `${ORIGIN}/device`,
    verificationUriComplete: null,
    expiresInSec: 600,
    intervalSec: 5,
  };
  const pending = { status: 400, body: { error: 'authorization_pending' } };
  const tokens = { status: 200, body: { access_token: 'at-1', refresh_token: 'rt-1', token_type: 'Bearer', expires_in: 3600, scope: 'openid offline_access' } };

  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 }));
  afterEach(() => mock.timers.reset());

  /** Run the poll to its end, moving the mocked clock a second at a time while it waits. */
  async function run(poll: Promise<DevicePollOutcome>, maxSec = 3_600): Promise<DevicePollOutcome> {
    let outcome: DevicePollOutcome | undefined;
    void poll.then((o) => (outcome = o));
    for (let s = 0; s <= maxSec && outcome === undefined; s++) {
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      if (outcome === undefined) mock.timers.tick(1_000);
    }
    assert.ok(outcome, `the poll did not end within ${maxSec} s`);
    return outcome;
  }
  const offsets = (): number[] => seen.map((s) => (s.atMs - T0) / 1000);

  it('pending, then slow_down (5 s more between polls from then on), then the tokens', async () => {
    provider('/token', [pending, { status: 400, body: { error: 'slow_down' } }, pending, tokens]);
    const slower: number[] = [];
    const outcome = await run(pollDeviceToken(endpoint, authorization, { dispatcher: agent, onSlower: (sec) => slower.push(sec) }));
    assert.equal(outcome.kind, 'tokens');
    if (outcome.kind === 'tokens') {
      assert.equal(outcome.tokens.accessToken, 'at-1');
      assert.equal(outcome.tokens.refreshToken, 'rt-1');
      assert.equal(outcome.tokens.expiresInSec, 3600);
    }
    assert.deepEqual(offsets(), [5, 10, 20, 30]);
    assert.deepEqual(slower, [10]);
    assert.deepEqual(Object.fromEntries(seen[0]!.form), {
      grant_type: DEVICE_CODE_GRANT,
      device_code: DEVICE_CODE,
      client_id: 'tokend-cli',
      client_secret: SECRET,
    });
  });

  it('access_denied stops at once, in one line', async () => {
    provider('/token', [pending, { status: 400, body: { error: 'access_denied', error_description: 'End-User denied the authorization request' } }]);
    const outcome = await run(pollDeviceToken(endpoint, authorization, { dispatcher: agent }));
    assert.deepEqual(outcome, { kind: 'denied', message: 'device login failed: access_denied (the request was declined at the provider)' });
    assert.equal(seen.length, 2);
  });

  it('expired_token stops at once, saying to start again', async () => {
    provider('/token', [pending, pending, { status: 400, body: { error: 'expired_token' } }]);
    const outcome = await run(pollDeviceToken(endpoint, authorization, { dispatcher: agent }));
    assert.equal(outcome.kind, 'expired');
    assert.equal(
      outcome.kind === 'expired' ? outcome.message : '',
      'device login failed: the code expired before the login was approved; run tokend login --device again',
    );
  });

  it('the device code expiring on its own ends the wait without another request', async () => {
    provider('/token', [pending, pending, pending, pending]);
    const outcome = await run(pollDeviceToken(endpoint, { ...authorization, expiresInSec: 12 }, { dispatcher: agent }));
    assert.equal(outcome.kind, 'expired');
    assert.deepEqual(offsets(), [5, 10]);
    assert.equal(Date.now() - T0, 12_000);
  });

  it('no answer or a 5xx: polls less often (doubling, Retry-After honoured) and keeps waiting', async () => {
    agent.get(ORIGIN).intercept({ path: '/token', method: 'POST' }).replyWithError(new Error('connection reset'));
    provider('/token', [{ status: 503, body: { error: 'temporarily_unavailable' }, headers: { 'retry-after': '30' } }, tokens]);
    const slower: number[] = [];
    const outcome = await run(pollDeviceToken(endpoint, authorization, { dispatcher: agent, onSlower: (sec) => slower.push(sec) }));
    assert.equal(outcome.kind, 'tokens');
    // Reset at 5 s (interval 10 s from then on), 503 at 15 s asking for 30 s (interval 20 s), tokens at 45 s.
    assert.deepEqual(offsets(), [15, 45]);
    assert.deepEqual(slower, [10, 20]);
  });

  it("another refusal (invalid_client) fails in the provider's words, scrubbed of the device code and the client secret", async () => {
    provider('/token', [{ status: 401, body: { error: 'invalid_client', error_description: `no client ${SECRET} for ${DEVICE_CODE}` } }]);
    const outcome = await run(pollDeviceToken(endpoint, authorization, { dispatcher: agent }));
    assert.deepEqual(outcome, {
      kind: 'failed',
      message: 'device login failed: provider rejected the request with 401 (invalid_client: no client [redacted] for [redacted])',
    });
  });

  it('a success without an access token is a failure, never tokens', async () => {
    provider('/token', [{ status: 200, body: { token_type: 'Bearer' } }]);
    const outcome = await run(pollDeviceToken(endpoint, authorization, { dispatcher: agent }));
    assert.deepEqual(outcome, { kind: 'failed', message: 'device login failed: provider answered 200 without an access_token' });
  });

  it('aborting (Ctrl-C) while waiting cancels without another request', async () => {
    provider('/token', [pending, pending]);
    const ac = new AbortController();
    const poll = pollDeviceToken(endpoint, authorization, { dispatcher: agent, signal: ac.signal });
    mock.timers.tick(5_000);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    mock.timers.tick(2_000);
    ac.abort();
    assert.deepEqual(await poll, { kind: 'cancelled', message: 'login cancelled' });
    assert.deepEqual(offsets(), [5]);
  });
});

describe('terminalQr', () => {
  it('draws the verification URI as a QR code: non-empty, the same every time, different for another URI', async () => {
    const uri = 'https://idp.test/device?user_code=WDJB-MJHT';
    const a = await terminalQr(uri);
    assert.ok(a !== null && a.split('\n').length > 10, 'several lines');
    assert.match(a, /[▀▄█]/);
    assert.equal(await terminalQr(uri), a);
    assert.notEqual(await terminalQr('https://idp.test/device?user_code=WDJB-MJHX'), a);
  });

  it('a URI too long to scan from a terminal is not drawn', async () => {
    assert.equal(await terminalQr(`https://idp.test/device?user_code=${'A'.repeat(600)}`), null);
    assert.equal(await terminalQr(''), null);
  });
});
