/**
 * The Postgres store: accounts' states shared by tokend instances on several
 * hosts, one leader per account.
 *
 * The invariant: a write lands only while its writer holds the account's
 * lease (unexpired on the database's clock, with the epoch it was granted)
 * and only over the version it read. Both are checked in the one statement
 * that writes, with the lease row locked (FOR SHARE) for the rest of the
 * transaction, so no acquisition can slip between the check and the write: a
 * leader that was paused past its lease and replaced comes back to a refused
 * write, never to a lost update. A refusal is an answer (`lease_lost`,
 * `version_moved`), not an exception; errors are for a store that cannot be
 * reached, named without the password (see connection.ts).
 *
 * The SPEC's "no provider call without a committed intent" is the caller's
 * order of operations: write the intent with `write()`, and call the provider
 * only once it returned `ok` — and with enough lease left for the call
 * (`leaseExpiresInMs`; a lease cannot stop an HTTP request already sent).
 *
 * The tables and their migration: postgres-schema.ts. The change feed
 * (LISTEN/NOTIFY): postgres-changes.ts. Renewing a held lease: lease-keeper.ts.
 */
import pg from 'pg';
import { TokendError } from '../shared/errors.js';
import type { Log } from '../shared/log.js';
import { decodeState, encodeState, foreignKeys, MAX_STATE_VERSION, type RawFile, type StoredState } from '../state-file/codec.js';
import { parseConnection, type StoreConnection } from './connection.js';
import { ChangeFeed, type ChangeFeedOptions } from './postgres-changes.js';
import { migrate, type MigrationResult } from './postgres-schema.js';

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database?…`; the password never appears in a message. */
  readonly connectionString: string;
  readonly log?: Log;
  /** Connections for reads, writes and leases (each change feed has one of its own). Default 4. */
  readonly poolSize?: number;
  /** Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Server-side limit on every statement, lock waits included. Default 10 s. */
  readonly statementTimeoutMs?: number;
}

/** A lease as granted: the epoch is the fencing token every write presents. */
export interface Lease {
  readonly account: string;
  readonly holder: string;
  readonly epoch: number;
}

/** Who holds an account's lease, as the database sees it now. */
export interface LeaseInfo {
  readonly holder: string;
  readonly epoch: number;
  /** Negative once expired (or released). */
  readonly expiresInMs: number;
}

export type LeaseResult =
  | { readonly ok: true; readonly lease: Lease; readonly expiresInMs: number }
  /** `current`: the lease that stood in the way (null when it could not be read). */
  | { readonly ok: false; readonly current: LeaseInfo | null };

/** An account's row: the state (its `version` is the row's) and the keys of other tools. */
export interface StoredRow {
  readonly version: number;
  readonly state: StoredState;
  readonly foreign: RawFile;
}

export type WriteRefusal = 'lease_lost' | 'version_moved';
export type WriteResult =
  { readonly ok: true; readonly version: number; readonly leaseExpiresInMs: number } | { readonly ok: false; readonly reason: WriteRefusal };

const ACCOUNT = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const MAX_HOLDER_LENGTH = 200;
const MAX_TTL_MS = 24 * 60 * 60 * 1000;

export class PostgresStore {
  readonly #conn: StoreConnection;
  readonly #pool: pg.Pool;
  readonly #config: pg.ClientConfig;
  readonly #log: Log | undefined;
  readonly #feeds = new Set<ChangeFeed>();
  #closed = false;

  private constructor(conn: StoreConnection, opts: PostgresStoreOptions) {
    this.#conn = conn;
    this.#log = opts.log;
    this.#config = {
      connectionString: conn.connectionString,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
      statement_timeout: opts.statementTimeoutMs ?? 10_000,
      // The server's limit cannot fire when the server is gone: this one is the client's own.
      query_timeout: (opts.statementTimeoutMs ?? 10_000) + 2000,
      // A client that crashed mid-transaction must not hold a lease row locked.
      idle_in_transaction_session_timeout: 30_000,
      keepAlive: true,
      application_name: 'tokend',
    };
    this.#pool = new pg.Pool({ ...this.#config, max: opts.poolSize ?? 4 });
    // An idle connection that breaks (a restarted server) is reported here; without a listener it would crash the thread.
    this.#pool.on('error', (err) => this.#log?.warn({ store: conn.display, err: conn.scrub(err.message) }, 'store connection lost'));
  }

  /** Connect and migrate the schema. Throws `config_invalid` for a bad URL or a newer schema, `persist_failed` when unreachable. */
  static async open(opts: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(parseConnection(opts.connectionString), opts);
    try {
      await store.migrate();
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  /** The database, without secrets. */
  get display(): string {
    return this.#conn.display;
  }

  /** Create or migrate tokend's tables; a no-op when they are current. Safe with several instances at once. */
  async migrate(): Promise<MigrationResult> {
    const client = await this.#connect('migrate the schema');
    try {
      return await migrate(client, this.#conn.display);
    } catch (err) {
      throw this.#failure('migrate the schema', err);
    } finally {
      client.release();
    }
  }

  /** The account's row, or null when nothing was ever written for it. Throws `state_corrupt` for a row that does not decode. */
  async read(account: string): Promise<StoredRow | null> {
    checkAccount(account);
    const { rows } = await this.#query<{ version: string; state: string }>(
      `read account ${account}`,
      'SELECT version, state FROM tokend_accounts WHERE account = $1',
      [account],
    );
    const row = rows[0];
    if (!row) return null;
    const { state, raw } = decodeState(row.state, `of account ${account} in ${this.#conn.display}`);
    // The row's version is what writes are fenced on: it wins over the copy inside the JSON.
    const version = Number(row.version);
    return { version, state: { ...state, version }, foreign: foreignKeys(raw) };
  }

  /**
   * Write `state` over the row at `readVersion` (0: no row yet), if `lease` is
   * still held, unexpired, with its epoch. The row's version becomes
   * `state.version`, which must be higher than `readVersion`.
   */
  async write(lease: Lease, readVersion: number, state: StoredState, foreign: RawFile): Promise<WriteResult> {
    checkLease(lease);
    if (!Number.isInteger(readVersion) || readVersion < 0) throw new TokendError('internal_error', `store: read version ${readVersion} is not a version`);
    if (!Number.isInteger(state.version) || state.version <= readVersion || state.version > MAX_STATE_VERSION) {
      throw new TokendError('internal_error', `store: refusing to write state version ${state.version} over version ${readVersion}`);
    }
    const { rows } = await this.#query<{ leased: boolean; written: boolean; lease_ms: number | null }>(
      `write account ${lease.account}`,
      // FOR SHARE: an acquisition waits for this transaction, and this one
      // re-checks the lease row if an acquisition committed first. The
      // version check re-runs too after waiting on a concurrent writer.
      // Only one of `updated` and `inserted` can write: stored versions are
      // above 0, so version 0 means "no row", which only the insert handles.
      `WITH lease AS (
         SELECT expires_at FROM tokend_leases
          WHERE account = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()
            FOR SHARE
       ), updated AS (
         UPDATE tokend_accounts SET version = $5, state = $6, updated_at = now()
          WHERE account = $1 AND version = $4 AND EXISTS (SELECT 1 FROM lease)
         RETURNING version
       ), inserted AS (
         INSERT INTO tokend_accounts (account, version, state)
         SELECT $1, $5, $6 FROM lease WHERE $4::bigint = 0
         ON CONFLICT (account) DO NOTHING
         RETURNING version
       )
       SELECT EXISTS (SELECT 1 FROM lease) AS leased,
              EXISTS (SELECT 1 FROM updated) OR EXISTS (SELECT 1 FROM inserted) AS written,
              (SELECT extract(epoch FROM expires_at - clock_timestamp()) * 1000 FROM lease)::float8 AS lease_ms`,
      [lease.account, lease.holder, lease.epoch, readVersion, state.version, encodeState(state, foreign)],
    );
    const r = rows[0]!;
    if (!r.leased) return { ok: false, reason: 'lease_lost' };
    if (!r.written) return { ok: false, reason: 'version_moved' };
    return { ok: true, version: state.version, leaseExpiresInMs: Math.floor(r.lease_ms ?? 0) };
  }

  /**
   * Take the account's lease for `ttlMs` if it is free or expired (on the
   * database's clock), with the next epoch. The holder that holds it already
   * gets it again with a new epoch, which fences off its own older writes:
   * `holder` must name one process (host, pid and something random), never
   * a host alone.
   */
  async acquire(account: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    checkAccount(account);
    checkHolder(holder);
    checkTtl(ttlMs);
    // clock_timestamp(), not now(): now() is when the transaction began, which a lock wait can make stale.
    const { rows } = await this.#query<{ epoch: string; expires_in_ms: number }>(
      `acquire the lease of account ${account}`,
      `INSERT INTO tokend_leases AS l (account, holder, epoch, expires_at, acquired_at)
       VALUES ($1, $2, 1, clock_timestamp() + $3::integer * interval '1 millisecond', clock_timestamp())
       ON CONFLICT (account) DO UPDATE
          SET holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at, acquired_at = excluded.acquired_at
        WHERE l.expires_at <= clock_timestamp() OR l.holder = excluded.holder
       RETURNING epoch, (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS expires_in_ms`,
      [account, holder, ttlMs],
    );
    const row = rows[0];
    if (!row) return { ok: false, current: await this.leaseOf(account).catch(() => null) };
    return { ok: true, lease: { account, holder, epoch: Number(row.epoch) }, expiresInMs: Math.floor(row.expires_in_ms) };
  }

  /** Extend a lease still held (unexpired, same epoch) to `ttlMs` from now. An expired lease is lost: acquire again. */
  async renew(lease: Lease, ttlMs: number): Promise<LeaseResult> {
    checkLease(lease);
    checkTtl(ttlMs);
    const { rows } = await this.#query<{ expires_in_ms: number }>(
      `renew the lease of account ${lease.account}`,
      `UPDATE tokend_leases SET expires_at = clock_timestamp() + $4::integer * interval '1 millisecond'
        WHERE account = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()
       RETURNING (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS expires_in_ms`,
      [lease.account, lease.holder, lease.epoch, ttlMs],
    );
    const row = rows[0];
    if (!row) return { ok: false, current: await this.leaseOf(lease.account).catch(() => null) };
    return { ok: true, lease, expiresInMs: Math.floor(row.expires_in_ms) };
  }

  /** Give the lease up at once (it expires now; its epoch stays, so it never matches again). False if it was no longer held. */
  async release(lease: Lease): Promise<boolean> {
    checkLease(lease);
    const { rowCount } = await this.#query(
      `release the lease of account ${lease.account}`,
      `UPDATE tokend_leases SET expires_at = clock_timestamp()
        WHERE account = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()`,
      [lease.account, lease.holder, lease.epoch],
    );
    return rowCount === 1;
  }

  /** The account's lease as it stands (expired ones included), or null when none was ever taken. */
  async leaseOf(account: string): Promise<LeaseInfo | null> {
    checkAccount(account);
    const { rows } = await this.#query<{ holder: string; epoch: string; expires_in_ms: number }>(
      `read the lease of account ${account}`,
      `SELECT holder, epoch, (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS expires_in_ms
         FROM tokend_leases WHERE account = $1`,
      [account],
    );
    const row = rows[0];
    return row ? { holder: row.holder, epoch: Number(row.epoch), expiresInMs: Math.floor(row.expires_in_ms) } : null;
  }

  /**
   * Be told of every committed write, on a connection of its own that is
   * re-established with backoff when lost (then a `resync` event: changes
   * may have been missed). Resolves once listening; start listening before
   * the first read, so no change falls between them. Notifications can
   * still be lost with a connection: re-read now and then regardless.
   */
  async listen(opts: ChangeFeedOptions): Promise<ChangeFeed> {
    if (this.#closed) throw new TokendError('shutting_down', `store ${this.#conn.display} is closed`);
    const feed = new ChangeFeed(this.#config, this.#conn, opts, this.#log);
    this.#feeds.add(feed);
    feed.onClose(() => this.#feeds.delete(feed));
    await feed.start();
    return feed;
  }

  /** Close every connection and change feed. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#feeds].map((f) => f.close()));
    await this.#pool.end().catch(() => undefined);
  }

  async #connect(operation: string): Promise<pg.PoolClient> {
    try {
      return await this.#pool.connect();
    } catch (err) {
      throw this.#failure(operation, err);
    }
  }

  async #query<R extends pg.QueryResultRow>(operation: string, sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.#closed) throw new TokendError('shutting_down', `store ${this.#conn.display} is closed: cannot ${operation}`);
    try {
      return await this.#pool.query<R>(sql, params);
    } catch (err) {
      throw this.#failure(operation, err);
    }
  }

  /** The driver's error as ours: scrubbed, with its SQLSTATE or errno, and without the driver's object as cause. */
  #failure(operation: string, err: unknown): TokendError {
    if (err instanceof TokendError) return new TokendError(err.code, this.#conn.scrub(err.message));
    const e = err as { message?: unknown; code?: unknown };
    const message = typeof e.message === 'string' ? e.message : String(err);
    const code = typeof e.code === 'string' ? ` (${e.code})` : '';
    return new TokendError('persist_failed', `store ${this.#conn.display}: cannot ${operation}: ${this.#conn.scrub(message)}${code}`);
  }
}

function checkAccount(account: string): void {
  if (!ACCOUNT.test(account)) throw new TokendError('internal_error', `store: ${JSON.stringify(account)} is not an account name`);
}

function checkHolder(holder: string): void {
  if (holder.length === 0 || holder.length > MAX_HOLDER_LENGTH) {
    throw new TokendError('internal_error', `store: a lease holder is 1 to ${MAX_HOLDER_LENGTH} characters`);
  }
}

function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_TTL_MS) throw new TokendError('internal_error', `store: lease time ${ttlMs} ms is out of range`);
}

function checkLease(lease: Lease): void {
  checkAccount(lease.account);
  checkHolder(lease.holder);
  if (!Number.isInteger(lease.epoch) || lease.epoch < 1) throw new TokendError('internal_error', `store: lease epoch ${lease.epoch} is not an epoch`);
}
