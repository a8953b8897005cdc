/**
 * GET /events: server-sent events, one per token change (new token or new
 * status), a heartbeat comment every 15 s, and `Last-Event-ID` honoured: a
 * client that reconnects having seen the current version gets nothing
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

export class EventHub {
  readonly #clients = new Set<ServerResponse>();
  #heartbeat: NodeJS.Timeout | null = null;
  #current: () => Snapshot;

  constructor(current: () => Snapshot) {
    this.#current = current;
  }

  get size(): number {
    return this.#clients.size;
  }

  /** The event id names the token (by fingerprint) and the status: a change of either is a new event. */
  static idOf(s: Snapshot): string {
    return `${s.token?.fingerprint ?? 'none'}.${s.status}`;
  }

  static frame(s: Snapshot, nowMs: number): string {
    const data = { status: s.status, reason: s.reason, version: s.version, ...tokenBody(s, nowMs) };
    return `id: ${EventHub.idOf(s)}\nevent: token\ndata: ${JSON.stringify(data)}\n\n`;
  }

  subscribe(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 1000\n\n');
    const current = this.#current();
    if (req.headers['last-event-id'] !== EventHub.idOf(current)) res.write(EventHub.frame(current, Date.now()));
    this.#clients.add(res);
    req.socket.setTimeout(0);
    res.on('close', () => {
      this.#clients.delete(res);
      if (this.#clients.size === 0 && this.#heartbeat) {
        clearInterval(this.#heartbeat);
        this.#heartbeat = null;
      }
    });
    this.#heartbeat ??= setInterval(() => this.#send(': heartbeat\n\n'), HEARTBEAT_MS).unref();
  }

  #send(text: string): void {
    for (const client of this.#clients) {
      if (client.writableLength > MAX_BUFFERED_BYTES) client.destroy();
      else client.write(text);
    }
  }

  /** Called with every snapshot; sends only when the token or the status changed. */
  publish(_account: string, next: Snapshot, previous: Snapshot | null): void {
    if (this.#clients.size === 0 || (previous && EventHub.idOf(previous) === EventHub.idOf(next))) return;
    this.#send(EventHub.frame(next, Date.now()));
  }

  closeAll(): void {
    for (const client of this.#clients) client.end();
    this.#clients.clear();
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }
}
