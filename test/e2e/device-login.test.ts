/**
 * Logging in from anywhere, against a real OpenID provider (oidc-provider on
 * loopback) with real headless Chromium doing what the user does:
 *
 * - the device grant: the browser opens the verification URI, types the user
 *   code, logs in and approves, while tokend's poll loop waits and then
 *   receives the tokens;
 * - the pasted URL: the provider redirects to a port nobody listens on (the
 *   browser is on another machine), and the address the browser landed on,
 *   pasted into the terminal, completes the login.
 *
 * The `tokend login` command does not use these yet: the modules are driven
 * in-process.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDevProvider, type DevProvider } from '../../src/dev/oidc-server.ts';
import { chooseAuthMethod, discover, type Discovery } from '../../src/provider/oauth.ts';
import { pollDeviceToken, startDeviceAuthorization, type DeviceAuthorization, type DeviceTokenEndpoint } from '../../src/login/device.ts';
import { buildAuthRequest, exchangeCode, type AuthEndpoints } from '../../src/login/flow.ts';
import { raceCallbackAndPaste } from '../../src/login/paste.ts';
import { terminalQr } from '../../src/login/qr.ts';
import { findLeaks, freePort } from '../fixtures/daemon.ts';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
// CI sets TOKEND_REQUIRE_BROWSER=1 (and installs chromium), so there a missing browser fails the run.
const browserSkip =
  existsSync(CHROMIUM) || process.env['TOKEND_REQUIRE_BROWSER'] === '1'
    ? false
    : `no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`;
const client = { clientId: 'tokend-test', clientSecret: 'a-test-secret-of-some-length', redirectUris: [] as string[] };
const timeouts = { connectMs: 5_000, headersMs: 10_000, bodyMs: 10_000, totalMs: 15_000 };
const SCOPE = 'openid offline_access';
let provider: DevProvider;
let browser: Browser;
let discovery: Discovery;
let endpoint: DeviceTokenEndpoint;
/** Nobody listens here: what a browser on another machine than tokend meets. */
let redirectUri: string;
const printed: string[] = [];
const issued: string[] = [];

before(async () => {
  if (browserSkip) return;
  redirectUri = `http://127.0.0.1:${await freePort()}/authorization-code`;
  client.redirectUris.push(redirectUri);
  provider = await startDevProvider({ client, accessTokenTtlSec: 60, autoApprove: false });
  const found = await discover(provider.issuer, timeouts);
  assert.equal(found.kind, 'discovered');
  if (found.kind !== 'discovered') return;
  discovery = found.discovery;
  endpoint = {
    tokenUrl: discovery.tokenEndpoint,
    clientId: client.clientId,
    clientSecret: client.clientSecret,
    authMethod: chooseAuthMethod(null, discovery.authMethods, true),
  };
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  await provider?.close();
  assert.deepEqual(findLeaks(printed.join('\n'), issued), [], 'a token value appeared in what tokend would print');
});

async function openPage(url: string): Promise<Page> {
  const page = await browser.newPage();
  // The network is closed here: keep the browser on loopback (the provider's pages import a web font).
  await page.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
  await page.goto(url);
  return page;
}

/** The provider's development login and consent pages, as a person fills them in. */
async function logInAndConsent(page: Page, user: string): Promise<void> {
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'anything');
  await page.click('button[type=submit]');
  await page.waitForSelector('button:has-text("Continue")');
  await page.click('button:has-text("Continue")');
}

async function startDevice(): Promise<DeviceAuthorization> {
  const started = await startDeviceAuthorization(discovery.deviceAuthorizationEndpoint, endpoint, SCOPE, { timeouts });
  assert.equal(started.kind, 'started', JSON.stringify(started));
  if (started.kind !== 'started') throw new Error('unreachable');
  return started.authorization;
}

/** At the verification URI: type the user code, then confirm it is the one the device shows. */
async function enterUserCode(auth: DeviceAuthorization): Promise<Page> {
  const page = await openPage(auth.verificationUri);
  await page.fill('input[name=user_code]', auth.userCode);
  await page.click('button[type=submit]');
  await page.waitForSelector('text=Confirm Device');
  assert.match(await page.content(), new RegExp(auth.userCode));
  return page;
}

describe('logging in from anywhere', { skip: browserSkip }, () => {
  it('discovery names the device authorization endpoint', () => {
    assert.equal(discovery.deviceAuthorizationEndpoint, `${provider.issuer}/device/auth`);
  });

  it('device grant: the user enters the code in a browser and approves while tokend polls; the tokens arrive and work', async () => {
    const auth = await startDevice();
    assert.equal(auth.intervalSec, 5, 'oidc-provider names no interval: 5 s');
    assert.equal(auth.verificationUri, `${provider.issuer}/device`);
    assert.equal(auth.verificationUriComplete, `${provider.issuer}/device?user_code=${encodeURIComponent(auth.userCode)}`);
    const qr = await terminalQr(auth.verificationUriComplete);
    assert.ok(qr && qr.length > 0);
    printed.push(auth.userCode, auth.verificationUri, qr);

    const polling = pollDeviceToken(endpoint, auth, { timeouts });
    const page = await enterUserCode(auth);
    await page.click('button[autofocus]');
    await logInAndConsent(page, 'alice');
    await page.waitForSelector('text=Sign-in Success');
    await page.close();

    const outcome = await polling;
    assert.equal(outcome.kind, 'tokens', JSON.stringify(outcome));
    if (outcome.kind !== 'tokens') return;
    const { accessToken, refreshToken } = outcome.tokens;
    issued.push(accessToken, ...(refreshToken ? [refreshToken] : []));
    assert.equal(typeof refreshToken, 'string', 'offline_access kept: a refresh token');
    const me = await fetch(`${provider.issuer}/me`, { headers: { authorization: `Bearer ${accessToken}` } });
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as { sub: string }).sub, 'alice');
  });

  it('device grant: Abort on the confirmation page ends the poll with access_denied', async () => {
    const auth = await startDevice();
    const polling = pollDeviceToken(endpoint, auth, { timeouts });
    const page = await enterUserCode(auth);
    await page.click('button[name=abort]');
    await page.waitForLoadState();
    await page.close();
    assert.deepEqual(await polling, { kind: 'denied', message: 'device login failed: access_denied (the request was declined at the provider)' });
  });

  it('pasted URL: the redirect reaches no listener, the address the browser landed on is pasted, the code exchanges for tokens', async () => {
    const endpoints: AuthEndpoints = {
      authUrl: discovery.authorizationEndpoint,
      pkce: discovery.pkceS256,
      scope: SCOPE,
      settings: { name: 'oidc', issuer: provider.issuer, ...endpoint },
    };
    const req = buildAuthRequest(endpoints, redirectUri);
    const page = await openPage(req.url);
    const landedAt = page.waitForRequest((r) => r.url().startsWith(redirectUri));
    await logInAndConsent(page, 'bob');
    const landed = (await landedAt).url();
    await page.close();

    // The terminal, as readline reads it: a stray line first, then the paste.
    const stdin = new PassThrough();
    const lines = createInterface({ input: stdin, crlfDelay: Infinity });
    const problems: string[] = [];
    const race = raceCallbackAndPaste({ callback: null, lines, expected: { redirectUri, state: req.state }, onProblem: (m) => problems.push(m) });
    stdin.write('oops\n');
    stdin.write(`${landed}\n`);
    const code = await race;
    lines.close();
    printed.push(...problems);
    assert.deepEqual(problems, ["that is not a URL: paste the whole address from the browser's address bar (it starts with http)"]);

    const tokens = await exchangeCode(endpoints, code, req);
    issued.push(tokens.accessToken, ...(tokens.refreshToken ? [tokens.refreshToken] : []));
    assert.equal(typeof tokens.refreshToken, 'string');
    const me = await fetch(`${provider.issuer}/me`, { headers: { authorization: `Bearer ${tokens.accessToken}` } });
    assert.equal(((await me.json()) as { sub: string }).sub, 'bob');
  });
});
