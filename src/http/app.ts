/**
 * The HTTP server: polka's router with a one-step dispatch, our own error and
 * no-match answers so every answer is `{"error","message"}` JSON, guards
 * before any route runs, and server timeouts so slow clients cannot hold the
 * daemon. No request can crash it: throws and rejections land in onError.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import polka from 'polka';
import { TokendError, httpStatusOf, isErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../main/metrics.js';
import { createGuard, type GuardOptions } from './guards.js';
import { fail, sendError } from './reply.js';
import { routes, type Backend } from './routes.js';

export interface HttpOptions extends GuardOptions {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly backend: Backend;
  readonly isDraining: () => boolean;
  /** While the owner thread is starting: settles once it has loaded the state. */
  readonly starting: () => Promise<void> | null;
}

const STARTED = Symbol('started');
type Timed = IncomingMessage & { path?: string; [STARTED]?: number | undefined };

export function createHttpServer(opts: HttpOptions): Server {
  const table = routes(opts.backend);
  const allowed = new Map<string, string[]>();
  for (const r of table) allowed.set(r.path, [...(allowed.get(r.path) ?? []), r.method]);
  const guard = createGuard(opts);
  const { log } = opts;
  // Request metrics by route index: the table's paths, then 'other' (no route matched).
  const labels = [...allowed.keys(), 'other'];
  const OTHER = labels.length - 1;
  const stats = opts.metrics.trackRequests(labels);

  /** Request timing without a 'finish' listener per request: recorded where each answer is sent. */
  const record = (req: Timed, res: ServerResponse, route: number): void => {
    const t0 = req[STARTED];
    if (t0 === undefined) return;
    req[STARTED] = undefined;
    stats.request(route, res.statusCode, (performance.now() - t0) / 1000);
  };

  const onError = (err: unknown, req: Timed, res: ServerResponse, route: number): void => {
    try {
      answerError(err instanceof Error || typeof err === 'string' ? err : new Error(String(err)), res);
    } finally {
      record(req, res, route);
    }
  };
  const app = polka();

  function answerError(err: string | Error, res: ServerResponse): void {
    const e = typeof err === 'string' ? new Error(err) : err;
    if (e instanceof TokendError || (isErrorCode((e as { code?: unknown }).code) && e instanceof Error)) {
      const te = e as TokendError;
      if (httpStatusOf(te.code) >= 500) log.error({ code: te.code, err: te.message }, 'request failed');
      if (!res.headersSent) sendError(res, { code: te.code, message: te.message });
      return;
    }
    log.error({ err: e.message }, 'unexpected error in request handler');
    if (!res.headersSent) fail(res, 'internal_error', 'internal error');
    else res.destroy();
  }

  /**
   * Guards and timing run inside each route's handler, not as a polka
   * middleware: every step of polka's loop is an async call, and a second
   * step per request cost ~30% of throughput in `npm run bench`.
   * Answers the request and returns true when it must not reach the route.
   */
  const refuse = (req: Timed & { path: string }, res: ServerResponse, route: number): boolean => {
    req[STARTED] = performance.now();
    if (opts.isDraining()) {
      fail(res, 'shutting_down', 'tokend is shutting down', { connection: 'close' });
    } else {
      const refused = guard(req, req.path);
      if (!refused) return false;
      sendError(res, refused);
    }
    record(req, res, route);
    return true;
  };
  /** A route's handler behind the guards, timed; a throw or a rejection lands in onError. */
  const serve =
    (route: number, handler: (req: Timed & { path: string }, res: ServerResponse) => void | Promise<void>) =>
    (req: Timed & { path: string }, res: ServerResponse): void => {
      try {
        if (refuse(req, res, route)) return;
        const out = handler(req, res);
        if (out instanceof Promise) out.then(() => record(req, res, route), (err: unknown) => onError(err, req, res, route));
        else record(req, res, route);
      } catch (err) {
        onError(err, req, res, route);
      }
    };
  for (const r of table) {
    const handler = serve(labels.indexOf(r.path), r.handler);
    if (r.method === 'GET') app.get(r.path, handler);
    else app.post(r.path, handler);
  }
  const noMatch = serve(OTHER, (req, res) => {
    const methods = allowed.get(req.path);
    if (methods) fail(res, 'method_not_allowed', `${req.method} is not allowed on ${req.path}`, { allow: methods.join(', ') });
    else fail(res, 'not_found', `no route ${req.path}`);
  });

  /**
   * polka routes (its router: `app.find`); the request loop is this one.
   * polka's own runs every step as an async call and cost ~35% of GET /token
   * throughput in `npm run bench`, and each tokend route is one handler.
   */
  const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    const r = req as Timed & { path: string };
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    r.path = query === -1 ? url : url.slice(0, query);
    const route = (app.find(req.method as Parameters<typeof app.find>[0], r.path).handlers[0] as ReturnType<typeof serve> | undefined) ?? noMatch;
    const starting = opts.starting();
    if (starting === null || r.path === '/healthz') return route(r, res);
    if (r.path === '/readyz') return notYetReady(r, res);
    void starting.then(() => route(r, res));
  };
  const notYetReady = serve(labels.indexOf('/readyz'), (_req, res) =>
    fail(res, 'not_ready', 'starting: the owner thread is taking the lock and loading the state file'),
  );

  const server = createServer(
    {
      // Slow-loris: a client that trickles its headers or body is cut off.
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
    },
    dispatch,
  );
  // A client may half-close once its request is sent: answer it all the same
  // (by default Node drops a response still being prepared when the client's FIN arrives).
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const body = JSON.stringify({ error: status === 431 ? 'payload_too_large' : 'invalid_request', message: `malformed request (${err.code ?? 'error'})` });
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  return server;
}
