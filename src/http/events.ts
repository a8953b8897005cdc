/**
 * GET /events: server-sent events, one per token change of an account (new
 * token or new status), each naming its account; `?account=NAME` keeps one
 * account's. A heartbeat comment every 15 s, and `Last-Event-ID` honoured: a
 * client that reconnects having seen an account's current state gets it not
 * twice; one that missed a change gets the current state at once.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Snapshot } from '../shared/contract.js';
import { tokenBody } from './views.js';

const HEARTBEAT_MS = 15_000;
/**
 * A client that stops reading is dropped once this much waits for it:
 * otherwise every event and heartbeat stays in the daemon's memory for good.
 */
export const MAX_BUFFERED_BYTES = 64 * 1024;

/** An account as the event stream sees it: its name and its current snapshot. */
export interface EventSource {
  readonly name: string;
  snapshot(): Snapshot;
}

export class EventHub {
  /** Each stream, with the one account it follows (null: every account). */
  readonly #clients = new Map<ServerResponse, string | null>();
  #heartbeat: NodeJS.Timeout | null = null;
  readonly #accounts: () => Iterable<EventSource>;

  /** `accounts`: the accounts whose current state a new stream is sent first, in configuration order. */
  constructor(accounts: () => Iterable<EventSource>) {
    this.#accounts = accounts;
  }

  get size(): number {
    return this.#clients.size;
  }

  /**
   * The event id names the account, the token (by fingerprint) and the
   * status: a change of either is a new event. Account names hold no `.`.
   */
  static idOf(account: string, s: Snapshot): string {
    return `${account}.${s.token?.fingerprint ?? 'none'}.${s.status}`;
  }

  static frame(account: string, s: Snapshot, nowMs: number): string {
    const data = { account, status: s.status, reason: s.reason, version: s.version, ...tokenBody(s, nowMs) };
    return `id: ${EventHub.idOf(account, s)}\nevent: token\ndata: ${JSON.stringify(data)}\n\n`;
  }

  /** Start a stream of `account`'s events (null: every account's); the caller has checked that the account exists. */
  subscribe(req: IncomingMessage, res: ServerResponse, account: string | null): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 1000\n\n');
    const seen = req.headers['last-event-id'];
    const now = Date.now();
    for (const source of this.#accounts()) {
      if (account !== null && source.name !== account) continue;
      const current = source.snapshot();
      if (seen !== EventHub.idOf(source.name, current)) res.write(EventHub.frame(source.name, current, now));
    }
    this.#clients.set(res, account);
    req.socket.setTimeout(0);
    res.on('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0 && this.#heartbeat) {
        clearInterval(this.#heartbeat);
        this.#heartbeat = null;
      }
    });
    this.#heartbeat ??= setInterval(() => this.#send(': heartbeat\n\n', null), HEARTBEAT_MS).unref();
  }

  /** `text` to every stream following `account` (null: to every stream). */
  #send(text: string, account: string | null): void {
    for (const [client, follows] of this.#clients) {
      if (account !== null && follows !== null && follows !== account) continue;
      if (client.writableLength > MAX_BUFFERED_BYTES) client.destroy();
      else client.write(text);
    }
  }

  /** Called with every snapshot of `account`; sends only when its token or status changed. */
  publish(account: string, next: Snapshot, previous: Snapshot | null): void {
    if (this.#clients.size === 0 || (previous && EventHub.idOf(account, previous) === EventHub.idOf(account, next))) return;
    this.#send(EventHub.frame(account, next, Date.now()), account);
  }

  closeAll(): void {
    for (const client of this.#clients.keys()) client.end();
    this.#clients.clear();
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }
}
