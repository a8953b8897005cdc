/**
 * The Postgres store against a real PostgreSQL server (test/fixtures/postgres.ts):
 * migrations, leases and their epochs, fenced writes, the change feed, and
 * the password kept out of every message. Skipped where PostgreSQL is not
 * installed, unless TOKEND_REQUIRE_POSTGRES=1.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import pg from 'pg';
import { TokendError } from '../../src/shared/errors.ts';
import type { Log } from '../../src/shared/log.ts';
import { type RawFile, type StoredState } from '../../src/state-file/codec.ts';
import { LeaseKeeper } from '../../src/store/lease-keeper.ts';
import type { FeedStatus, StoreChange } from '../../src/store/postgres-changes.ts';
import { SCHEMA_VERSION } from '../../src/store/postgres-schema.ts';
import { PostgresStore, type Lease } from '../../src/store/postgres.ts';
import { freePort } from '../fixtures/daemon.ts';
import { PostgresServer, postgresSkip } from '../fixtures/postgres.ts';

const skip = postgresSkip;
let server: PostgresServer;
const stores: PostgresStore[] = [];
/** Every line any store logged: none may carry the password. */
const logged: string[] = [];
const log: Log = Object.fromEntries(
  (['error', 'warn', 'info', 'debug'] as const).map((level) => [level, (...args: unknown[]) => logged.push(`${level} ${JSON.stringify(args)}`)]),
) as unknown as Log;

before(async () => {
  if (!skip) server = await PostgresServer.start();
});
after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await server?.close();
  if (server) assert.deepEqual(leaks(logged.join('\n')), [], 'the password appeared in a log line');
});

const leaks = (text: string): string[] => [server.password, encodeURIComponent(server.password)].filter((p) => text.includes(p));

async function open(url: string, opts: { connectTimeoutMs?: number } = {}): Promise<PostgresStore> {
  const store = await PostgresStore.open({ connectionString: url, log, ...opts });
  stores.push(store);
  return store;
}

/** A store on a database of its own. */
async function freshStore(): Promise<PostgresStore> {
  return open(await server.createDatabase());
}

async function sql(url: string, text: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, params);
  } finally {
    await client.end();
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Until the lease has run out on the database's clock. */
const expired = (store: PostgresStore, account: string): Promise<void> =>
  waitFor(`the lease of ${account} to expire`, async () => ((await store.leaseOf(account))?.expiresInMs ?? -1) < 0);

function tokens(n: number, version: number): StoredState {
  return {
    version,
    intent: null,
    legacyKeys: false,
    tokens: {
      kind: 'active',
      accessToken: `access-${n}`,
      refreshToken: `refresh-${n}`,
      replacedRefreshToken: null,
      tokenType: 'Bearer',
      scope: 'openid offline_access',
      expiresAtMs: Date.parse('2030-01-01T00:00:00.000Z') + n * 1000,
      obtainedAtMs: Date.parse('2029-12-31T23:00:00.000Z'),
      provider: 'oidc',
      account: {},
    },
  };
}

const noForeign = (): RawFile => Object.create(null) as RawFile;

async function leaseFor(store: PostgresStore, account: string, holder: string, ttlMs = 10_000): Promise<Lease> {
  const r = await store.acquire(account, holder, ttlMs);
  assert.ok(r.ok, `${holder} should get the lease of ${account}`);
  return r.lease;
}

describe('migrations', { skip }, () => {
  it("a fresh database gets tokend's tables; migrating again changes nothing", async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    const tables = await sql(url, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'tokend_%' ORDER BY 1");
    assert.deepEqual(
      tables.rows.map((r) => r.table_name),
      ['tokend_accounts', 'tokend_leases', 'tokend_schema'],
    );
    assert.deepEqual(await store.migrate(), { from: SCHEMA_VERSION, to: SCHEMA_VERSION });
    assert.equal((await sql(url, 'SELECT count(*)::int AS n FROM tokend_schema')).rows[0].n, SCHEMA_VERSION);
  });

  it('six instances starting at once migrate once between them', async () => {
    const url = await server.createDatabase();
    const opened = await Promise.all(Array.from({ length: 6 }, () => open(url)));
    assert.equal(opened.length, 6);
    const { rows } = await sql(url, 'SELECT version FROM tokend_schema ORDER BY version');
    assert.deepEqual(
      rows.map((r) => r.version),
      Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1),
    );
  });

  it('a database migrated by a newer tokend is refused, not used', async () => {
    const url = await server.createDatabase();
    await open(url);
    await sql(url, 'INSERT INTO tokend_schema (version) VALUES ($1)', [SCHEMA_VERSION + 1]);
    await assert.rejects(PostgresStore.open({ connectionString: url }), (err: TokendError) => {
      assert.equal(err.code, 'config_invalid');
      assert.match(err.message, /written by a newer tokend/);
      return true;
    });
  });
});

describe('leases', { skip }, () => {
  it('a free lease is taken with epoch 1; a held one is refused, naming its holder', async () => {
    const store = await freshStore();
    const a = await store.acquire('default', 'host-a:1', 10_000);
    assert.ok(a.ok);
    assert.equal(a.lease.epoch, 1);
    assert.ok(a.expiresInMs > 9000 && a.expiresInMs <= 10_000, `expires in ${a.expiresInMs} ms`);
    const b = await store.acquire('default', 'host-b:2', 10_000);
    assert.equal(b.ok, false);
    assert.equal(b.ok ? null : b.current?.holder, 'host-a:1');
    // Each account has a lease of its own.
    assert.ok((await store.acquire('work', 'host-b:2', 10_000)).ok);
  });

  it('an expired lease goes to the next holder with the next epoch, and the old holder cannot renew it', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a', 300);
    await expired(store, 'default');
    const b = await leaseFor(store, 'default', 'host-b', 10_000);
    assert.equal(b.epoch, a.epoch + 1);
    const renewed = await store.renew(a, 10_000);
    assert.equal(renewed.ok, false);
    assert.deepEqual(renewed.ok ? null : { holder: renewed.current?.holder, epoch: renewed.current?.epoch }, { holder: 'host-b', epoch: b.epoch });
    assert.equal(await store.release(a), false, 'an old epoch releases nothing');
    assert.equal((await store.leaseOf('default'))?.holder, 'host-b');
  });

  it('an expired lease cannot be renewed even when nobody took it', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a', 200);
    await expired(store, 'default');
    assert.equal((await store.renew(a, 10_000)).ok, false);
  });

  it('a released lease is taken at once, and the epoch keeps rising', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a');
    assert.equal(await store.release(a), true);
    const b = await leaseFor(store, 'default', 'host-b');
    assert.equal(b.epoch, 2);
    // The same holder acquiring again gets a new epoch: its own older writes are fenced off.
    const b2 = await leaseFor(store, 'default', 'host-b');
    assert.equal(b2.epoch, 3);
    assert.deepEqual(await store.write(b, 0, tokens(1, 1), noForeign()), { ok: false, reason: 'lease_lost' });
  });

  it('a kept lease outlives its ttl; one taken away is reported lost', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    const lost: string[] = [];
    const keeper = await LeaseKeeper.acquire(store, 'default', 'host-a', { ttlMs: 600, renewEveryMs: 100, onLost: (r) => lost.push(r), log });
    assert.ok(keeper instanceof LeaseKeeper);
    await new Promise((r) => setTimeout(r, 1000)); // longer than the ttl: only renewals keep it
    assert.ok(keeper.held);
    assert.ok(keeper.validForMs() > 300 && keeper.validForMs() <= 600, `valid for ${keeper.validForMs()} ms`);
    assert.equal((await store.acquire('default', 'host-b', 600)).ok, false);
    // It changes hands behind the keeper's back (an operator, a clock that jumped): the next renewal notices.
    await sql(url, "UPDATE tokend_leases SET holder = 'host-b', epoch = epoch + 1, expires_at = now() + interval '10 seconds'");
    const b: Lease = { account: 'default', holder: 'host-b', epoch: 2 };
    await waitFor('the keeper to notice', () => lost.length > 0);
    assert.match(lost[0]!, /lost: taken by host-b \(epoch 2\)/);
    assert.equal(keeper.held, false);
    assert.equal(keeper.validForMs(), 0);
    await keeper.release();
    assert.equal((await store.leaseOf('default'))?.epoch, b.epoch, "a lost keeper's release leaves the new lease alone");
  });
});

describe('fenced writes', { skip }, () => {
  it('the first write creates the row; a second first write is refused (version moved)', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a');
    const first = await store.write(a, 0, tokens(1, 1), noForeign());
    assert.equal(first.ok, true);
    assert.deepEqual(await store.write(a, 0, tokens(2, 1), noForeign()), { ok: false, reason: 'version_moved' });
    assert.equal((await store.read('default'))?.version, 1);
  });

  it('a write over a version that has moved is refused, and the row keeps the newer state', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a');
    assert.ok((await store.write(a, 0, tokens(1, 1), noForeign())).ok);
    const written = await store.write(a, 1, tokens(2, 2), noForeign());
    assert.ok(written.ok);
    assert.equal(written.version, 2);
    assert.ok(written.leaseExpiresInMs > 0 && written.leaseExpiresInMs <= 10_000);
    assert.deepEqual(await store.write(a, 1, tokens(3, 2), noForeign()), { ok: false, reason: 'version_moved' });
    const row = await store.read('default');
    assert.equal(row?.version, 2);
    assert.equal(row?.state.tokens.kind === 'active' && row.state.tokens.accessToken, 'access-2');
  });

  it('a write can only make the state newer', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a');
    for (const [read, next] of [
      [0, 0],
      [3, 3],
      [3, 2],
    ] as const) {
      await assert.rejects(store.write(a, read, tokens(1, next), noForeign()), (err: TokendError) => err.code === 'internal_error');
    }
  });

  it('a paused leader whose lease was taken cannot write its intent, so it never calls the provider', async () => {
    const store = await freshStore();
    const redeemed: string[] = [];
    /** The owner's order: the intent committed (fenced), then the provider call. */
    const refresh = async (lease: Lease, readVersion: number, cur: StoredState): Promise<string> => {
      const intent = { ...cur, version: readVersion + 1, intent: { refreshFingerprint: 'fp-of-refresh-1', startedAtMs: Date.now() } };
      const w = await store.write(lease, readVersion, intent, noForeign());
      if (!w.ok) return w.reason;
      redeemed.push(lease.holder);
      return 'called the provider';
    };
    const a = await leaseFor(store, 'default', 'host-a', 400);
    assert.ok((await store.write(a, 0, tokens(1, 1), noForeign())).ok);
    const seenByA = (await store.read('default'))!;
    // host-a stops here (SIGSTOP, a long GC, a suspended VM) past its lease...
    await expired(store, 'default');
    const b = await leaseFor(store, 'default', 'host-b', 10_000);
    const seenByB = (await store.read('default'))!;
    assert.equal(await refresh(b, seenByB.version, seenByB.state), 'called the provider');
    // ...and resumes, believing it still leads.
    assert.equal(await refresh(a, seenByA.version, seenByA.state), 'lease_lost');
    assert.deepEqual(redeemed, ['host-b']);
    assert.equal((await store.read('default'))?.state.intent?.refreshFingerprint, 'fp-of-refresh-1');
  });

  it('an expired lease fences its writes even when nobody took it', async () => {
    const store = await freshStore();
    const a = await leaseFor(store, 'default', 'host-a', 200);
    await expired(store, 'default');
    assert.deepEqual(await store.write(a, 0, tokens(1, 1), noForeign()), { ok: false, reason: 'lease_lost' });
    assert.equal(await store.read('default'), null);
  });

  it('a write waiting while the lease changes hands is refused once the takeover commits', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    const a = await leaseFor(store, 'default', 'host-a');
    // A takeover in progress: its transaction holds the lease row.
    const taker = new pg.Client({ connectionString: url });
    await taker.connect();
    try {
      await taker.query('BEGIN');
      await taker.query("SELECT * FROM tokend_leases WHERE account = 'default' FOR UPDATE");
      const write = store.write(a, 0, tokens(1, 1), noForeign());
      await waitFor('the write to wait on the lease row', async () => {
        const { rows } = await sql(url, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%tokend_leases%'");
        return rows[0].n > 0;
      });
      await taker.query("UPDATE tokend_leases SET holder = 'host-b', epoch = epoch + 1 WHERE account = 'default'");
      await taker.query('COMMIT');
      assert.deepEqual(await write, { ok: false, reason: 'lease_lost' });
    } finally {
      await taker.end();
    }
    assert.equal(await store.read('default'), null);
  });
});

describe('reads', { skip }, () => {
  it("a state round-trips with other tools' keys, the older layout and an open intent", async () => {
    const store = await freshStore();
    const foreign = JSON.parse(
      '{"__proto__": {"polluted": true}, "other_tool": {"nested": [1, 2.5, null, true, {"deep": "é ✓ 🙂"}]}, "nul": "a\\u0000b", "lone": "\\ud800", "b": 1, "a": 2}',
    ) as RawFile;
    const state: StoredState = {
      version: 7,
      legacyKeys: true,
      intent: { refreshFingerprint: 'abcdef0123', startedAtMs: Date.parse('2029-12-31T23:30:00.000Z') },
      tokens: {
        ...(tokens(1, 7).tokens as Extract<StoredState['tokens'], { kind: 'active' }>),
        replacedRefreshToken: 'refresh-0',
        account: { user_id: 'user_1', client_id: 'oauth2client_1' },
      },
    };
    const a = await leaseFor(store, 'default', 'host-a');
    assert.ok((await store.write(a, 0, state, foreignOf(foreign))).ok);
    const row = await store.read('default');
    assert.deepEqual(row?.state, state);
    assert.equal(row?.version, 7);
    assert.deepEqual(Object.keys(row.foreign).sort(), ['__proto__', 'a', 'b', 'lone', 'nul', 'other_tool']);
    assert.deepEqual({ ...row.foreign }, { ...foreignOf(foreign) });
    assert.equal(Object.getPrototypeOf(row.foreign), null);
    assert.equal(row.foreign['nul'], 'a\u0000b');
    assert.equal(row.foreign['lone'], '\ud800');
  });

  it('an account never written reads as null', async () => {
    const store = await freshStore();
    assert.equal(await store.read('default'), null);
    assert.equal(await store.leaseOf('default'), null);
  });

  it('a corrupt row is refused as state_corrupt, naming the account and not the values', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    await sql(url, "INSERT INTO tokend_accounts (account, version, state) VALUES ('default', 1, $1)", [
      '{"access_token": 42, "refresh_token": "refresh-secret-1"}',
    ]);
    await assert.rejects(store.read('default'), (err: TokendError) => {
      assert.equal(err.code, 'state_corrupt');
      assert.match(err.message, /account default in postgres:\/\/tokend@127\.0\.0\.1:\d+\/tokend_test_\d+/);
      assert.doesNotMatch(err.message, /refresh-secret-1/);
      return true;
    });
  });
});

/** Other tools' keys as the codec hands them over: a null-prototype object. */
function foreignOf(raw: RawFile): RawFile {
  const out = noForeign();
  for (const [k, v] of Object.entries(raw)) out[k] = v;
  return out;
}

/** A change feed's events and statuses, and a way to wait for one. */
async function listening(store: PostgresStore): Promise<{ changes: StoreChange[]; statuses: FeedStatus[]; close(): Promise<void> }> {
  const changes: StoreChange[] = [];
  const statuses: FeedStatus[] = [];
  const feed = await store.listen({ onChange: (c) => changes.push(c), onStatus: (s) => statuses.push(s), minBackoffMs: 50, maxBackoffMs: 500 });
  return { changes, statuses, close: () => feed.close() };
}

describe('change feed', { skip }, () => {
  it('a listener on another connection hears of a write after its commit, not before', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    const feed = await listening(store);
    const a = await leaseFor(store, 'default', 'host-a');
    assert.ok((await store.write(a, 0, tokens(1, 1), noForeign())).ok);
    await waitFor('the first change', () => feed.changes.length === 1);
    assert.deepEqual(feed.changes, [{ kind: 'changed', account: 'default', version: 1 }]);

    const writer = new pg.Client({ connectionString: url });
    await writer.connect();
    try {
      await writer.query('BEGIN');
      await writer.query("UPDATE tokend_accounts SET version = 2 WHERE account = 'default'");
      // A committed notification would arrive well within this; an uncommitted one never does.
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(feed.changes.length, 1, 'notified before the commit');
      await writer.query('COMMIT');
    } finally {
      await writer.end();
    }
    await waitFor('the committed change', () => feed.changes.length === 2);
    assert.deepEqual(feed.changes[1], { kind: 'changed', account: 'default', version: 2 });
    await feed.close();
  });

  it('a rolled-back write is never announced', async () => {
    const url = await server.createDatabase();
    const store = await open(url);
    const feed = await listening(store);
    const a = await leaseFor(store, 'default', 'host-a');
    await sql(url, "BEGIN; INSERT INTO tokend_accounts (account, version, state) VALUES ('default', 5, '{}'); ROLLBACK;");
    assert.ok((await store.write(a, 0, tokens(1, 1), noForeign())).ok);
    await waitFor('the committed change', () => feed.changes.length > 0);
    assert.deepEqual(feed.changes, [{ kind: 'changed', account: 'default', version: 1 }]);
    await feed.close();
  });

  it('after the server restarts, the feed reconnects, asks for a resync, and hears later writes', async () => {
    const store = await freshStore();
    const feed = await listening(store);
    const lost: string[] = [];
    const keeper = await LeaseKeeper.acquire(store, 'default', 'host-a', { ttlMs: 10_000, renewEveryMs: 200, onLost: (r) => lost.push(r) });
    assert.ok(keeper instanceof LeaseKeeper);
    await server.restart();
    await waitFor('the feed to reconnect', () => feed.statuses.at(-1) === 'connected' && feed.statuses.includes('reconnecting'), 10_000);
    assert.deepEqual(feed.statuses, ['connected', 'reconnecting', 'connected']);
    await waitFor('the resync', () => feed.changes.some((c) => c.kind === 'resync'));
    // The pool replaces its broken connections; the lease survived the restart.
    assert.ok((await store.write(keeper.lease, 0, tokens(1, 1), noForeign())).ok);
    await waitFor('the change after the restart', () => feed.changes.some((c) => c.kind === 'changed' && c.version === 1));
    assert.deepEqual(lost, []);
    await keeper.release();
    await feed.close();
  });

  it('a crashed server (SIGKILL) is reconnected to once it is back', async () => {
    const store = await freshStore();
    const feed = await listening(store);
    await server.kill();
    await waitFor('the feed to notice', () => feed.statuses.includes('reconnecting'));
    await assert.rejects(store.read('default'), (err: TokendError) => err.code === 'persist_failed' && leaks(inspect(err)).length === 0);
    await server.startServer();
    await waitFor('the feed to reconnect', () => feed.statuses.at(-1) === 'connected', 10_000);
    assert.equal(await store.read('default'), null);
    await feed.close();
  });
});

describe('a server that stops answering', { skip }, () => {
  it('the feed notices a silent connection by its heartbeat and reconnects once the server answers again', async () => {
    const store = await freshStore();
    const statuses: FeedStatus[] = [];
    const changes: StoreChange[] = [];
    const feed = await store.listen({
      onChange: (c) => changes.push(c),
      onStatus: (s) => statuses.push(s),
      heartbeatMs: 100,
      heartbeatTimeoutMs: 300,
      minBackoffMs: 50,
      maxBackoffMs: 200,
    });
    server.pause();
    try {
      await waitFor('the heartbeat to give up', () => statuses.includes('reconnecting'));
    } finally {
      server.resume();
    }
    await waitFor('the feed to reconnect', () => statuses.at(-1) === 'connected', 10_000);
    await waitFor('the resync', () => changes.some((c) => c.kind === 'resync'));
    await feed.close();
  });
});

describe('a leader cut off from the database', { skip }, () => {
  it('gives its lease up when the lease runs out, never later', async () => {
    const store = await freshStore();
    const lost: { reason: string; atMs: number }[] = [];
    const started = performance.now();
    const keeper = await LeaseKeeper.acquire(store, 'default', 'host-a', {
      ttlMs: 800,
      renewEveryMs: 100,
      onLost: (reason) => lost.push({ reason, atMs: performance.now() }),
    });
    assert.ok(keeper instanceof LeaseKeeper);
    await waitFor('a renewal', () => keeper.validForMs() > 0 && performance.now() - started > 150);
    server.pause();
    const pausedAt = performance.now();
    try {
      await waitFor('the keeper to give up', () => lost.length > 0, 3000);
    } finally {
      server.resume();
    }
    // Renewals hang from the pause on: the last one that landed was sent before it, so the lease
    // ends within a ttl of it (plus a timer's lateness on a busy machine).
    assert.ok(lost[0]!.atMs - pausedAt <= 900, `held ${Math.round(lost[0]!.atMs - pausedAt)} ms past the pause`);
    assert.match(lost[0]!.reason, /expired: no renewal in time/);
    assert.equal(keeper.validForMs(), 0);
    // Meanwhile, on the database's clock, the lease has run out too: another instance may take it.
    await expired(store, 'default');
    assert.equal((await leaseFor(store, 'default', 'host-b')).epoch, 2);
  });
});

describe('the password stays secret', { skip }, () => {
  const assertScrubbed = (err: unknown, secret: string): void => {
    assert.ok(err instanceof TokendError, `expected a TokendError, got ${inspect(err)}`);
    for (const text of [err.message, inspect(err, { depth: 5 }), JSON.stringify(err), String(err.stack)]) {
      assert.ok(!text.includes(secret) && !text.includes(encodeURIComponent(secret)), `the password appeared in: ${text}`);
    }
  };

  it('a wrong password: refused, the database named, the password nowhere', async () => {
    const secret = 'wrong-Secret-%/@:-9f3';
    const err = await PostgresStore.open({ connectionString: server.url('postgres', secret), log }).catch((e: unknown) => e);
    assertScrubbed(err, secret);
    assert.equal((err as TokendError).code, 'persist_failed');
    assert.match(
      (err as TokendError).message,
      /^store postgres:\/\/tokend@127\.0\.0\.1:\d+\/postgres: cannot migrate the schema: .*password authentication failed.*\(28P01\)$/,
    );
  });

  it('a server that is not there: the error names host and port, not the password', async () => {
    const url = `postgres://tokend:${encodeURIComponent(server.password)}@127.0.0.1:${await freePort()}/tokend`;
    const err = await PostgresStore.open({ connectionString: url, connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    assertScrubbed(err, server.password);
    assert.match((err as TokendError).message, /ECONNREFUSED/);
  });

  it('a connection string that is not a URL is refused without being echoed', async () => {
    for (const url of ['postgres://tokend:pa/ss@word@[::1', 'host=db password=pa/ss@word', 'mysql://tokend:pa/ss@word@db/x']) {
      const err = await PostgresStore.open({ connectionString: url }).catch((e: unknown) => e);
      assertScrubbed(err, 'pa/ss@word');
      assert.equal((err as TokendError).code, 'config_invalid');
    }
  });

  it('a secret in the query string is kept out of messages too', async () => {
    const secret = 'query-Secret-77';
    const url = `postgres://tokend@127.0.0.1:${await freePort()}/tokend?password=${secret}&sslmode=disable`;
    const err = await PostgresStore.open({ connectionString: url, connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    assertScrubbed(err, secret);
  });

  it('the display form of the store has no password', async () => {
    const store = await open(server.url());
    assert.match(store.display, /^postgres:\/\/tokend@127\.0\.0\.1:\d+\/postgres$/);
  });
});
