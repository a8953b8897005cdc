/**
 * The change feed: LISTEN on a connection of its own (a pooled one would be
 * handed to someone else, and its LISTEN with it), one event per committed
 * write, carrying the account and the version, never a token.
 *
 * A lost connection is re-established with exponential backoff and jitter,
 * and LISTEN issued again; notifications sent meanwhile are gone, so every
 * reconnection is followed by a `resync` event: re-read everything. A
 * heartbeat query finds a connection that died without a word (a host gone,
 * a firewall that forgot us) faster than TCP keepalive would. Even so the
 * feed is a hint, not the truth: the caller re-reads now and then anyway.
 */
import pg from 'pg';
import { TokendError } from '../shared/errors.js';
import type { Log } from '../shared/log.js';
import type { StoreConnection } from './connection.js';
import { NOTIFY_CHANNEL } from './postgres-schema.js';

export type StoreChange = { readonly kind: 'changed'; readonly account: string; readonly version: number } | { readonly kind: 'resync' };
export type FeedStatus = 'connected' | 'reconnecting' | 'closed';

export interface ChangeFeedOptions {
  readonly onChange: (change: StoreChange) => void;
  readonly onStatus?: (status: FeedStatus) => void;
  /** First pause after a lost connection, doubled up to `maxBackoffMs`. Default 200 ms. */
  readonly minBackoffMs?: number;
  /** Default 5 s. */
  readonly maxBackoffMs?: number;
  /** Default 10 s. */
  readonly heartbeatMs?: number;
  /** A heartbeat unanswered this long ends the connection. Default 5 s. */
  readonly heartbeatTimeoutMs?: number;
}

export class ChangeFeed {
  readonly #config: pg.ClientConfig;
  readonly #conn: StoreConnection;
  readonly #opts: ChangeFeedOptions;
  readonly #log: Log | undefined;
  #status: FeedStatus = 'reconnecting';
  #client: pg.Client | null = null;
  #attempt = 0;
  #timer: NodeJS.Timeout | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  readonly #closeListeners: (() => void)[] = [];

  constructor(config: pg.ClientConfig, conn: StoreConnection, opts: ChangeFeedOptions, log?: Log) {
    this.#config = { ...config, query_timeout: opts.heartbeatTimeoutMs ?? 5000 };
    this.#conn = conn;
    this.#opts = opts;
    this.#log = log;
  }

  get status(): FeedStatus {
    return this.#status;
  }

  /** The first connection: a failure here is thrown (scrubbed), not retried. */
  async start(): Promise<void> {
    try {
      await this.#connect();
    } catch (err) {
      this.#status = 'closed';
      for (const listener of this.#closeListeners) listener();
      throw new TokendError('persist_failed', `store ${this.#conn.display}: cannot listen for changes: ${this.#conn.scrub((err as Error).message)}`);
    }
    if (this.#status === 'closed') return;
    this.#setStatus('connected');
    this.#beat();
  }

  onClose(listener: () => void): void {
    this.#closeListeners.push(listener);
  }

  /** Stop listening and close the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#status === 'closed') return;
    this.#setStatus('closed');
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#heartbeat) clearTimeout(this.#heartbeat);
    const client = this.#client;
    this.#client = null;
    await client?.end().catch(() => undefined);
    for (const listener of this.#closeListeners) listener();
  }

  async #connect(): Promise<void> {
    const client = new pg.Client(this.#config);
    // Until `end`, errors arrive here too; the `end` that always follows a lost connection is what acts.
    client.on('error', (err) => this.#log?.debug({ store: this.#conn.display, err: this.#conn.scrub(err.message) }, 'change feed connection error'));
    client.on('end', () => this.#lost(client));
    client.on('notification', (n) => this.#notified(n));
    try {
      await client.connect();
      await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    } catch (err) {
      client.removeAllListeners('end');
      client.on('error', () => undefined);
      void client.end().catch(() => undefined);
      throw err;
    }
    if (this.#status === 'closed') {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#attempt = 0;
  }

  #notified(n: pg.Notification): void {
    if (n.channel !== NOTIFY_CHANNEL || n.payload === undefined) return;
    let change: StoreChange;
    try {
      const p = JSON.parse(n.payload) as { account?: unknown; version?: unknown };
      if (typeof p.account !== 'string' || typeof p.version !== 'number') throw new Error('unexpected payload');
      change = { kind: 'changed', account: p.account, version: p.version };
    } catch {
      // Something else notified our channel: tell the caller to look for itself.
      change = { kind: 'resync' };
    }
    this.#deliver(change);
  }

  #deliver(change: StoreChange): void {
    try {
      this.#opts.onChange(change);
    } catch (err) {
      this.#log?.error({ err: (err as Error).message }, 'change feed listener threw');
    }
  }

  #lost(client: pg.Client): void {
    if (client !== this.#client || this.#status === 'closed') return;
    this.#client = null;
    if (this.#heartbeat) clearTimeout(this.#heartbeat);
    this.#log?.warn({ store: this.#conn.display }, 'change feed connection lost; reconnecting');
    this.#setStatus('reconnecting');
    this.#retry();
  }

  #retry(): void {
    const min = this.#opts.minBackoffMs ?? 200;
    const max = this.#opts.maxBackoffMs ?? 5000;
    const delay = Math.min(max, min * 2 ** this.#attempt++) * (0.8 + Math.random() * 0.4);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect().then(
        () => {
          if (this.#status === 'closed') return;
          this.#log?.info({ store: this.#conn.display }, 'change feed reconnected');
          this.#setStatus('connected');
          this.#beat();
          this.#deliver({ kind: 'resync' });
        },
        (err: Error) => {
          if (this.#status === 'closed') return;
          this.#log?.debug({ store: this.#conn.display, err: this.#conn.scrub(err.message) }, 'change feed reconnect failed');
          this.#retry();
        },
      );
    }, delay);
    this.#timer.unref();
  }

  /** A query now and then: a connection that stopped answering is ended, and `end` reconnects. */
  #beat(): void {
    this.#heartbeat = setTimeout(() => {
      const client = this.#client;
      if (!client) return;
      client.query('SELECT 1').then(
        () => this.#beat(),
        () => {
          // query_timeout fired or the query failed: treat the connection as lost.
          const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
          stream?.destroy();
          void client.end().catch(() => undefined);
        },
      );
    }, this.#opts.heartbeatMs ?? 10_000);
    this.#heartbeat.unref();
  }

  #setStatus(status: FeedStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    this.#opts.onStatus?.(status);
  }
}
