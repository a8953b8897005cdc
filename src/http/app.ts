/**
 * The HTTP server: polka's router with a one-step dispatch, our own error and
 * no-match answers so every answer is `{"error","message"}` JSON, admission
 * per connection (caps, the same-user rule) and guards before any route runs,
 * and server timeouts so slow clients cannot hold the daemon. No request can
 * crash it: throws and rejections land in onError.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import polka, { type Middleware } from 'polka';
import { isErrorCode, type ErrorCode } from '../shared/errors.js';
import type { Log } from '../shared/log.js';
import type { Metrics } from '../daemon/metrics.js';
import type { HttpStats } from '../daemon/http-stats.js';
import { Admission } from './admission.js';
import { createCors, createGuard, isPreflight, preflightHeaders, type Guard, type GuardOptions } from './guards.js';
import { answerStatus, fail, sendError } from './reply.js';
import { ACCOUNT_PREFIX, ACCOUNT_ROUTE, routes, type Backend, type Route } from './routes.js';

export interface HttpOptions extends GuardOptions {
  readonly log: Log;
  /** Users besides tokend's own and root served on a keyless TCP listener. */
  readonly allowedUids: readonly number[];
  readonly maxConnections: number;
  readonly maxEventClients: number;
  readonly metrics: Metrics;
  readonly backend: Backend;
  readonly isDraining: () => boolean;
  /** While the owner thread is starting: settles once it has loaded the state. */
  readonly starting: () => Promise<void> | null;
}

/** The documented deadlines for a client to send its headers, and its whole request. */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
/**
 * Requests of one connection still being answered asynchronously (a scrape, a
 * refresh, a body being read). Node stops reading a pipelining client only
 * once answers back up; answers still being prepared do not count, so without
 * this a client that pipelines and never reads grows the daemon without bound.
 */
export const MAX_PENDING_PER_CONNECTION = 16;

export function createHttpServer(opts: HttpOptions): Server {
  return new HttpApp(opts).server;
}

/** What a route does with a request; the path travels as an argument, never as a property added to Node's request. */
type RouteHandler = (req: IncomingMessage, res: ServerResponse, path: string) => void | Promise<void>;

/** A route as the dispatch runs it: its handler, and its index among the request metrics' labels. */
interface Served {
  readonly label: number;
  readonly handler: RouteHandler;
}

/** GET routes also answer HEAD (Node sends the headers alone), except the event stream, which has no end. */
const answersHead = (r: Route): boolean => r.method === 'GET' && r.path !== '/events';

/** Read nothing more from this connection, and close it once `res` is answered. */
function closeAfter(req: IncomingMessage, res: ServerResponse): void {
  req.socket.pause();
  res.once('finish', () => req.socket.destroySoon());
}

/**
 * polka's router (`find`), holding tokend's own routes. polka stores
 * middleware, so each route is registered under a marker of its own that
 * names it here; polka's request loop never runs them. Each route is a fixed
 * path, or a fixed path after `/accounts/NAME`: it is found in a map by its
 * path (an account's route: by what follows the name), not by polka's
 * find(), which runs patterns and builds arrays on every call. Anything else
 * (another case, a trailing slash) still goes to polka's patterns.
 */
class Router<R> {
  readonly #polka = polka();
  readonly #byMarker = new Map<Middleware, R>();
  readonly #exact = new Map<string, Map<string, R>>();
  /** An account's routes, by the path after `/accounts/NAME`. */
  readonly #inAccount = new Map<string, Map<string, R>>();

  /** `method` on `path`, matched by polka; `alsoHead`: HEAD on the exact path too (polka matches HEAD to GET elsewhere). */
  add(method: 'GET' | 'POST', path: string, route: R, alsoHead: boolean): void {
    // Inert if polka's own loop ever ran it: on to its no-match.
    const marker: Middleware = (_req, _res, next) => next();
    this.#byMarker.set(marker, route);
    if (method === 'GET') this.#polka.get(path, marker);
    else this.#polka.post(path, marker);
    const scoped = path.startsWith(`${ACCOUNT_ROUTE}/`);
    const table = scoped ? this.#inAccount : this.#exact;
    const key = scoped ? path.slice(ACCOUNT_ROUTE.length) : path;
    const byMethod = table.get(key) ?? new Map<string, R>();
    byMethod.set(method, route);
    if (alsoHead) byMethod.set('HEAD', route);
    table.set(key, byMethod);
  }

  find(method: string, path: string): R | undefined {
    const exact = this.#exact.get(path)?.get(method);
    if (exact !== undefined) return exact;
    const end = path.startsWith(ACCOUNT_PREFIX) ? path.indexOf('/', ACCOUNT_PREFIX.length) : -1;
    if (end > ACCOUNT_PREFIX.length) {
      const inAccount = this.#inAccount.get(path.slice(end))?.get(method);
      if (inAccount !== undefined) return inAccount;
    }
    // polka holds GET and POST routes only, and matches HEAD to GET: any other method matches nothing.
    if (method !== 'GET' && method !== 'POST' && method !== 'HEAD') return undefined;
    const marker = this.#polka.find(method, path).handlers[0];
    return marker === undefined ? undefined : this.#byMarker.get(marker);
  }
}

/** The route table's path for a request's path: `/accounts/NAME/token` is `/accounts/:account/token`. */
function routePath(path: string): string {
  const end = path.startsWith(ACCOUNT_PREFIX) ? path.indexOf('/', ACCOUNT_PREFIX.length) : -1;
  return end > ACCOUNT_PREFIX.length ? `${ACCOUNT_ROUTE}${path.slice(end)}` : path;
}

/** Requests of each connection held for a later answer (see MAX_PENDING_PER_CONNECTION). */
class ConnectionSlots {
  readonly #pending = new WeakMap<Socket, number>();

  full(socket: Socket): boolean {
    return (this.#pending.get(socket) ?? 0) >= MAX_PENDING_PER_CONNECTION;
  }

  hold(socket: Socket): void {
    this.#pending.set(socket, (this.#pending.get(socket) ?? 0) + 1);
  }

  release(socket: Socket): void {
    this.#pending.set(socket, (this.#pending.get(socket) ?? 1) - 1);
  }
}

/** The answer to a connection with every slot taken: 503, then closed. */
function tooMany(req: IncomingMessage, res: ServerResponse): void {
  closeAfter(req, res);
  fail(res, 'overloaded', `more than ${MAX_PENDING_PER_CONNECTION} requests of this connection are waiting for their answers`, { connection: 'close' });
}

/** An error's catalogue code, when it carries one (a TokendError, or an error rebuilt from one). */
function codeOf(e: Error): ErrorCode | null {
  return 'code' in e && isErrorCode(e.code) ? e.code : null;
}

/**
 * The HTTP side built from its dependencies: the route table (routes.ts),
 * admission, guards, metrics. `server` is the node:http server whose one
 * request listener is the dispatch below.
 */
class HttpApp {
  readonly server: Server;
  readonly #opts: HttpOptions;
  readonly #log: Log;
  readonly #admission: Admission;
  readonly #guard: Guard;
  readonly #cors: (req: IncomingMessage, res: ServerResponse) => void;
  /** Methods allowed on each path (OPTIONS included), for 405's Allow and preflights. */
  readonly #allowed = new Map<string, string[]>();
  /** Request metrics by route label: the table's paths, then 'other' (no route matched). */
  readonly #labels: readonly string[];
  readonly #stats: HttpStats;
  readonly #router = new Router<Served>();
  readonly #slots = new ConnectionSlots();
  readonly #noMatch: Served;
  readonly #notYetReady: Served;

  constructor(opts: HttpOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#admission = new Admission(opts);
    this.#guard = createGuard(opts);
    this.#cors = createCors(opts.allowedOrigins);
    const table = routes(opts.backend, { maxEventClients: this.#admission.caps.eventClients });
    for (const r of table) this.#allowed.set(r.path, [...(this.#allowed.get(r.path) ?? []), r.method, ...(answersHead(r) ? ['HEAD'] : [])]);
    for (const methods of this.#allowed.values()) methods.push('OPTIONS');
    this.#labels = [...this.#allowed.keys(), 'other'];
    this.#stats = opts.metrics.trackRequests(this.#labels);
    for (const r of table) this.#router.add(r.method, r.path, { label: this.#labels.indexOf(r.path), handler: r.handler }, answersHead(r));
    this.#noMatch = { label: this.#labels.length - 1, handler: (req, res, path) => this.#answerNoMatch(req, res, path) };
    this.#notYetReady = {
      label: this.#labels.indexOf('/readyz'),
      handler: (_req, res) => fail(res, 'not_ready', 'starting: the owner thread is taking the lock and loading the state file'),
    };
    this.server = this.#createServer();
  }

  /**
   * polka routes (its router: `find`); the request loop is this one. polka's
   * own runs every step as an async call, and each tokend route is one
   * handler: see the README, Performance.
   */
  readonly #dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    const t0 = performance.now();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const verdict = this.#admission.verdict(req.socket);
    if (verdict !== undefined) {
      // The peer is still being identified: this request waits for the verdict.
      // Requests parsed meanwhile wait, a few of them: a client pipelining past that is not waited for.
      if (verdict instanceof Promise) return this.#later(req, res, verdict, () => this.#dispatch(req, res));
      // A connection past the cap already has its answer: nothing it sends is served.
      if (verdict.code === 'overloaded') return void req.resume();
    }
    const route = this.#router.find(req.method ?? '', path) ?? this.#noMatch;
    const starting = this.#opts.starting();
    if (starting === null || path === '/healthz') return this.#serve(route, req, res, path, t0);
    if (path === '/readyz') return this.#serve(this.#notYetReady, req, res, path, t0);
    this.#later(req, res, starting, () => this.#serve(route, req, res, path, t0));
  };

  /**
   * A route's handler behind the guards, timed; a throw or a rejection lands
   * in onError. Guards and timing run here, not as a polka middleware: every
   * step of polka's loop is an async call.
   */
  #serve(route: Served, req: IncomingMessage, res: ServerResponse, path: string, t0: number): void {
    try {
      if (this.#refuse(req, res, path, route.label)) return this.#record(res, route.label, t0);
      const socket = req.socket;
      if (this.#slots.full(socket)) {
        tooMany(req, res);
        return this.#record(res, route.label, t0);
      }
      const out = route.handler(req, res, path);
      if (out instanceof Promise) {
        this.#slots.hold(socket);
        out.then(
          () => (this.#slots.release(socket), this.#record(res, route.label, t0)),
          (err: unknown) => (this.#slots.release(socket), this.#onError(err, res, route.label, t0)),
        );
      } else this.#record(res, route.label, t0);
    } catch (err) {
      this.#onError(err, res, route.label, t0);
    }
  }

  /** Answers the request and returns true when it must not reach the route. */
  #refuse(req: IncomingMessage, res: ServerResponse, path: string, label: number): boolean {
    this.#cors(req, res);
    // A verdict still being made has been waited for by the dispatch: here it is absent or a refusal.
    const refusal = this.#admission.verdict(req.socket);
    if (refusal !== undefined && !(refusal instanceof Promise) && path !== '/healthz') {
      // One answer is enough: nothing more is read from this connection, and it is closed once answered.
      closeAfter(req, res);
      sendError(res, refusal, { connection: 'close' });
      this.#refused(refusal.code, label);
      return true;
    }
    if (this.#opts.isDraining()) {
      fail(res, 'shutting_down', 'tokend is shutting down', { connection: 'close' });
      return true;
    }
    const guarded = this.#guard(req, path);
    if (!guarded) return false;
    sendError(res, guarded);
    this.#refused(guarded.code, label);
    return true;
  }

  /** Answer `req` once `until` settles, holding one of its connection's slots meanwhile. */
  #later(req: IncomingMessage, res: ServerResponse, until: Promise<unknown>, then: () => void): void {
    if (this.#slots.full(req.socket)) return tooMany(req, res);
    this.#slots.hold(req.socket);
    void until.then(() => {
      this.#slots.release(req.socket);
      then();
    });
  }

  /** An unknown path (404), a method the path does not take (405), or an OPTIONS request. */
  #answerNoMatch(req: IncomingMessage, res: ServerResponse, path: string): void {
    const other = this.#noMatch.label;
    const methods = this.#allowed.get(routePath(path));
    if (!methods) {
      fail(res, 'not_found', `no route ${path}`);
      return this.#refused('not_found', other);
    }
    if (req.method !== 'OPTIONS') {
      fail(res, 'method_not_allowed', `${req.method} is not allowed on ${path}`, { allow: methods.join(', ') });
      return this.#refused('method_not_allowed', other);
    }
    // The guard has refused a preflight from an origin not allowed; this one may go ahead.
    res.writeHead(204, { allow: methods.join(', '), 'cache-control': 'no-store', ...(isPreflight(req) ? preflightHeaders(methods) : {}) });
    res.end();
  }

  /** Request timing without a 'finish' listener per request: recorded where each answer is sent. */
  #record(res: ServerResponse, label: number, t0: number): void {
    this.#stats.request(label, res.statusCode, (performance.now() - t0) / 1000);
  }

  #onError(err: unknown, res: ServerResponse, label: number, t0: number): void {
    try {
      this.#answerError(err instanceof Error || typeof err === 'string' ? err : new Error(String(err)), res, label);
    } finally {
      this.#record(res, label, t0);
    }
  }

  #answerError(err: string | Error, res: ServerResponse, label: number): void {
    const e = typeof err === 'string' ? new Error(err) : err;
    const code = codeOf(e);
    if (code !== null) {
      if (answerStatus(code) >= 500) this.#log.error({ code, err: e.message }, 'request failed');
      else this.#refused(code, label);
      if (!res.headersSent) sendError(res, { code, message: e.message });
      return;
    }
    this.#log.error({ err: e.message }, 'unexpected error in request handler');
    if (!res.headersSent) fail(res, 'internal_error', 'internal error');
    else res.destroy();
  }

  /**
   * A refusal or a client error (a 4xx answer) is logged at debug: its code
   * and route, never the request's headers, body or tokens. Called only where
   * an error is answered, never on a served request.
   */
  #refused(code: ErrorCode, label: number): void {
    const status = answerStatus(code);
    if (status < 500) this.#log.debug({ code, status, route: this.#labels[label] }, 'request refused');
  }

  #createServer(): Server {
    const server = createServer(
      {
        // Slow-loris: a client that trickles its headers or body is cut off. Node
        // checks these deadlines only every connectionsCheckingInterval (30 s by
        // default), which would let a client hold a connection three times as long.
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        connectionsCheckingInterval: 250,
        keepAliveTimeout: 5_000,
        maxHeaderSize: 16 * 1024,
        // A request without Host gets our JSON 400 (the guard) instead of Node's empty one.
        requireHostHeader: false,
      },
      this.#dispatch,
    );
    server.on('connection', this.#admission.admit);
    // A client may half-close once its request is sent: answer it all the same
    // (by default Node drops a response still being prepared when the client's FIN arrives).
    (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => this.#answerMalformed(err, socket));
    return server;
  }

  /** A request the parser refused (or one too slow): answered on the socket itself, before any route. */
  #answerMalformed(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const message =
      status === 408
        ? `the request did not arrive in time (headers within ${HEADERS_TIMEOUT_MS / 1000} s, the whole request within ${REQUEST_TIMEOUT_MS / 1000} s)`
        : `malformed request (${err.code ?? 'error'})`;
    const code = status === 431 ? 'payload_too_large' : 'invalid_request';
    // The parser's reason (an llhttp code), never what the client sent.
    this.#log.debug({ code, status, reason: err.code ?? 'error' }, 'malformed request refused');
    const body = JSON.stringify({ error: code, message });
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  }
}
