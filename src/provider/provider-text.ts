/**
 * What tokend repeats of a provider's words (error codes, descriptions) goes
 * to logs, HTTP answers and `/state`. A provider that echoes the request would
 * put the refresh token or the client secret there, and one that answers with
 * control characters would write into a terminal. So every repeated word is
 * scrubbed of the secrets sent in that request and of anything that looks
 * like a token, stripped of control characters, and cut short.
 */

const REDACTED = '[redacted]';
/** Longest description repeated, in characters. */
const MAX_TEXT = 200;
/** What an error code looks like (OAuth's `invalid_grant`, Monzo's `unauthorized.bad_refresh_token`). */
const CODE = /^[A-Za-z0-9._-]{1,64}$/;
/** A run of characters a token is made of. */
const RUN = /[A-Za-z0-9._~+/=%-]+/g;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides and marks, lone surrogates. */
const CONTROL =
  /(?:[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff])+/g;

/**
 * The forms a secret takes on the wire: as is, percent-encoded, form-encoded.
 * Shorter secrets are not looked for: replacing every "ab" in a text hides
 * nothing and garbles the rest.
 */
function formsOf(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s.length < 4) continue;
    forms.add(s);
    forms.add(encodeURIComponent(s));
    forms.add(new URLSearchParams({ s }).toString().slice(2));
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

/** A long run of token characters with letters and digits: a token, a key, a hash. A UUID (a request id) is kept. */
function looksLikeToken(run: string): boolean {
  return run.length >= 24 && /[0-9]/.test(run) && /[A-Za-z]/.test(run) && !UUID.test(run);
}

/**
 * `text` with control characters and lone surrogates turned into spaces,
 * every secret (and every long enough piece of one, in case the provider cut
 * or split it) and every token-looking run replaced, and cut to `max`
 * characters. Secrets go before the cut: a cut could leave half of one.
 */
export function scrubText(text: string, secrets: readonly string[], max = MAX_TEXT): string {
  let out = text.replace(CONTROL, ' ');
  const forms = formsOf(secrets);
  for (const form of forms) out = out.split(form).join(REDACTED);
  out = out.replace(RUN, (run) => ((run.length >= 8 && forms.some((f) => f.includes(run))) || looksLikeToken(run) ? REDACTED : run));
  out = out.replace(/\s+/g, ' ').trim();
  return out.length > max ? `${out.slice(0, max - 1)}…` : out;
}

/** A provider's error code, if it still looks like one once scrubbed; else null (the message says the status instead). */
export function scrubCode(code: string | null, secrets: readonly string[]): string | null {
  if (code === null) return null;
  const clean = scrubText(code, secrets, 65);
  return CODE.test(clean) && !clean.includes(REDACTED) ? clean : null;
}

/** Whether `text` holds one of `secrets` in any of its wire forms. */
export function holdsSecret(text: string, secrets: readonly string[]): boolean {
  return formsOf(secrets).some((form) => text.includes(form));
}
