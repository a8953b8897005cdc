/**
 * The HTTP server: polka for routing, our own onError/onNoMatch so every
 * answer is `{"error","message"}` JSON, guards before any route, and server
 * timeouts so slow clients cannot hold the daemon. No request can crash it:
 * handler throws and rejections land in onError.
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
}

export function createHttpServer(opts: HttpOptions): Server {
  const table = routes(opts.backend);
  const allowed = new Map<string, string[]>();
  for (const r of table) allowed.set(r.path, [...(allowed.get(r.path) ?? []), r.method]);
  const guard = createGuard(opts);
  const { log, metrics } = opts;

  const app = polka({
    onError(err, _req, res) {
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
    },
    onNoMatch(req, res) {
      const methods = allowed.get(req.path);
      if (methods) return fail(res, 'method_not_allowed', `${req.method} is not allowed on ${req.path}`, { allow: methods.join(', ') });
      fail(res, 'not_found', `no route ${req.path}`);
    },
  });

  app.use((req, res, next) => {
    const started = performance.now();
    const route = allowed.has(req.path) ? req.path : 'other';
    res.once('finish', () => metrics.request(route, res.statusCode, (performance.now() - started) / 1000));
    if (opts.isDraining()) return fail(res, 'shutting_down', 'tokend is shutting down', { connection: 'close' });
    const refused = guard(req, req.path);
    if (refused) return sendError(res, refused);
    return next();
  });
  for (const r of table) {
    if (r.method === 'GET') app.get(r.path, r.handler);
    else app.post(r.path, r.handler);
  }

  const server = createServer(
    {
      // Slow-loris: a client that trickles its headers or body is cut off.
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 16 * 1024,
    },
    app.handler as unknown as (req: IncomingMessage, res: ServerResponse) => void,
  );
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
