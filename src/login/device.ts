/**
 * `tokend login --device`: the device authorization grant (RFC 8628), for a
 * machine with no browser. tokend asks the provider for a device code and a
 * short user code, shows the verification URI (and a QR code of it), and
 * polls the token endpoint while the user approves on any other device.
 *
 * The provider's answers are read like the token endpoint's: bodies capped
 * (upstream-body.ts), fields checked and bounded before anything is shown on
 * the terminal or sent back, its words scrubbed of what was sent. The pace is
 * the provider's: `interval` between polls (5 s when it says none),
 * `slow_down` adds 5 s for good (RFC 8628 §3.5), no answer or a 5xx doubles
 * it; the wait ends when the device code expires. Waiting goes through an
 * injectable clock, so the loop is tested on mocked timers.
 */
import { Agent, request, type Dispatcher } from 'undici';
import type { ClientAuthMethod, ProviderSettings, UpstreamTimeouts } from '../shared/contract.js';
import { insecureEndpoint } from '../shared/endpoint.js';
import { REFRESH_TOKEN, MAX_TOKEN_CHARS } from '../shared/token-syntax.js';
import { classifyTokenAnswer, networkErrorCode, safeUrl, tokenRequest, type Reply, type SentRequest, type TokenResponse } from '../provider/oauth.js';
import { BodyTooLarge, BodyUndecodable, MAX_BODY_BYTES, readBody } from '../provider/upstream-body.js';

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export interface DeviceAuthorization {
  /** Secret: sent back to the token endpoint only, never shown. */
  readonly deviceCode: string;
  /** What the user types at `verificationUri`. */
  readonly userCode: string;
  readonly verificationUri: string;
  /** The verification URI with the user code in it, when the provider gives one (what the QR code shows). */
  readonly verificationUriComplete: string | null;
  readonly expiresInSec: number;
  readonly intervalSec: number;
}

/**
 * The client as the provider knows it: authenticated at the device endpoint
 * as at the token endpoint (`authMethod` null: Basic with a secret, else none).
 */
export type DeviceClient = Pick<ProviderSettings, 'clientId' | 'clientSecret' | 'authMethod'>;

/** The token endpoint and the client, resolved: `resolveEndpoints(config).settings` in flow.ts is one. */
export type DeviceTokenEndpoint = DeviceClient & Pick<ProviderSettings, 'tokenUrl'>;

/** The form body and headers of a request from `client`, authenticated as configured. */
function formFor(client: DeviceClient, params: Record<string, string>): { body: string; headers: Record<string, string> } {
  const authMethod: ClientAuthMethod = client.authMethod ?? (client.clientSecret === null ? 'none' : 'client_secret_basic');
  return tokenRequest({ ...client, authMethod }, params);
}

export type DeviceStartOutcome =
  | { readonly kind: 'started'; readonly authorization: DeviceAuthorization }
  /** The provider has no device authorization endpoint: the paste flow is the way. */
  | { readonly kind: 'unsupported'; readonly message: string }
  | { readonly kind: 'failed'; readonly message: string };

export type DevicePollOutcome =
  | { readonly kind: 'tokens'; readonly tokens: TokenResponse }
  /** The user declined (`access_denied`). */
  | { readonly kind: 'denied'; readonly message: string }
  /** The device code expired before the user approved (`expired_token`, or its `expires_in` passed). */
  | { readonly kind: 'expired'; readonly message: string }
  | { readonly kind: 'cancelled'; readonly message: string }
  | { readonly kind: 'failed'; readonly message: string };

export interface DeviceClock {
  now(): number;
  /** Resolves after `ms`, or rejects when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Global `setTimeout` (not `timers/promises`): Node's mock timers replace it in tests. */
export const systemClock: DeviceClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason as Error);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export interface DeviceRequestOptions {
  readonly timeouts?: UpstreamTimeouts;
  readonly dispatcher?: Dispatcher;
  readonly signal?: AbortSignal;
}

export interface DevicePollOptions extends DeviceRequestOptions {
  readonly clock?: DeviceClock;
  /** Told when the pace changes (`slow_down`, a failed attempt), with the new interval: for the spinner. */
  readonly onSlower?: (intervalSec: number, why: string) => void;
}

const DEFAULT_TIMEOUTS: UpstreamTimeouts = { connectMs: 5_000, headersMs: 15_000, bodyMs: 15_000, totalMs: 20_000 };
/** RFC 8628 §3.2: clients use 5 s when the provider names no interval. */
const DEFAULT_INTERVAL_SEC = 5;
/** An interval above this is the provider's mistake: nobody waits 5 minutes between looks. */
const MAX_INTERVAL_SEC = 300;
/** Longest wait a provider may ask for (device codes live 5–30 minutes). */
const MAX_EXPIRES_SEC = 3_600;
/** Failed attempts double the interval up to this. */
const MAX_BACKOFF_SEC = 60;
const MAX_USER_CODE = 64;
const MAX_URI = 2_048;

export const NO_DEVICE_ENDPOINT = 'this provider offers no device authorization; run `tokend login` and paste the URL your browser lands on';

/** A whole number of seconds (a number, or decimal digits as some providers send), or null. */
function seconds(value: unknown): number | null {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN;
  return Number.isFinite(n) && n >= 0 ? Math.ceil(n) : null;
}

function jsonObject(text: string): Record<string, unknown> | null {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return Object.assign(Object.create(null) as Record<string, unknown>, parsed);
  } catch {
    // not JSON
  }
  return null;
}

/** A URI the user is sent to, or why not: the user logs in there, so not in clear to another machine. */
function verificationUri(value: unknown, name: string): { uri: string } | { why: string } {
  if (typeof value !== 'string' || value === '') return { why: `has no ${name}` };
  if (value.length > MAX_URI) return { why: `has a ${name} over ${MAX_URI} characters` };
  const insecure = insecureEndpoint(value);
  if (insecure) return { why: `has a ${name} that ${insecure}` };
  return { uri: new URL(value).toString() };
}

/** One POST and its whole answer, capped and within the deadline; or why no answer was read. Never throws. */
async function post(
  what: string,
  url: string,
  form: { body: string; headers: Record<string, string> },
  dispatcher: Dispatcher,
  opts: DeviceRequestOptions,
): Promise<Reply> {
  const deadline = AbortSignal.timeout((opts.timeouts ?? DEFAULT_TIMEOUTS).totalMs);
  try {
    const res = await request(url, {
      method: 'POST',
      body: form.body,
      headers: form.headers,
      dispatcher,
      signal: opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline,
    });
    const headers = res.headers as Record<string, string | string[] | undefined>;
    return { kind: 'answer', status: res.statusCode, headers, text: await readBody(res.body, headers) };
  } catch (err) {
    if (opts.signal?.aborted) return { kind: 'unread', error: 'aborted', message: `${what} was abandoned` };
    if (err instanceof BodyTooLarge)
      return { kind: 'unread', error: 'answer_too_large', message: `${what} failed: the answer was over ${MAX_BODY_BYTES / 1024 / 1024} MiB and was not read` };
    if (err instanceof BodyUndecodable) return { kind: 'unread', error: 'answer_undecodable', message: `${what} failed: ${err.message}` };
    const code = networkErrorCode(err);
    return { kind: 'unread', error: code, message: `${what} failed: ${/TIMEOUT|TimeoutError/.test(code) ? `timed out (${code})` : code}` };
  }
}

/** Run `fn` with the caller's dispatcher, or with one of its own (upstream timeouts), destroyed after. */
async function withDispatcher<T>(opts: DeviceRequestOptions, fn: (dispatcher: Dispatcher) => Promise<T>): Promise<T> {
  if (opts.dispatcher) return fn(opts.dispatcher);
  const t = opts.timeouts ?? DEFAULT_TIMEOUTS;
  const own = new Agent({ connect: { timeout: t.connectMs }, headersTimeout: t.headersMs, bodyTimeout: t.bodyMs });
  try {
    return await fn(own);
  } finally {
    await own.destroy().catch(() => undefined);
  }
}

/** Every secret in a request: the parameters' values but the grant type, the client secret, the Basic credentials. */
function secretsOf(params: Record<string, string>, client: DeviceClient, headers: Record<string, string>): string[] {
  const secrets = Object.entries(params)
    .filter(([name]) => name !== 'grant_type' && name !== 'scope')
    .map(([, v]) => v);
  if (client.clientSecret !== null) secrets.push(client.clientSecret);
  if (headers['authorization']) secrets.push(headers['authorization'].replace(/^Basic /, ''));
  return secrets;
}

/**
 * Ask the provider's device authorization endpoint (discovered as
 * `device_authorization_endpoint`, or configured) for a device code and a
 * user code. `endpoint` null: the provider offers none (`unsupported`, naming
 * the paste flow). Never throws.
 */
export async function startDeviceAuthorization(
  endpoint: string | null,
  client: DeviceClient,
  scope: string | null,
  opts: DeviceRequestOptions = {},
): Promise<DeviceStartOutcome> {
  if (endpoint === null) return { kind: 'unsupported', message: NO_DEVICE_ENDPOINT };
  const what = `device authorization at ${safeUrl(endpoint)}`;
  const insecure = insecureEndpoint(endpoint);
  // Refused before anything is sent: the client secret never leaves.
  if (insecure) return { kind: 'failed', message: `${what} refused: the endpoint ${insecure}` };
  const params: Record<string, string> = scope ? { scope } : {};
  const form = formFor(client, params);
  const reply = await withDispatcher(opts, (dispatcher) => post(what, endpoint, form, dispatcher, opts));
  if (reply.kind === 'unread') return { kind: 'failed', message: reply.message };
  const body = jsonObject(reply.text);
  const sent = { secrets: secretsOf(params, client, form.headers), redeemed: null };
  if (reply.status < 200 || reply.status >= 300 || typeof body?.['error'] === 'string') {
    // A refusal reads like a token endpoint's: the provider's error and description, scrubbed.
    const refusal = classifyTokenAnswer(reply, Date.now(), sent);
    return { kind: 'failed', message: `${what} failed: ${refusal.kind === 'tokens' ? `HTTP ${reply.status}` : refusal.message}` };
  }
  if (body === null) return { kind: 'failed', message: `${what} failed: the answer is not a JSON object` };
  const deviceCode = body['device_code'];
  if (typeof deviceCode !== 'string' || deviceCode === '' || deviceCode.length > MAX_TOKEN_CHARS || !REFRESH_TOKEN.test(deviceCode))
    return { kind: 'failed', message: `${what} failed: the answer has no device_code of visible ASCII (at most ${MAX_TOKEN_CHARS} characters)` };
  const userCode = body['user_code'];
  if (typeof userCode !== 'string' || !/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(userCode) || userCode.length > MAX_USER_CODE)
    return { kind: 'failed', message: `${what} failed: the answer has no user_code of visible ASCII (at most ${MAX_USER_CODE} characters)` };
  // Google names it verification_url (the draft's name).
  const uri = verificationUri(body['verification_uri'] ?? body['verification_url'], 'verification_uri');
  if ('why' in uri) return { kind: 'failed', message: `${what} failed: the answer ${uri.why}` };
  const complete = body['verification_uri_complete'] === undefined ? null : verificationUri(body['verification_uri_complete'], 'verification_uri_complete');
  if (complete !== null && 'why' in complete) return { kind: 'failed', message: `${what} failed: the answer ${complete.why}` };
  const expiresIn = seconds(body['expires_in']);
  if (expiresIn === null || expiresIn < 1) return { kind: 'failed', message: `${what} failed: the answer has no expires_in of a positive number of seconds` };
  const interval = seconds(body['interval']);
  return {
    kind: 'started',
    authorization: {
      deviceCode,
      userCode,
      verificationUri: uri.uri,
      verificationUriComplete: complete?.uri ?? null,
      expiresInSec: Math.min(expiresIn, MAX_EXPIRES_SEC),
      intervalSec: interval === null || interval < 1 ? DEFAULT_INTERVAL_SEC : Math.min(interval, MAX_INTERVAL_SEC),
    },
  };
}

/**
 * Poll the token endpoint with the device code until the user approves
 * (the tokens, classified as the authorization-code exchange's are), declines,
 * the code expires, or `signal` aborts. Never throws.
 */
export async function pollDeviceToken(
  endpoint: DeviceTokenEndpoint,
  authorization: DeviceAuthorization,
  opts: DevicePollOptions = {},
): Promise<DevicePollOutcome> {
  const insecure = insecureEndpoint(endpoint.tokenUrl);
  // Refused before anything is sent: the client secret never leaves.
  if (insecure) return { kind: 'failed', message: `token request to ${safeUrl(endpoint.tokenUrl)} refused: the token endpoint ${insecure}` };
  return withDispatcher(opts, (dispatcher) => poll(endpoint, authorization, dispatcher, opts));
}

async function poll(
  endpoint: DeviceTokenEndpoint,
  authorization: DeviceAuthorization,
  dispatcher: Dispatcher,
  opts: DevicePollOptions,
): Promise<DevicePollOutcome> {
  const what = `token request to ${safeUrl(endpoint.tokenUrl)}`;
  const params = { grant_type: DEVICE_CODE_GRANT, device_code: authorization.deviceCode };
  const form = formFor(endpoint, params);
  const sent: SentRequest = { secrets: secretsOf(params, endpoint, form.headers), redeemed: null };
  const clock = opts.clock ?? systemClock;
  const expiresAtMs = clock.now() + authorization.expiresInSec * 1000;
  const expired: DevicePollOutcome = {
    kind: 'expired',
    message: 'device login failed: the code expired before the login was approved; run tokend login --device again',
  };
  const cancelled: DevicePollOutcome = { kind: 'cancelled', message: 'login cancelled' };
  let intervalSec = authorization.intervalSec;
  let waitMs = intervalSec * 1000;
  for (;;) {
    try {
      await clock.sleep(Math.min(waitMs, Math.max(0, expiresAtMs - clock.now())), opts.signal);
    } catch {
      return cancelled;
    }
    if (opts.signal?.aborted) return cancelled;
    if (clock.now() >= expiresAtMs) return expired;
    const reply = await post(what, endpoint.tokenUrl, form, dispatcher, opts);
    if (opts.signal?.aborted) return cancelled;
    const outcome = classifyTokenAnswer(reply, clock.now(), sent);
    if (outcome.kind === 'tokens') return outcome;
    waitMs = intervalSec * 1000;
    switch (outcome.error) {
      case 'authorization_pending':
        continue;
      case 'slow_down':
        intervalSec += 5;
        waitMs = intervalSec * 1000;
        opts.onSlower?.(intervalSec, 'the provider asked to slow down');
        continue;
      case 'access_denied':
        return { kind: 'denied', message: 'device login failed: access_denied (the request was declined at the provider)' };
      case 'expired_token':
        return expired;
      case 'invalid_grant':
        return { kind: 'failed', message: 'device login failed: the provider refused the device code (invalid_grant); run tokend login --device again' };
      default:
        if (outcome.kind !== 'transient') return { kind: 'failed', message: `device login failed: ${outcome.message}` };
        // RFC 8628 §3.5: no answer means polling less often, for good; so does a 5xx or 429, at least as long as Retry-After says.
        intervalSec = Math.max(intervalSec, Math.min(intervalSec * 2, MAX_BACKOFF_SEC));
        waitMs = Math.max(intervalSec * 1000, outcome.retryAfterMs ?? 0);
        opts.onSlower?.(intervalSec, outcome.message);
    }
  }
}
