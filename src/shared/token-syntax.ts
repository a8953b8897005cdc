/**
 * What a token may look like, for both doors it comes in by: a provider's
 * answer (oauth.ts) and `POST /set-tokens` (routes.ts).
 */

/** RFC 6750 b64token: what may follow `Bearer ` in a header (access tokens are served in headers and environments). */
export const B64TOKEN = /^[A-Za-z0-9._~+/-]+=*$/;

/** RFC 6749 (appendix A) refresh-token: 1*VSCHAR, visible ASCII and space. */
export const REFRESH_TOKEN = /^[\x20-\x7e]+$/;

/** Far above any real token (servers cap a header at 8–16 KiB), far below the 1 MiB body cap. */
export const MAX_TOKEN_CHARS = 64 * 1024;

/** Lifetimes tokend will store: shorter would refresh more than once a second, longer cannot be written as a date for long. */
export const LIFETIME = { defaultSec: 3600, minSec: 2, maxSec: 10 * 365 * 86_400 } as const;
