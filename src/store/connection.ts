/**
 * The store's connection string, and the rule that its password never leaves
 * it: every message names the database by `display` (user, host, port and
 * database, no password, no query), and every error text from the driver is
 * passed through `scrub` before it reaches an error or a log line, as a second
 * fence. A driver error is never attached as a `cause`: a URL parser's error
 * carries the whole input, password included.
 */
import { TokendError } from '../shared/errors.js';

export interface StoreConnection {
  /** What the driver is given. */
  readonly connectionString: string;
  /** The database without secrets, for messages: `postgres://tokend@db.example:5432/tokend`. */
  readonly display: string;
  /** Replace every secret of the connection string in `text` with `***`. */
  scrub(text: string): string;
}

/** Query parameters that carry secrets (libpq's and node-postgres's names). */
const secretParams = ['password', 'sslpassword', 'sslkey', 'sslcert', 'sslrootcert'];

/** Parse `postgres://` or `postgresql://` URLs; anything else is `config_invalid`, named without its secrets. */
export function parseConnection(connectionString: string): StoreConnection {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    // Not echoed at all: without a URL's structure there is no telling where the password ends.
    throw new TokendError('config_invalid', 'store: not a valid postgres:// URL');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new TokendError('config_invalid', `store: expected a postgres:// URL, got ${url.protocol}//…`);
  }
  const secrets = new Set<string>();
  const addSecret = (s: string): void => {
    if (s === '') return;
    secrets.add(s);
    try {
      secrets.add(decodeURIComponent(s));
    } catch {
      // not percent-encoded
    }
    secrets.add(encodeURIComponent(s));
  };
  addSecret(url.password);
  for (const key of secretParams) for (const value of url.searchParams.getAll(key)) addSecret(value);
  // Longest first, so a secret that contains another is replaced whole.
  const ordered = [...secrets].sort((a, b) => b.length - a.length);
  const scrub = (text: string): string => ordered.reduce((t, s) => t.split(s).join('***'), text);
  const user = url.username ? `${url.username}@` : '';
  const display = `${url.protocol}//${user}${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  return { connectionString, display: scrub(display), scrub };
}
