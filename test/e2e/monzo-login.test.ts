/** `tokend login` with the Monzo preset: no PKCE, client_secret_post, and the in-app approval. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { findLeaks, freePort, Proc, tempDir } from '../fixtures/daemon.ts';
import { MonzoStub } from '../fixtures/monzo-stub.ts';

let stub: MonzoStub;
before(async () => {
  stub = await new MonzoStub().start();
});
after(() => stub.close());

it('Monzo login: no PKCE, credentials in the body, then waits for approval in the Monzo app', async () => {
  const stateFile = join(tempDir(), 'tokens.json');
  const redirectUri = `http://127.0.0.1:${await freePort()}/authorization-code`;
  const p = new Proc(['login', '--no-browser'], {
    TOKEND_AUTH_URL: `${stub.url}/auth`,
    TOKEND_TOKEN_URL: stub.tokenUrl,
    monzo_client_id: stub.clientId,
    monzo_client_secret: stub.clientSecret,
    TOKEND_REDIRECT_URI: redirectUri,
    TOKEND_STATE_FILE: stateFile,
  });
  const url = new URL((await p.waitForLine((l) => l.startsWith('  http'))).trim());
  assert.equal(url.searchParams.get('code_challenge'), null, 'Monzo documents no PKCE');
  assert.equal(url.searchParams.get('response_type'), 'code');
  await p.waitForLine((l) => l.startsWith('waiting for the authorization callback'));
  const hop = await fetch(url, { redirect: 'manual' });
  const callback = await fetch(hop.headers.get('location')!);
  assert.equal(callback.status, 200);
  await p.waitForLine((l) => /approve access for this client in the Monzo app/.test(l));
  stub.approved = true;
  const exit = await p.exited;
  assert.equal(exit.code, 0, p.output);
  assert.match(p.stderr, /access approved in the Monzo app/);
  const file = JSON.parse(readFileSync(stateFile, 'utf8'));
  assert.equal(file.access_token, stub.live!.access_token);
  assert.equal(file.user_id, 'user_0001');
  assert.equal(file.provider, 'monzo');
  assert.deepEqual(findLeaks(p.output, stub.issued), []);
});
