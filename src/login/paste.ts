/**
 * Logging in from anywhere: the authorization arrives either at the callback
 * listener or as the URL the browser landed on, pasted into the terminal.
 *
 * The browser may run on another machine than tokend (an SSH session, a
 * container): its redirect to `http://localhost:8080/...` then fails there,
 * but the address bar holds the whole answer. A pasted URL is held to what
 * the callback listener holds a request to: the redirect URI's scheme, host,
 * port and path, and this login's `state`. A URL for another redirect URI is
 * refused, not accepted with a warning: its code is bound to that redirect
 * URI (RFC 6749 §4.1.3), so the exchange would fail anyway, later and less
 * clearly.
 *
 * A pasted line that is not this login's answer (not a URL, another redirect
 * URI, an earlier login's `state`, no code) is reported in one line and the
 * user may paste again; the provider's error for this login (`error=`) ends
 * the login, as it does at the callback. Nothing here stores anything: the
 * race only returns a code. No message repeats the pasted line: it may hold
 * a code, or whatever else was on the clipboard.
 */
import { TokendError } from '../shared/errors.js';
import { safeUrl } from '../provider/oauth.js';
import { scrubCode, scrubText } from '../provider/provider-text.js';

export interface ExpectedRedirect {
  readonly redirectUri: string;
  readonly state: string;
}

/** Why a pasted line is not this login's answer; the user may paste again. */
export type PasteRefusal = 'not_a_url' | 'other_redirect' | 'wrong_state' | 'no_code';

export type PastedRedirect =
  | { readonly kind: 'code'; readonly code: string }
  | { readonly kind: PasteRefusal; readonly message: string }
  /** The provider's answer to this login was an error: final. `error` is its code, scrubbed (null when it was not one). */
  | { readonly kind: 'provider_error'; readonly error: string | null; readonly message: string };

/** Longest line read as a URL: far above any redirect with a code and state, far below what a stray paste may bring. */
const MAX_LINE = 16 * 1024;

/** The line without surrounding whitespace and one pair of quotes or angle brackets (as terminals and mail clients wrap URLs). */
function unwrap(line: string): string {
  const t = line.trim();
  const m = /^(["'<])(.*)(["'>])$/s.exec(t);
  if (m && ((m[1] === '<' && m[3] === '>') || (m[1] !== '<' && m[1] === m[3]))) return (m[2] ?? '').trim();
  return t;
}

const where = (u: URL): string => `${u.protocol}//${u.host}${u.pathname}`;

/** Read a pasted line as the redirect of this login: the code, or why not, in one line. Pure. */
export function parsePastedRedirect(line: string, expected: ExpectedRedirect): PastedRedirect {
  const text = unwrap(line);
  let url: URL | null = null;
  if (text.length <= MAX_LINE && /^https?:\/\//i.test(text)) {
    try {
      url = new URL(text);
    } catch {
      url = null;
    }
  }
  if (url === null) {
    return {
      kind: 'not_a_url',
      message: "that is not a URL: paste the whole address from the browser's address bar (it starts with http)",
    };
  }
  const target = new URL(expected.redirectUri);
  if (where(url) !== where(target)) {
    return {
      kind: 'other_redirect',
      message: `that URL is not this login's redirect URI: paste the address that starts with ${safeUrl(expected.redirectUri)}`,
    };
  }
  const q = url.searchParams;
  const secrets = [expected.state, ...q.getAll('code')];
  const state = q.get('state');
  const rawError = q.get('error');
  // An error for this login (or one with no state: not every provider repeats it on errors) is the provider's answer.
  if (rawError !== null && (state === null || state === expected.state)) {
    const error = scrubCode(rawError, secrets);
    const description = scrubText(q.get('error_description') ?? '', secrets);
    const hint = error === 'access_denied' ? ' (the request was declined at the provider)' : '';
    return {
      kind: 'provider_error',
      error,
      message: `authorization failed: ${error ?? 'an error that is not an error code'}${description ? `: ${description}` : ''}${hint}`,
    };
  }
  if (state !== expected.state) {
    return {
      kind: 'wrong_state',
      message: "that URL does not belong to this login (its state differs: an earlier or another login's); paste the one from this login",
    };
  }
  const code = q.get('code');
  if (!code) return { kind: 'no_code', message: 'that URL has no code: finish the login in the browser, then paste the address it lands on' };
  return { kind: 'code', code };
}

export interface PasteRace {
  /** The callback listener's code; null when its port could not be bound (then only a pasted URL can answer). */
  readonly callback: Promise<string> | null;
  /** Lines typed or pasted into the terminal. */
  readonly lines: AsyncIterable<string>;
  readonly expected: ExpectedRedirect;
  /** Told, in one line, why a pasted line was not taken; the user may paste again. */
  readonly onProblem: (message: string) => void;
  /** Gives up waiting (Ctrl-C, a timeout): the race rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * The code from whichever answers first with a valid one: the callback
 * listener or a pasted line. A failed callback (wrong state, the provider's
 * error) or the provider's error in a pasted URL rejects; a pasted line that
 * is not this login's answer is reported and the next one read. When the
 * lines end (standard input closed) the callback alone is waited for.
 */
export async function raceCallbackAndPaste(race: PasteRace): Promise<string> {
  const { callback, expected, onProblem, signal } = race;
  signal?.throwIfAborted();
  const lines = race.lines[Symbol.asyncIterator]();
  let settled = false;
  const pasted = (async (): Promise<string> => {
    for (;;) {
      const next = await lines.next();
      if (settled) return new Promise<never>(() => undefined);
      if (next.done) {
        if (callback) return new Promise<never>(() => undefined);
        throw new TokendError('login_failed', 'standard input closed before the URL was pasted, and no callback listener could be started');
      }
      if (next.value.trim() === '') continue;
      const read = parsePastedRedirect(next.value, expected);
      if (read.kind === 'code') return read.code;
      if (read.kind === 'provider_error') throw new TokendError('login_failed', read.message);
      onProblem(read.message);
    }
  })();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal?.reason as Error);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([pasted, aborted, ...(callback ? [callback] : [])]);
  } finally {
    settled = true;
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    pasted.catch(() => undefined);
    aborted.catch(() => undefined);
    // Stop reading the terminal. Not awaited: an async generator's return() waits for its pending next().
    void lines.return?.().catch(() => undefined);
  }
}
