/**
 * Who may ask: DNS rebinding (Host), browser CSRF (Origin), and the API key.
 *
 * A page on evil.example that resolves its name to 127.0.0.1 still sends
 * `Host: evil.example`; a cross-site form POST carries its `Origin`. Both are
 * refused before any route runs. The key is compared in constant time
 * (SHA-256 of both sides, so lengths match too). An origin explicitly allowed
 * gets the CORS headers a browser needs to read the answers, and its
 * preflights (which never carry the key) are answered.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Listen } from '../config/config.js';
import type { ErrorData } from '../shared/errors.js';

export interface GuardOptions {
  readonly listen: Listen;
  readonly apiKey: string | null;
  readonly allowedOrigins: readonly string[];
  readonly allowedHosts: readonly string[];
}

export type Guard = (req: IncomingMessage, path: string) => ErrorData | null;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** The host name of a Host header, without port or IPv6 brackets, lower-cased. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') === -1 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

export function createGuard(opts: GuardOptions): Guard {
  const wildcard = opts.listen.kind === 'tcp' && (opts.listen.host === '0.0.0.0' || opts.listen.host === '::');
  const hosts = new Set(['localhost', '127.0.0.1', '::1', ...opts.allowedHosts.map((h) => h.toLowerCase())]);
  if (opts.listen.kind === 'tcp') hosts.add(opts.listen.host.toLowerCase());
  const origins = new Set(opts.allowedOrigins);
  const key = opts.apiKey === null ? null : digest(opts.apiKey);

  return (req, path) => {
    const host = req.headers.host;
    if (host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) {
      return { code: 'invalid_request', message: 'an HTTP/1.1 request must carry a Host header' };
    }
    // On a wildcard address an API key is required (config refuses otherwise), and it defeats rebinding.
    if (host !== undefined && !wildcard) {
      if (!hosts.has(hostName(host))) return { code: 'forbidden_host', message: 'the Host header does not name this daemon (DNS rebinding?)' };
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !origins.has(origin)) {
      return { code: 'forbidden_origin', message: 'cross-origin requests are refused (set TOKEND_ALLOWED_ORIGINS to allow one)' };
    }
    // A CORS preflight never carries credentials; it reveals only which methods a route has.
    if (key !== null && path !== '/healthz' && req.method !== 'OPTIONS') {
      const auth = req.headers.authorization;
      const given = auth !== undefined && auth.startsWith('Bearer ') ? auth.slice(7) : null;
      if (given === null || !timingSafeEqual(digest(given), key)) {
        return { code: 'unauthorized', message: 'missing or wrong API key (Authorization: Bearer <key>)' };
      }
    }
    return null;
  };
}

/** How long a browser may cache a preflight's answer, in seconds. */
const PREFLIGHT_MAX_AGE = 600;

/**
 * Sets `Access-Control-Allow-Origin` (that exact origin, never `*`) and
 * `Vary: Origin` on the answer to a request from an allowed origin.
 */
export function createCors(allowedOrigins: readonly string[]): (req: IncomingMessage, res: ServerResponse) => void {
  const origins = new Set(allowedOrigins);
  // No origin allowed (the default): nothing to add to any answer, nothing to look at per request.
  if (origins.size === 0) return () => undefined;
  return (req, res) => {
    const origin = req.headers.origin;
    if (origin === undefined || !origins.has(origin)) return;
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
  };
}

/** A browser's CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
export function isPreflight(req: IncomingMessage): boolean {
  return req.method === 'OPTIONS' && req.headers.origin !== undefined && req.headers['access-control-request-method'] !== undefined;
}

/** The headers of a preflight's 204 for a route that takes `methods` (the origin was checked by the guard). */
export function preflightHeaders(methods: readonly string[]): Record<string, string> {
  return {
    'access-control-allow-methods': methods.join(', '),
    'access-control-allow-headers': 'Authorization, Content-Type, Last-Event-ID',
    'access-control-max-age': String(PREFLIGHT_MAX_AGE),
  };
}
