/**
 * Which connections are served, decided once per connection, not per request.
 *
 * - A cap on open connections, below the open-file limit with room to spare:
 *   a daemon out of descriptors cannot write its state file, so a connection
 *   past the cap gets a complete 503 at once and is closed.
 * - The same-user rule: a keyless loopback TCP listener is reachable by every
 *   local user, so it serves only tokend's own user, root and the allowed
 *   uids, found from the kernel's socket table (src/http/peer.ts). A peer that
 *   cannot be identified is refused. A unix socket (0600) and an API key
 *   already decide who may ask.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import type { ErrorData } from '../shared/errors.js';
import type { Log } from '../shared/log.js';
import type { Listen } from '../config/config.js';
import { canIdentifyPeers, peerUid, TCP_TABLES, type ReadTable } from '../shared/proc-net.js';

export interface AdmissionOptions {
  readonly log: Log;
  readonly listen: Listen;
  readonly apiKey: string | null;
  readonly allowedUids: readonly number[];
  readonly maxConnections: number;
  readonly maxEventClients: number;
  /** For tests: the open-file limit. */
  readonly fileLimit?: () => number | null;
}

export interface Caps {
  readonly connections: number;
  readonly eventClients: number;
}

/** How long a refused connection may stay to read its 503 before it is closed. */
const REFUSED_GRACE_MS = 2_000;
/**
 * Refused connections waiting to read their 503 at most: past this, in a
 * flood, they are closed at once, so they never eat the descriptors kept back.
 */
const REFUSED_LINGERING = 16;

/** Descriptors never given to clients: ~25 open at idle, then writes, upstream calls and refused connections. */
const RESERVED_DESCRIPTORS = 64;

/**
 * The caps that fit the open-file limit: descriptors are kept back for the
 * daemon's own work (state file and its temp file, lock, owner thread,
 * upstream connections, logs), and connections for requests beside the event streams.
 */
export function fitCaps(maxConnections: number, maxEventClients: number, fileLimit: number | null): Caps {
  const room = fileLimit === null ? Infinity : fileLimit - Math.max(RESERVED_DESCRIPTORS, Math.floor(fileLimit / 8));
  const connections = Math.max(2, Math.min(maxConnections, room));
  const eventClients = Math.max(1, Math.min(maxEventClients, connections - Math.max(1, Math.floor(connections / 8))));
  return { connections, eventClients };
}

/** The soft limit on open files, from /proc/self/limits (null where there is none to read). */
export function openFileLimit(): number | null {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return line && line[1] !== 'unlimited' ? Number(line[1]) : null;
  } catch {
    return null;
  }
}

/** A complete HTTP answer written on the socket itself: no request has been read yet. */
export function rawAnswer(status: number, reason: string, error: ErrorData): string {
  const body = JSON.stringify({ error: error.code, message: error.message });
  return `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`;
}

/**
 * Peer lookups, batched: the kernel writes out every socket of the host for
 * each read of its table (milliseconds on a busy machine), so connections
 * that arrive together share one read, made off the main thread.
 */
class PeerLookups {
  #waiting: Array<{ socket: Socket; settle: (uid: number | null) => void }> = [];
  #reading = false;

  uidOf(socket: Socket): Promise<number | null> {
    return new Promise((settle) => {
      this.#waiting.push({ socket, settle });
      void this.#next();
    });
  }

  async #next(): Promise<void> {
    if (this.#reading || this.#waiting.length === 0) return;
    this.#reading = true;
    const batch = this.#waiting.splice(0);
    try {
      // The IPv4 table first: a loopback listener's clients are all there, and the IPv6 table is read only for
      // the peers it does not name (an IPv6 or dual-stack listener).
      const tables = new Map<string, string | null>();
      const load = async (path: string): Promise<void> => void tables.set(path, await readFile(path, 'latin1').catch(() => null));
      const read: ReadTable = (path) => {
        const text = tables.get(path);
        if (text === null || text === undefined) throw new Error(`cannot read ${path}`);
        return text;
      };
      await load(TCP_TABLES.IPv4);
      const unknown = batch.filter(({ socket, settle }) => {
        const uid = peerUid(socket, read);
        if (uid !== null) settle(uid);
        return uid === null;
      });
      if (unknown.length > 0) {
        await load(TCP_TABLES.IPv6);
        for (const { socket, settle } of unknown) settle(peerUid(socket, read));
      }
    } catch {
      // An unreadable or unexpected table identifies no one: refused, never left waiting.
    } finally {
      for (const { settle } of batch) settle(null);
      this.#reading = false;
      void this.#next();
    }
  }
}

/**
 * A connection's verdict: absent, it is served; an error, it is refused; a
 * promise, its peer is being identified (settles once the verdict is in).
 */
export type Verdict = ErrorData | Promise<void> | undefined;

export class Admission {
  readonly caps: Caps;
  readonly #verdicts = new WeakMap<Socket, ErrorData | Promise<void>>();
  readonly #allowed: ReadonlySet<number> | null;
  readonly #lookups = new PeerLookups();
  readonly #log: Log;
  readonly #warnedUids = new Set<number | null>();
  #open = 0;

  constructor(opts: AdmissionOptions) {
    this.#log = opts.log;
    this.caps = fitCaps(opts.maxConnections, opts.maxEventClients, (opts.fileLimit ?? openFileLimit)());
    if (this.caps.connections < opts.maxConnections || this.caps.eventClients < opts.maxEventClients) {
      this.#log.info({ connections: this.caps.connections, eventClients: this.caps.eventClients }, 'connection caps lowered to fit the open-file limit');
    }
    const sameUser = opts.listen.kind === 'tcp' && opts.apiKey === null;
    if (sameUser && !canIdentifyPeers()) {
      this.#log.warn('this system has no /proc/net/tcp: every local user can reach the keyless TCP listener; set TOKEND_API_KEY or listen on a unix socket');
      this.#allowed = null;
    } else {
      this.#allowed = sameUser ? new Set([process.geteuid?.() ?? 0, 0, ...opts.allowedUids]) : null;
    }
  }

  verdict(socket: Socket): Verdict {
    return this.#verdicts.get(socket);
  }

  /** The server's 'connection' listener. */
  readonly admit = (socket: Socket): void => {
    this.#open++;
    socket.once('close', () => this.#open--);
    if (this.#open > this.caps.connections) return this.#overloaded(socket);
    if (this.#allowed === null) return;
    const allowed = this.#allowed;
    // Nothing is read until the peer is known: requests parsed meanwhile would pile up unanswered
    // (a pipelining client that never reads its answers grew the daemon by gigabytes).
    socket.pause();
    this.#verdicts.set(
      socket,
      this.#lookups.uidOf(socket).then((uid) => {
        if (uid !== null && allowed.has(uid)) this.#verdicts.delete(socket);
        else this.#forbid(socket, uid);
        socket.resume();
      }),
    );
  };

  #forbid(socket: Socket, uid: number | null): void {
    this.#verdicts.set(socket, {
      code: 'forbidden_user',
      message:
        uid === null
          ? 'cannot tell which user opened this connection: refused'
          : `uid ${uid} may not use this daemon: it serves its own user, root and TOKEND_ALLOWED_UIDS (or use an API key)`,
    });
    if (!this.#warnedUids.has(uid)) {
      this.#warnedUids.add(uid);
      this.#log.warn({ uid }, 'refused a connection from another user (said once per user)');
    }
  }

  #overloaded(socket: Socket): void {
    if (this.#open > this.caps.connections + REFUSED_LINGERING) return void socket.destroy();
    const error: ErrorData = { code: 'overloaded', message: `too many connections (at most ${this.caps.connections}): try again shortly` };
    this.#verdicts.set(socket, error);
    // Closing at once could reset the connection before the client reads the answer.
    socket.end(rawAnswer(503, 'Service Unavailable', error));
    const timer = setTimeout(() => socket.destroy(), REFUSED_GRACE_MS);
    socket.once('close', () => clearTimeout(timer));
  }
}
