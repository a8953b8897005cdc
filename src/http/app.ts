/**
 * The HTTP server: polka's router with a one-step dispatch, our own error and
 * no-match answers so every answer is `{"error","message"}` JSON, admission
 * per connection (caps, the same-user rule) and guards before any route runs,
 * and server timeouts so slow clients cannot hold the daemon. No request can
 * crash it: throws and rejections land in onError.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import polka, { type Middleware } from 'polka';
import { TokendError, isErrorCode, type ErrorCode, type ErrorData } from '../shared/errors.js';
import type { Log } from '../shared/log.js';
import type { Metrics } from '../daemon/metrics.js';
import { Admission } from './admission.js';
import { createCors, createGuard, isPreflight, preflightHeaders, type GuardOptions } from './guards.js';
import { answerStatus, fail, sendError } from './reply.js';
import { routes, type Backend } from './routes.js';

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

/**
 * A route as the dispatch calls it: the path and the start time travel as
 * arguments, never as properties added to Node's request object (that gives
 * every IncomingMessage a second shape, and Node's own code slows down on it).
 */
type Served = (req: IncomingMessage, res: ServerResponse, path: string, t0: number) => void;

/** GET routes also answer HEAD (Node sends the headers alone), except the event stream, which has no end. */
/** Read nothing more from this connection, and close it once `res` is answered. */
function closeAfter(req: IncomingMessage, res: ServerResponse): void {
  req.socket.pause();
  res.once('finish', () => req.socket.destroySoon());
}

const answersHead = (r: { method: string; path: string }): boolean => r.method === 'GET' && r.path !== '/events';

export function createHttpServer(opts: HttpOptions): Server {
  const { log } = opts;
  const admission = new Admission(opts);
  const table = routes(opts.backend, { maxEventClients: admission.caps.eventClients });
  const allowed = new Map<string, string[]>();
  for (const r of table) allowed.set(r.path, [...(allowed.get(r.path) ?? []), r.method, ...(answersHead(r) ? ['HEAD'] : [])]);
  for (const methods of allowed.values()) methods.push('OPTIONS');
  const guard = createGuard(opts);
  const cors = createCors(opts.allowedOrigins);
  // Request metrics by route index: the table's paths, then 'other' (no route matched).
  const labels = [...allowed.keys(), 'other'];
  const OTHER = labels.length - 1;
  const stats = opts.metrics.trackRequests(labels);

  /** Request timing without a 'finish' listener per request: recorded where each answer is sent. */
  const record = (res: ServerResponse, route: number, t0: number): void => stats.request(route, res.statusCode, (performance.now() - t0) / 1000);

  const onError = (err: unknown, res: ServerResponse, route: number, t0: number): void => {
    try {
      answerError(err instanceof Error || typeof err === 'string' ? err : new Error(String(err)), res, route);
    } finally {
      record(res, route, t0);
    }
  };
  const app = polka();

  /**
   * A refusal or a client error (a 4xx answer) is logged at debug: its code
   * and route, never the request's headers, body or tokens. Called only where
   * an error is answered, never on a served request.
   */
  const refused = (code: ErrorCode, route: number): void => {
    const status = answerStatus(code);
    if (status < 500) log.debug({ code, status, route: labels[route] }, 'request refused');
  };

  function answerError(err: string | Error, res: ServerResponse, route: number): void {
    const e = typeof err === 'string' ? new Error(err) : err;
    if (e instanceof TokendError || (isErrorCode((e as { code?: unknown }).code) && e instanceof Error)) {
      const te = e as TokendError;
      if (answerStatus(te.code) >= 500) log.error({ code: te.code, err: te.message }, 'request failed');
      else refused(te.code, route);
      if (!res.headersSent) sendError(res, { code: te.code, message: te.message });
      return;
    }
    log.error({ err: e.message }, 'unexpected error in request handler');
    if (!res.headersSent) fail(res, 'internal_error', 'internal error');
    else res.destroy();
  }

  /** Requests of each connection held for a later answer (see MAX_PENDING_PER_CONNECTION). */
  const pendingOn = new WeakMap<Socket, number>();
  const slotsFull = (socket: Socket): boolean => (pendingOn.get(socket) ?? 0) >= MAX_PENDING_PER_CONNECTION;
  const hold = (socket: Socket): void => void pendingOn.set(socket, (pendingOn.get(socket) ?? 0) + 1);
  const release = (socket: Socket): void => void pendingOn.set(socket, (pendingOn.get(socket) ?? 1) - 1);
  /** The answer to a connection with every slot taken: 503, then closed. */
  const tooMany = (req: IncomingMessage, res: ServerResponse): void => {
    closeAfter(req, res);
    fail(res, 'overloaded', `more than ${MAX_PENDING_PER_CONNECTION} requests of this connection are waiting for their answers`, { connection: 'close' });
  };
  /** Answer `req` once `until` settles, holding one of its connection's slots meanwhile. */
  const later = (req: IncomingMessage, res: ServerResponse, until: Promise<unknown>, then: () => void): void => {
    if (slotsFull(req.socket)) return tooMany(req, res);
    hold(req.socket);
    void until.then(() => {
      release(req.socket);
      then();
    });
  };

  /**
   * Guards and timing run inside each route's handler, not as a polka
   * middleware: every step of polka's loop is an async call, and a second
   * step per request cost ~30% of throughput in `npm run bench`.
   * Answers the request and returns true when it must not reach the route.
   */
  const refuse = (req: IncomingMessage, res: ServerResponse, path: string, route: number): boolean => {
    cors(req, res);
    // Settled by now: the dispatch waits for a verdict still being made.
    const refusal = admission.verdict(req.socket) as ErrorData | undefined;
    if (refusal !== undefined && path !== '/healthz') {
      // One answer is enough: nothing more is read from this connection, and it is closed once answered.
      closeAfter(req, res);
      sendError(res, refusal, { connection: 'close' });
      refused(refusal.code, route);
      return true;
    }
    if (opts.isDraining()) {
      fail(res, 'shutting_down', 'tokend is shutting down', { connection: 'close' });
      return true;
    }
    const guarded = guard(req, path);
    if (!guarded) return false;
    sendError(res, guarded);
    refused(guarded.code, route);
    return true;
  };
  /** A route's handler behind the guards, timed; a throw or a rejection lands in onError. */
  const serve =
    (route: number, handler: (req: IncomingMessage, res: ServerResponse, path: string) => void | Promise<void>): Served =>
    (req, res, path, t0) => {
      try {
        if (refuse(req, res, path, route)) return record(res, route, t0);
        const socket = req.socket;
        if (slotsFull(socket)) {
          tooMany(req, res);
          return record(res, route, t0);
        }
        const out = handler(req, res, path);
        if (out instanceof Promise) {
          hold(socket);
          out.then(
            () => (release(socket), record(res, route, t0)),
            (err: unknown) => (release(socket), onError(err, res, route, t0)),
          );
        } else record(res, route, t0);
      } catch (err) {
        onError(err, res, route, t0);
      }
    };
  // polka's router holds each route's Served function; only the dispatch below calls them, with their own signature.
  for (const r of table) {
    const handler = serve(labels.indexOf(r.path), r.handler) as unknown as Middleware;
    if (r.method === 'GET') app.get(r.path, handler);
    else app.post(r.path, handler);
  }
  // Each route is a fixed path: ask polka's router once per route and method, not once per request
  // (its find() builds arrays on every call). Anything else (HEAD, unknown paths) still goes to find().
  const resolved = new Map<string, Map<string, Served>>();
  for (const r of table) {
    const byMethod = resolved.get(r.path) ?? new Map<string, Served>();
    const handler = app.find(r.method, r.path).handlers[0] as unknown as Served;
    byMethod.set(r.method, handler);
    if (answersHead(r)) byMethod.set('HEAD', handler);
    resolved.set(r.path, byMethod);
  }
  const noMatch = serve(OTHER, (req, res, path) => {
    const methods = allowed.get(path);
    if (!methods) {
      fail(res, 'not_found', `no route ${path}`);
      return refused('not_found', OTHER);
    }
    if (req.method !== 'OPTIONS') {
      fail(res, 'method_not_allowed', `${req.method} is not allowed on ${path}`, { allow: methods.join(', ') });
      return refused('method_not_allowed', OTHER);
    }
    // The guard has refused a preflight from an origin not allowed; this one may go ahead.
    res.writeHead(204, { allow: methods.join(', '), 'cache-control': 'no-store', ...(isPreflight(req) ? preflightHeaders(methods) : {}) });
    res.end();
  });
  const notYetReady = serve(labels.indexOf('/readyz'), (_req, res) =>
    fail(res, 'not_ready', 'starting: the owner thread is taking the lock and loading the state file'),
  );

  /**
   * polka routes (its router: `app.find`); the request loop is this one.
   * polka's own runs every step as an async call and cost ~35% of GET /token
   * throughput in `npm run bench`, and each tokend route is one handler.
   */
  const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    const t0 = performance.now();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query === -1 ? url : url.slice(0, query);
    const verdict = admission.verdict(req.socket);
    if (verdict !== undefined) {
      // The peer is still being identified: this request waits for the verdict.
      // Requests parsed meanwhile wait, a few of them: a client pipelining past that is not waited for.
      if (verdict instanceof Promise) return later(req, res, verdict, () => dispatch(req, res));
      // A connection past the cap already has its answer: nothing it sends is served.
      if (verdict.code === 'overloaded') return void req.resume();
    }
    const route =
      resolved.get(path)?.get(req.method!) ??
      (app.find(req.method as Parameters<typeof app.find>[0], path).handlers[0] as unknown as Served | undefined) ??
      noMatch;
    const starting = opts.starting();
    if (starting === null || path === '/healthz') return route(req, res, path, t0);
    if (path === '/readyz') return notYetReady(req, res, path, t0);
    later(req, res, starting, () => route(req, res, path, t0));
  };

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
    dispatch,
  );
  server.on('connection', admission.admit);
  // A client may half-close once its request is sent: answer it all the same
  // (by default Node drops a response still being prepared when the client's FIN arrives).
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
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
    // Before any route: the parser's reason (an llhttp code), never what the client sent.
    log.debug({ code, status, reason: err.code ?? 'error' }, 'malformed request refused');
    const body = JSON.stringify({ error: code, message });
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
