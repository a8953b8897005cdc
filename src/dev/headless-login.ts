/**
 * Complete an authorization request against the local dev provider without a
 * browser: follow its redirects with a cookie jar until it redirects to the
 * redirect URI, and read the code from there. For `tokend dev` only.
 */
import { request } from 'undici';
import { TokendError } from '../shared/errors.js';
import { readCallback } from '../login/flow.js';

export async function headlessAuthorize(authUrl: string, redirectUri: string, state: string): Promise<string> {
  const jar = new Map<string, string>();
  let url = new URL(authUrl);
  for (let hop = 0; hop < 15; hop++) {
    const res = await request(url, {
      headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') },
      signal: AbortSignal.timeout(10_000),
    });
    await res.body.dump();
    const setCookie = res.headers['set-cookie'];
    for (const c of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
      const pair = c.split(';')[0] ?? '';
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const location = res.headers['location'];
    if (res.statusCode < 300 || res.statusCode >= 400 || typeof location !== 'string') {
      throw new TokendError('login_failed', `dev login stopped at ${url.pathname} with HTTP ${res.statusCode}`);
    }
    url = new URL(location, url);
    if (url.toString().startsWith(redirectUri)) return readCallback(url.searchParams, state);
  }
  throw new TokendError('login_failed', 'dev login: too many redirects');
}
