/**
 * Whose daemon is listening, before the client sends it anything. The daemon
 * checks who connects (the same-user rule); the client checks who listens:
 * while tokend is down, another user may bind its port or put a socket at
 * its path, and would then receive the API key, `tokend set`'s refresh token,
 * and answer with a token of their own.
 */
import { lstatSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { replaceableProblem } from '../shared/fs-safety.js';
import { tableAddress, TCP_TABLES } from '../shared/proc-net.js';

/** A listening socket in /proc/net/tcp{,6}. */
const LISTEN = '0A';

/** The uids a client trusts to run the daemon: its own, root, and those in TOKEND_TRUSTED_UIDS. */
function trustedUids(env: NodeJS.ProcessEnv): Set<number> {
  const own = process.getuid?.() ?? 0;
  const extra = (env['TOKEND_TRUSTED_UIDS'] ?? '')
    .split(',')
    .filter((s) => /^\d+$/.test(s.trim()))
    .map(Number);
  return new Set([own, 0, ...extra]);
}

/** Why the client must not talk to `where` (`HOST:PORT`, `http://…` or `unix:/path`), or null when it may (or cannot tell). */
export function listenerProblem(where: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const trusted = trustedUids(env);
  if (where.startsWith('unix:')) return socketProblem(where.slice(5), trusted);
  let url: URL;
  try {
    url = new URL(/^https?:\/\//.test(where) ? where : `http://${where}`);
  } catch {
    return null;
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const addresses = host === 'localhost' ? ['127.0.0.1', '::1'] : [host];
  for (const address of addresses) {
    const uid = listenerUid(address, port);
    if (uid !== null && !trusted.has(uid)) {
      return `the listener on ${where} belongs to uid ${uid}, not to you or root: refusing to send it anything (set TOKEND_TRUSTED_UIDS if that user runs your daemon)`;
    }
  }
  return null;
}

/** The uid of the socket listening on `address:port` (or on the wildcard address), or null when none is found or the tables cannot be read. */
function listenerUid(address: string, port: number): number | null {
  for (const family of ['IPv4', 'IPv6'] as const) {
    let table: string;
    try {
      table = readFileSync(TCP_TABLES[family], 'latin1');
    } catch {
      continue;
    }
    const exact = tableAddress(address, port, family);
    const wildcard = tableAddress(family === 'IPv4' ? '0.0.0.0' : '::', port, family);
    for (const line of table.split('\n')) {
      // sl local remote st tx:rx tr:when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      if (fields[3] !== LISTEN || (fields[1] !== exact && fields[1] !== wildcard) || !/^\d+$/.test(fields[7] ?? '')) continue;
      return Number(fields[7]);
    }
  }
  return null;
}

function socketProblem(path: string, trusted: ReadonlySet<number>): string | null {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return null; // nothing there: connecting fails on its own
  }
  if (!st.isSocket()) return `${path} is not a socket`;
  if (!trusted.has(st.uid)) return `the socket ${path} belongs to uid ${st.uid}, not to you or root: refusing to send it anything`;
  const dirProblem = replaceableProblem(dirname(path), trusted);
  if (dirProblem) return `the socket ${path} could be swapped for another's (${dirProblem}): refusing to send it anything`;
  return null;
}
