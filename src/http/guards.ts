/**
 * Who may ask: DNS rebinding (Host), browser CSRF (Origin), and the API key.
 *
 * A page on evil.example that resolves its name to 127.0.0.1 still sends
 * `Host: evil.example`; a cross-site form POST carries its `Origin`. Both are
 * refused before any route runs. The key is compared in constant time
 * (SHA-256 of both sides, so lengths match too).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Listen } from '../main/config.js';
import type { ErrorData } from '../errors.js';

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
  // Clients send the same Host header on every request: remember the last verdict.
  let lastHost: string | undefined;
  let lastHostAllowed = false;

  return (req, path) => {
    const host = req.headers.host;
    // On a wildcard address an API key is required (config refuses otherwise), and it defeats rebinding.
    if (host !== undefined && !wildcard) {
      if (host !== lastHost) {
        lastHostAllowed = hosts.has(hostName(host));
        lastHost = host;
      }
      if (!lastHostAllowed) return { code: 'forbidden_host', message: 'the Host header does not name this daemon (DNS rebinding?)' };
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !origins.has(origin)) {
      return { code: 'forbidden_origin', message: 'cross-origin requests are refused (set TOKEND_ALLOWED_ORIGINS to allow one)' };
    }
    if (key !== null && path !== '/healthz') {
      const auth = req.headers.authorization;
      const given = auth !== undefined && auth.startsWith('Bearer ') ? auth.slice(7) : null;
      if (given === null || !timingSafeEqual(digest(given), key)) {
        return { code: 'unauthorized', message: 'missing or wrong API key (Authorization: Bearer <key>)' };
      }
    }
    return null;
  };
}
