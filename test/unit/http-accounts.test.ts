/** Several accounts behind one HTTP API: each served at /accounts/NAME/..., the default at the unprefixed routes. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { get, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { DaemonStatus, Result, SetTokensInput, Snapshot } from '../../src/shared/contract.ts';
import { createHttpServer } from '../../src/http/app.ts';
import { EventHub } from '../../src/http/events.ts';
import type { AccountBackend, Backend } from '../../src/http/routes.ts';
import type { Log } from '../../src/shared/log.ts';
import { Metrics } from '../../src/daemon/metrics.ts';

const quiet = (): void => undefined;
const log: Log = { error: quiet, warn: quiet, info: quiet, debug: quiet };

function snapshot(accessToken: string | null, status: DaemonStatus = 'ok', more: Partial<Snapshot> = {}): Snapshot {
  const now = Date.now();
  return {
    seq: 1,
    version: 1,
    status,
    reason: status === 'ok' ? null : `${status}: see the log`,
    token: accessToken
      ? {
          accessToken,
          tokenType: 'Bearer',
          scope: null,
          expiresAtMs: now + 3_600_000,
          obtainedAtMs: now,
          fingerprint: `fp-${accessToken}`,
          refreshFingerprint: null,
          replacedRefreshFingerprint: null,
        }
      : null,
    refresh: { inFlight: false, nextAtMs: now + 1_800_000, lastAttemptAtMs: null, lastSuccessAtMs: null, lastError: null, consecutiveFailures: 0 },
    persist: { ok: true, lastError: null, lastWriteAtMs: null },
    lockHeld: true,
    stateFile: `/state/${accessToken ?? 'none'}.json`,
    provider: 'monzo',
    account: {},
    ...more,
  };
}

/** An account whose snapshot the test sets, recording what the routes asked of it. */
class FakeAccount implements AccountBackend {
  current: Snapshot;
  readonly calls: string[] = [];
  constructor(
    readonly name: string,
    current: Snapshot,
  ) {
    this.current = current;
  }
  snapshot(): Snapshot {
    return this.current;
  }
  ensureFresh(): Promise<Result<Snapshot>> {
    this.calls.push('ensureFresh');
    return Promise.resolve({ ok: true, value: this.current });
  }
  refresh(): Promise<Result<Snapshot>> {
    this.calls.push('refresh');
    return Promise.resolve({ ok: true, value: this.current });
  }
  setTokens(input: SetTokensInput): Promise<Result<Snapshot>> {
    this.calls.push(`setTokens:${input.accessToken}`);
    this.current = snapshot(input.accessToken);
    return Promise.resolve({ ok: true, value: this.current });
  }
}

interface Running {
  readonly base: string;
  readonly hub: EventHub;
  readonly server: Server;
}

async function serve(accounts: readonly FakeAccount[], defaultAccount = accounts[0]!.name): Promise<Running> {
  const map = new Map(accounts.map((a) => [a.name, a] as const));
  const hub = new EventHub(() => map.values());
  const backend: Backend = {
    accounts: map,
    defaultAccount,
    owner: { pid: process.pid, listen: null },
    metricsText: () => Promise.resolve(''),
    hub,
    reload: () => Promise.resolve({ ok: false, error: { code: 'reload_unavailable', message: 'no config file' }, problems: [] }),
  };
  const server = createHttpServer({
    listen: { kind: 'tcp', host: '127.0.0.1', port: 0 },
    apiKey: null,
    allowedOrigins: [],
    allowedHosts: [],
    allowedUids: [],
    maxConnections: 32,
    maxEventClients: 8,
    log,
    metrics: new Metrics(),
    isDraining: () => false,
    starting: () => null,
    backend,
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hub, server };
}

function stop(r: Running): void {
  r.hub.closeAll();
  r.server.closeAllConnections();
  r.server.close();
}

const ask = async (base: string, method: string, path: string, body?: unknown) => {
  const res = await fetch(`${base}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.text();
  return { status: res.status, allow: res.headers.get('allow'), json: text ? JSON.parse(text) : null };
};

describe('accounts over HTTP', () => {
  const personal = new FakeAccount('personal', snapshot('personal-token-1'));
  const work = new FakeAccount('work', snapshot('work-token-1'));
  let r: Running;
  before(async () => (r = await serve([personal, work])));
  after(() => stop(r));

  it('GET /accounts lists every account in configuration order, the default marked, and no access token', async () => {
    const { status, json } = await ask(r.base, 'GET', '/accounts');
    assert.equal(status, 200);
    assert.equal(json.default_account, 'personal');
    assert.equal(json.status, 'ok');
    assert.equal(json.ready, true);
    assert.equal(json.owner.pid, process.pid);
    assert.deepEqual(
      (json.accounts as Array<Record<string, unknown>>).map((a) => [a['name'], a['default'], a['status'], a['reason'], a['ready']]),
      [
        ['personal', true, 'ok', null, true],
        ['work', false, 'ok', null, true],
      ],
    );
    const [first] = json.accounts;
    assert.equal(first.state_file, '/state/personal-token-1.json');
    assert.equal(typeof first.expires_at, 'string');
    assert.equal(typeof first.expires_in, 'number');
    assert.equal(typeof first.refresh.next_at, 'string');
    assert.equal(first.access_token_fingerprint, 'fp-personal-token-1');
    assert.doesNotMatch(JSON.stringify(json), /"(personal|work)-token-1"|"access_token"/);
  });

  it("each account's token at /accounts/NAME/token, the default's at /token; one account's body is never served for another", async () => {
    // Within one second each account's body is cached: asked in turn, each must still get its own.
    for (let i = 0; i < 20; i++) {
      assert.equal((await ask(r.base, 'GET', '/accounts/work/token')).json.access_token, 'work-token-1');
      assert.equal((await ask(r.base, 'GET', '/token')).json.access_token, 'personal-token-1');
      assert.equal((await ask(r.base, 'GET', '/accounts/personal/token')).json.access_token, 'personal-token-1');
    }
    work.current = snapshot('work-token-2');
    assert.equal((await ask(r.base, 'GET', '/accounts/work/token')).json.access_token, 'work-token-2', 'a new snapshot, a new body');
    assert.equal((await ask(r.base, 'GET', '/accounts/personal/token')).json.access_token, 'personal-token-1');
  });

  it("/accounts/NAME/state is that account's state", async () => {
    const { status, json } = await ask(r.base, 'GET', '/accounts/work/state');
    assert.equal(status, 200);
    assert.equal(json.state_file, '/state/work-token-2.json');
    assert.equal(json.owner.pid, process.pid);
    assert.equal((await ask(r.base, 'GET', '/state')).json.state_file, '/state/personal-token-1.json');
  });

  it('POST /accounts/NAME/refresh-tokens and set-tokens reach that account alone', async () => {
    personal.calls.length = 0;
    work.calls.length = 0;
    assert.equal((await ask(r.base, 'POST', '/accounts/work/refresh-tokens')).status, 200);
    const set = await ask(r.base, 'POST', '/accounts/work/set-tokens', { access_token: 'work-token-3', expires_in: 600 });
    assert.equal(set.status, 200);
    assert.equal(set.json.access_token, 'work-token-3');
    assert.deepEqual(work.calls, ['refresh', 'setTokens:work-token-3']);
    assert.deepEqual(personal.calls, []);
    assert.equal((await ask(r.base, 'POST', '/refresh-tokens')).status, 200);
    assert.deepEqual(personal.calls, ['refresh']);
  });

  it('a name no account has: 404 unknown_account on every account route and on /events?account=', async () => {
    for (const [method, path] of [
      ['GET', '/accounts/nobody/token'],
      ['GET', '/accounts/nobody/state'],
      ['POST', '/accounts/nobody/refresh-tokens'],
      ['GET', '/events?account=nobody'],
      ['GET', '/accounts/Work/token'],
    ] as const) {
      const { status, json } = await ask(r.base, method, path);
      assert.equal(status, 404, path);
      assert.equal(json.error, 'unknown_account', path);
      assert.match(json.message, /the accounts are personal, work$/, path);
    }
    const bad = await ask(r.base, 'POST', '/accounts/nobody/set-tokens', { access_token: 'x' });
    assert.equal(bad.json.error, 'unknown_account');
  });

  it('account routes take the methods of their unprefixed twins (405 with Allow, OPTIONS), and polka patterns still match them', async () => {
    const put = await ask(r.base, 'PUT', '/accounts/work/token');
    assert.equal(put.status, 405);
    assert.equal(put.allow, 'GET, HEAD, OPTIONS');
    assert.equal((await ask(r.base, 'GET', '/accounts/work/refresh-tokens')).allow, 'POST, OPTIONS');
    assert.equal((await ask(r.base, 'OPTIONS', '/accounts/work/state')).status, 204);
    assert.equal((await ask(r.base, 'HEAD', '/accounts/work/token')).status, 200);
    assert.equal((await ask(r.base, 'GET', '/accounts/work/token/')).json.access_token, 'work-token-3');
    for (const path of ['/accounts/work', '/accounts/work/nope', '/accounts//token', '/accounts/work/token/x']) {
      const { status, json } = await ask(r.base, 'GET', path);
      assert.equal(status, 404, path);
      assert.equal(json.error, 'not_found', path);
    }
  });
});

describe('an account that could not start', () => {
  const ok = new FakeAccount('default', snapshot('default-token'));
  const broken = new FakeAccount('broken', snapshot(null, 'failed', { reason: 'state file /s/broken.json is not valid JSON', lockHeld: false }));
  let r: Running;
  before(async () => (r = await serve([ok, broken])));
  after(() => stop(r));

  it('answers /token, refresh-tokens and set-tokens with 503 state_corrupt and the reason, without asking it; the others serve', async () => {
    for (const [method, path, body] of [
      ['GET', '/accounts/broken/token', undefined],
      ['POST', '/accounts/broken/refresh-tokens', undefined],
      ['POST', '/accounts/broken/set-tokens', { access_token: 'new-token' }],
    ] as const) {
      const { status, json } = await ask(r.base, method, path, body);
      assert.equal(status, 503, path);
      assert.equal(json.error, 'state_corrupt', path);
      assert.equal(json.message, 'state file /s/broken.json is not valid JSON', path);
    }
    assert.deepEqual(broken.calls, []);
    assert.equal((await ask(r.base, 'GET', '/token')).json.access_token, 'default-token');
    const state = await ask(r.base, 'GET', '/accounts/broken/state');
    assert.equal(state.json.status, 'failed');
    assert.equal(state.json.reason, 'state file /s/broken.json is not valid JSON');
  });

  it('/readyz is 503 naming the accounts not ready; /accounts says which', async () => {
    const ready = await ask(r.base, 'GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.equal(ready.json.error, 'not_ready');
    assert.equal(ready.json.message, '1 of 2 accounts not ready: broken (failed: state file /s/broken.json is not valid JSON)');
    assert.deepEqual(ready.json.accounts, [{ account: 'broken', reason: 'failed: state file /s/broken.json is not valid JSON' }]);
    const list = await ask(r.base, 'GET', '/accounts');
    assert.equal(list.json.status, 'failed');
    assert.equal(list.json.ready, false);
    assert.deepEqual(
      (list.json.accounts as Array<Record<string, unknown>>).map((a) => [a['name'], a['status'], a['ready'], typeof a['expires_at']]),
      [
        ['default', 'ok', true, 'string'],
        ['broken', 'failed', false, 'object'],
      ],
    );
  });

  it('/readyz is 200 once every account is ready', async () => {
    broken.current = snapshot('broken-token');
    const ready = await ask(r.base, 'GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json, { status: 'ok', ready: true });
  });
});

describe('one account', () => {
  it("/readyz answers as the one-account daemon always did: the account's status and reason, no list", async () => {
    const only = new FakeAccount('default', snapshot(null, 'waiting_for_login', { reason: 'no tokens yet: run `tokend login`' }));
    const r = await serve([only]);
    try {
      const ready = await ask(r.base, 'GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.deepEqual(ready.json, { error: 'not_ready', message: 'waiting_for_login: no tokens yet: run `tokend login`' });
      only.current = snapshot('t');
      assert.deepEqual((await ask(r.base, 'GET', '/readyz')).json, { status: 'ok', ready: true });
    } finally {
      stop(r);
    }
  });
});

/** An open GET /events stream: the events parsed so far. */
class Stream {
  readonly events: Array<{ id: string; data: Record<string, unknown> }> = [];
  #buffer = '';
  #waiters: Array<() => void> = [];
  constructor(readonly res: IncomingMessage) {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      this.#buffer += chunk;
      let end: number;
      while ((end = this.#buffer.indexOf('\n\n')) !== -1) {
        const frame = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const id = /^id: (.*)$/m.exec(frame)?.[1];
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (id !== undefined && data !== undefined) this.events.push({ id, data: JSON.parse(data) });
      }
      for (const wake of this.#waiters.splice(0)) wake();
    });
  }

  static open(base: string, path: string, lastEventId?: string): Promise<Stream> {
    return new Promise((resolve, reject) => {
      get(`${base}${path}`, { headers: lastEventId ? { 'last-event-id': lastEventId } : {} }, (res) => resolve(new Stream(res))).on('error', reject);
    });
  }

  async until(count: number): Promise<void> {
    while (this.events.length < count) await new Promise<void>((wake) => this.#waiters.push(wake));
  }

  accounts(): unknown[] {
    return this.events.map((e) => e.data['account']);
  }

  close(): void {
    this.res.destroy();
  }
}

describe('events', () => {
  const personal = new FakeAccount('personal', snapshot('personal-token-1'));
  const work = new FakeAccount('work', snapshot('work-token-1'));
  let r: Running;
  before(async () => (r = await serve([personal, work])));
  after(() => stop(r));

  it("carry their account; ?account=NAME streams that account's alone", async () => {
    const all = await Stream.open(r.base, '/events');
    const onlyWork = await Stream.open(r.base, '/events?account=work');
    try {
      await all.until(2);
      await onlyWork.until(1);
      assert.deepEqual(all.accounts(), ['personal', 'work'], 'the current state of each account on connect');
      assert.deepEqual(onlyWork.accounts(), ['work']);
      assert.equal(onlyWork.events[0]!.data['access_token'], 'work-token-1');

      const previous = personal.current;
      personal.current = snapshot('personal-token-2');
      r.hub.publish('personal', personal.current, previous);
      const before = work.current;
      work.current = snapshot('work-token-2');
      r.hub.publish('work', work.current, before);
      await all.until(4);
      await onlyWork.until(2);
      assert.deepEqual(all.accounts(), ['personal', 'work', 'personal', 'work']);
      assert.deepEqual(
        all.events.slice(2).map((e) => e.data['access_token']),
        ['personal-token-2', 'work-token-2'],
      );
      assert.deepEqual(onlyWork.accounts(), ['work', 'work'], "another account's change is not sent to a stream of one account");
      assert.equal(onlyWork.events[1]!.data['access_token'], 'work-token-2');
      assert.notEqual(all.events[2]!.id, all.events[3]!.id);
    } finally {
      all.close();
      onlyWork.close();
    }
  });

  it('Last-Event-ID: a stream of one account that saw its current state gets nothing twice', async () => {
    const first = await Stream.open(r.base, '/events?account=work');
    await first.until(1);
    first.close();
    const again = await Stream.open(r.base, '/events?account=work', first.events[0]!.id);
    const all = await Stream.open(r.base, '/events', first.events[0]!.id);
    try {
      await all.until(1);
      assert.deepEqual(all.accounts(), ['personal'], "the account whose state was seen is not sent again; the others' are");
      const previous = work.current;
      work.current = snapshot('work-token-4');
      r.hub.publish('work', work.current, previous);
      await again.until(1);
      assert.equal(again.events[0]!.data['access_token'], 'work-token-4');
    } finally {
      again.close();
      all.close();
    }
  });
});

describe('client library', () => {
  const personal = new FakeAccount('personal', snapshot('personal-token-1'));
  const work = new FakeAccount('work', snapshot('work-token-1'));
  let r: Running;
  before(async () => (r = await serve([personal, work])));
  after(() => stop(r));

  it("{ account } sends token, state, refresh and set-tokens to /accounts/NAME/...; without it, the default account's", async () => {
    const { TokendClient } = await import('../../src/client/index.ts');
    const named = new TokendClient({ url: r.base, account: 'work', apiKey: 'unused-key-0123456789' });
    const plain = new TokendClient({ url: r.base, apiKey: 'unused-key-0123456789' });
    try {
      assert.equal(await named.getAccessToken(), 'work-token-1');
      assert.equal(await plain.getAccessToken(), 'personal-token-1');
      assert.equal((await named.state()).state_file, '/state/work-token-1.json');
      await named.refresh();
      await named.setTokens({ access_token: 'work-token-2' });
      assert.deepEqual(work.calls, ['refresh', 'setTokens:work-token-2']);
      assert.deepEqual(personal.calls, []);
      const list = await named.accounts();
      assert.deepEqual(
        list.accounts.map((a) => [a.name, a.default]),
        [
          ['personal', true],
          ['work', false],
        ],
      );
    } finally {
      await Promise.all([named.close(), plain.close()]);
    }
  });

  it('an account the daemon does not have fails with code unknown_account', async () => {
    const { TokendClient, TokendClientError } = await import('../../src/client/index.ts');
    const nobody = new TokendClient({ url: r.base, account: 'nobody', apiKey: 'unused-key-0123456789' });
    try {
      await assert.rejects(nobody.getAccessToken(), (err: unknown) => err instanceof TokendClientError && err.code === 'unknown_account' && err.status === 404);
    } finally {
      await nobody.close();
    }
  });
});
