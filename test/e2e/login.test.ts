/**
 * `tokend login` against a real OpenID provider (oidc-provider on loopback),
 * through its own login and consent pages, driven by real headless Chromium.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startDevProvider, type DevProvider } from '../../src/dev/oidc-server.ts';
import { Daemon, findLeaks, freePort, Proc, tempDir } from '../fixtures/daemon.ts';

const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
// CI sets TOKEND_REQUIRE_BROWSER=1 (and installs chromium), so there a missing browser fails the run.
const browserSkip =
  existsSync(CHROMIUM) || process.env['TOKEND_REQUIRE_BROWSER'] === '1'
    ? false
    : `no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`;
const client = { clientId: 'tokend-test', clientSecret: 'a-test-secret-of-some-length', redirectUris: [] as string[] };
const outputs: string[] = [];
let provider: DevProvider;
let browser: Browser;
let redirectUri: string;
const issued: string[] = [];

before(async () => {
  if (browserSkip) return;
  redirectUri = `http://127.0.0.1:${await freePort()}/authorization-code`;
  client.redirectUris.push(redirectUri);
  provider = await startDevProvider({ client, accessTokenTtlSec: 60, autoApprove: false });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});
after(async () => {
  await browser?.close();
  await provider?.close();
  assert.deepEqual(findLeaks(outputs.join('\n'), issued), [], 'a token value appeared in output');
});

function oidcEnv(stateFile: string): NodeJS.ProcessEnv {
  return {
    TOKEND_PROVIDER: 'oidc',
    TOKEND_ISSUER: provider.issuer,
    TOKEND_CLIENT_ID: client.clientId,
    TOKEND_CLIENT_SECRET: client.clientSecret,
    TOKEND_REDIRECT_URI: redirectUri,
    TOKEND_STATE_FILE: stateFile,
  };
}

/** Start `tokend login` and read the authorization URL it prints. */
async function startLogin(stateFile: string, args: string[] = []): Promise<{ p: Proc; url: URL }> {
  const p = new Proc(['login', '--no-browser', ...args], oidcEnv(stateFile));
  const line = await p.waitForLine((l) => l.startsWith('  http'));
  await p.waitForLine((l) => l.startsWith('waiting for the authorization callback'));
  return { p, url: new URL(line.trim()) };
}

async function openPage(url: URL): Promise<Page> {
  const page = await browser.newPage();
  // The network is closed here: keep the browser on loopback (the dev pages import a web font).
  await page.route('**/*', (route) => (new URL(route.request().url()).hostname === '127.0.0.1' ? route.continue() : route.abort()));
  await page.goto(url.toString());
  return page;
}

describe('tokend login', { skip: browserSkip }, () => {
  it('completes the authorization-code flow in a real browser (state, PKCE, consent) and stores a working token', async () => {
    const stateFile = join(tempDir(), 'tokens.json');
    const { p, url } = await startLogin(stateFile);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256', 'PKCE where the provider supports it');
    assert.ok((url.searchParams.get('state') ?? '').length >= 32);
    assert.equal(url.searchParams.get('scope'), 'openid offline_access');
    assert.equal(url.searchParams.get('prompt'), 'consent');
    const page = await openPage(url);
    await page.fill('input[name=login]', 'alice');
    await page.fill('input[name=password]', 'anything');
    await page.click('button[type=submit]');
    await page.waitForSelector('button:has-text("Continue")');
    await page.click('button:has-text("Continue")');
    await page.waitForURL((u) => u.toString().startsWith(redirectUri));
    assert.match(await page.content(), /tokend: authorized/);
    await page.close();
    const exit = await p.exited;
    outputs.push(p.output);
    assert.equal(exit.code, 0, p.output);
    assert.match(p.stderr, new RegExp(`logged in: access token valid until .*; stored by ${stateFile.replace(/[/.]/g, '\\$&')}`));
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    issued.push(file.access_token, file.refresh_token);
    assert.equal(typeof file.refresh_token, 'string');

    // The daemon refreshes with rotation against the same provider.
    const d = await Daemon.start(oidcEnv(stateFile));
    const before = file.refresh_token as string;
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 200, r.text);
    const rotated = JSON.parse(readFileSync(stateFile, 'utf8'));
    issued.push(rotated.access_token, rotated.refresh_token);
    assert.notEqual(rotated.refresh_token, before, 'the provider rotated the refresh token');

    // A second refresher presents the consumed token: the provider revokes the whole grant,
    // the newest refresh token included, and the daemon says what to do.
    const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: before });
    const basic = Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64');
    const reuse = await fetch(`${provider.issuer}/token`, { method: 'POST', body: form, headers: { authorization: `Basic ${basic}` } });
    assert.equal(reuse.status, 400);
    assert.equal(((await reuse.json()) as { error: string }).error, 'invalid_grant');
    // An explicit refresh within 5 s of a successful one is answered from it: ask after that window.
    const lastSuccess = Date.parse(String(((await d.request('GET', '/state')).json['refresh'] as Record<string, unknown>)['last_success_at']));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, lastSuccess + 5_100 - Date.now())));
    const after = await d.request('POST', '/refresh-tokens');
    assert.equal(after.status, 503);
    assert.equal(after.json['error'], 'reauthorization_required');
    assert.match(String(after.json['message']), /invalid_grant.*tokend login/);
    assert.equal((await d.request('GET', '/state')).json['status'], 'reauthorization_required');
    assert.equal((await d.stop()).code, 0);
    outputs.push(d.output);
  });

  it('hands the tokens to a running daemon, which serves them at once', async () => {
    const stateFile = join(tempDir(), 'tokens.json');
    const d = await Daemon.start(oidcEnv(stateFile));
    assert.equal((await d.request('GET', '/readyz')).status, 503, 'no tokens yet');
    const { p, url } = await startLogin(stateFile);
    const page = await openPage(url);
    await page.fill('input[name=login]', 'bob');
    await page.fill('input[name=password]', 'x');
    await page.click('button[type=submit]');
    await page.click('button:has-text("Continue")');
    await page.waitForURL((u) => u.toString().startsWith(redirectUri));
    await page.close();
    assert.equal((await p.exited).code, 0, p.output);
    outputs.push(p.output);
    assert.match(p.stderr, new RegExp(`stored by the running daemon at ${d.address}`));
    const t = await d.request('GET', '/token');
    assert.equal(t.status, 200);
    issued.push(String(t.json['access_token']));
    assert.equal((await d.request('GET', '/readyz')).status, 200);
    assert.equal((await d.stop()).code, 0);
    outputs.push(d.output);
  });

  it('Cancel on the provider page ends in a clear access_denied error, nothing stored', async () => {
    const stateFile = join(tempDir(), 'tokens.json');
    const { p, url } = await startLogin(stateFile);
    const page = await openPage(url);
    await page.click('text=[ Cancel ]');
    await page.waitForURL((u) => u.toString().startsWith(redirectUri));
    await page.close();
    const exit = await p.exited;
    outputs.push(p.output);
    assert.equal(exit.code, 1);
    assert.match(p.stderr, /authorization failed: access_denied.*declined at the provider/);
    assert.throws(() => readFileSync(stateFile));
  });

  it('a callback with the wrong state is refused', async () => {
    const stateFile = join(tempDir(), 'tokens.json');
    const { p } = await startLogin(stateFile);
    const res = await fetch(`${redirectUri}?code=stolen&state=forged`);
    assert.equal(res.status, 400);
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.stderr, /state does not match/);
    assert.throws(() => readFileSync(stateFile));
  });

  it('ignores /favicon.ico on the callback server and keeps waiting', async () => {
    const stateFile = join(tempDir(), 'tokens.json');
    const { p } = await startLogin(stateFile, ['--timeout', '2']);
    assert.equal((await fetch(new URL('/favicon.ico', redirectUri))).status, 404);
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.stderr, /no authorization callback within 2 s/);
  });

  it('a redirect port already in use is a clear error, exit 1', async () => {
    const port = Number(new URL(redirectUri).port);
    const blocker = createServer().listen(port, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r));
    try {
      const p = new Proc(['login', '--no-browser'], oidcEnv(join(tempDir(), 't.json')));
      const exit = await p.exited;
      assert.equal(exit.code, 1);
      assert.match(p.stderr, /127\.0\.0\.1:\d+ is already in use/);
    } finally {
      blocker.close();
    }
  });

  it('Ctrl-C cancels cleanly', async () => {
    const { p } = await startLogin(join(tempDir(), 't.json'));
    p.kill('SIGINT');
    const exit = await p.exited;
    assert.equal(exit.code, 1);
    assert.match(p.stderr, /login cancelled/);
  });
});
