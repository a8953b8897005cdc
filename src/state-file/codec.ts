/**
 * The state file's layout: what tokend reads and writes, and what it keeps.
 *
 * Unknown top-level keys belong to other tools and are carried through every
 * write untouched. The older layout (`monzoAccessToken`/`monzoRefreshToken`,
 * no expiry) is read, and when a file has it, those keys are kept current so
 * programs that read them keep working.
 *
 * Nothing in a file can make a later write fail: dates are refused at load
 * when they lie outside what a Date can hold, and clamped at encode;
 * `state_version` is bounded far below 2^53 so it can always be incremented;
 * and the keys of other tools live in null-prototype objects, so a
 * `__proto__` key is an ordinary key that survives every write.
 */
import { TokendError } from '../shared/errors.js';

/** Fields every held login has, whatever else is known. */
interface HeldTokens {
  readonly provider: string | null;
  readonly scope: string | null;
  /** Provider fields worth keeping (Monzo's user_id, client_id). */
  readonly account: Readonly<Record<string, string>>;
  /**
   * The refresh token that `refreshToken` replaced (set by hand, or rotated by
   * a refused answer), kept until `refreshToken` has been redeemed once: if
   * the new one is refused, the old one is tried before giving up the login.
   */
  readonly replacedRefreshToken: string | null;
}

/** A refresh token and no access token (a file written by another tool): refreshed at start. */
export interface RefreshOnlyTokens extends HeldTokens {
  readonly kind: 'refresh_only';
  readonly refreshToken: string;
}

/** An access token, with a refresh token when the provider gave one. */
export interface ActiveTokens extends HeldTokens {
  readonly kind: 'active';
  readonly accessToken: string;
  readonly refreshToken: string | null;
  readonly tokenType: string;
  /** null: unknown (the older layout), refreshed at start. */
  readonly expiresAtMs: number | null;
  readonly obtainedAtMs: number | null;
}

/** What the state file holds of the login. */
export type TokenState = { readonly kind: 'none' } | RefreshOnlyTokens | ActiveTokens;

export const noTokens: TokenState = { kind: 'none' };

/** The refresh token held, if any. */
export function refreshTokenOf(t: TokenState): string | null {
  return t.kind === 'none' ? null : t.refreshToken;
}

export interface RefreshIntent {
  /** Fingerprint of the refresh token being redeemed. */
  readonly refreshFingerprint: string;
  readonly startedAtMs: number;
}

export interface StoredState {
  readonly version: number;
  readonly tokens: TokenState;
  readonly intent: RefreshIntent | null;
  /** Whether the file uses (or used) the older Monzo keys. */
  readonly legacyKeys: boolean;
}

export const emptyState: StoredState = { version: 0, tokens: noTokens, intent: null, legacyKeys: false };

/** Keys tokend owns; every other key is someone else's and is preserved. */
const ownKeys = new Set([
  'access_token',
  'refresh_token',
  'replaced_refresh_token',
  'token_type',
  'scope',
  'expires_at',
  'obtained_at',
  'provider',
  'user_id',
  'client_id',
  'state_version',
  'refresh_intent',
  'monzoAccessToken',
  'monzoRefreshToken',
]);
const accountKeys = ['user_id', 'client_id'] as const;

/** Larger versions are refused at load: the version must stay an integer that can be incremented and written. */
export const MAX_STATE_VERSION = 2 ** 48;
/** The range of a JavaScript Date (±100,000,000 days around the epoch). */
const MAX_DATE_MS = 8.64e15;

/**
 * The fields tokend reads, each with its check: a problem in words, or null.
 * Written out rather than with the schema library: the client library reads
 * state files too, and a reader of one small file should not carry a
 * validator with it.
 */
type Check = (value: unknown) => string | null;
const isString: Check = (x) => (typeof x === 'string' ? null : 'must be a string');
const nonEmpty: Check = (x) => isString(x) ?? (x === '' ? 'must not be empty' : null);
const isoDate: Check = (x) => isString(x) ?? (Number.isNaN(Date.parse(x as string)) ? 'not an ISO-8601 date between the years -271821 and 275760' : null);
const orNull =
  (check: Check): Check =>
  (x) =>
    x === null ? null : check(x);
const stateVersion: Check = (x) => {
  if (typeof x !== 'number' || !Number.isInteger(x)) return 'must be a whole number';
  if (x < 0) return 'must be at least 0';
  return x > MAX_STATE_VERSION ? `must be at most ${MAX_STATE_VERSION}` : null;
};
const isObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
const intentChecks: Record<string, Check> = { refresh_token_fingerprint: isString, started_at: isoDate };

const fieldChecks: Record<string, Check> = {
  access_token: nonEmpty,
  refresh_token: orNull(nonEmpty),
  replaced_refresh_token: orNull(nonEmpty),
  token_type: isString,
  scope: orNull(isString),
  expires_at: orNull(isoDate),
  obtained_at: orNull(isoDate),
  provider: orNull(isString),
  user_id: isString,
  client_id: isString,
  state_version: stateVersion,
  monzoAccessToken: nonEmpty,
  monzoRefreshToken: nonEmpty,
};

/** The file's fields once checked (an absent key is undefined). */
interface FileFields {
  readonly access_token?: string;
  readonly refresh_token?: string | null;
  readonly replaced_refresh_token?: string | null;
  readonly token_type?: string;
  readonly scope?: string | null;
  readonly expires_at?: string | null;
  readonly obtained_at?: string | null;
  readonly provider?: string | null;
  readonly user_id?: string;
  readonly client_id?: string;
  readonly state_version?: number;
  readonly refresh_intent?: { readonly refresh_token_fingerprint: string; readonly started_at: string } | null;
  readonly monzoAccessToken?: string;
  readonly monzoRefreshToken?: string;
}

/** Every problem with the fields, `key: what is wrong` (never the value), or none. */
function fieldProblems(file: RawFile): string[] {
  const problems: string[] = [];
  for (const [key, check] of Object.entries(fieldChecks)) {
    const value = file[key];
    const problem = value === undefined ? null : check(value);
    if (problem !== null) problems.push(`${key}: ${problem}`);
  }
  const intent = file['refresh_intent'];
  if (intent !== undefined && intent !== null) {
    if (!isObject(intent)) problems.push('refresh_intent: must be an object');
    else
      for (const [key, check] of Object.entries(intentChecks)) {
        const problem = intent[key] === undefined ? 'is missing' : check(intent[key]);
        if (problem !== null) problems.push(`refresh_intent.${key}: ${problem}`);
      }
  }
  return problems;
}

export type RawFile = Record<string, unknown>;

/** Deeper nesting is refused before anything recursive (parse, validation, stringify) sees it. */
export const MAX_NESTING = 64;

/** How deeply the arrays and objects of a JSON text nest, counted without parsing it. Stops counting past `limit`. */
export function jsonNesting(text: string, limit = MAX_NESTING): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** Parse the file's text as a JSON object, within the nesting bound. Throws `state_corrupt` naming the problem. */
export function parseStateObject(text: string, path: string): RawFile {
  if (jsonNesting(text) > MAX_NESTING) throw new TokendError('state_corrupt', `state file ${path} nests deeper than ${MAX_NESTING} levels`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    const what = text.trim() === '' ? 'is empty (truncated?)' : 'is not valid JSON (truncated or corrupt?)';
    throw new TokendError('state_corrupt', `state file ${path} ${what}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new TokendError('state_corrupt', `state file ${path} does not hold a JSON object`);
  }
  return parsed as RawFile;
}

/** Decode the file's text. Throws `state_corrupt` naming the problem, never the values. */
export function decodeState(text: string, path: string): { state: StoredState; raw: RawFile } {
  const parsed = parseStateObject(text, path);
  const problems = fieldProblems(parsed);
  if (problems.length > 0) throw new TokendError('state_corrupt', `state file ${path} has invalid fields: ${problems.join('; ')}`);
  const f = parsed as FileFields;
  const legacyKeys = f.monzoAccessToken !== undefined || f.monzoRefreshToken !== undefined;
  const accessToken = f.access_token ?? f.monzoAccessToken;
  const refreshToken = f.refresh_token ?? f.monzoRefreshToken ?? null;
  const replacedRefreshToken = refreshToken === null ? null : (f.replaced_refresh_token ?? null);
  const account: Record<string, string> = {};
  for (const key of accountKeys) {
    const value = f[key];
    if (value !== undefined) account[key] = value;
  }
  let tokens: TokenState = noTokens;
  if (accessToken !== undefined) {
    // With only the older keys, nothing says when the token expires: refresh at start.
    const fromNewKeys = f.access_token !== undefined;
    tokens = {
      kind: 'active',
      accessToken,
      refreshToken,
      replacedRefreshToken,
      tokenType: f.token_type ?? 'Bearer',
      scope: f.scope ?? null,
      expiresAtMs: fromNewKeys && f.expires_at ? Date.parse(f.expires_at) : null,
      obtainedAtMs: fromNewKeys && f.obtained_at ? Date.parse(f.obtained_at) : null,
      provider: f.provider ?? null,
      account,
    };
  } else if (refreshToken !== null) {
    tokens = { kind: 'refresh_only', refreshToken, replacedRefreshToken, scope: f.scope ?? null, provider: f.provider ?? null, account };
  }
  const intent = f.refresh_intent
    ? { refreshFingerprint: f.refresh_intent.refresh_token_fingerprint, startedAtMs: Date.parse(f.refresh_intent.started_at) }
    : null;
  return { state: { version: f.state_version ?? 0, tokens, intent, legacyKeys }, raw: parsed };
}

/**
 * The keys of `raw` that belong to other tools, in a null-prototype object:
 * assigning `__proto__` to an ordinary object sets its prototype instead of
 * a key, and the key would vanish from the next write.
 */
export function foreignKeys(raw: RawFile): RawFile {
  const out: RawFile = Object.create(null) as RawFile;
  for (const [key, value] of Object.entries(raw)) if (!ownKeys.has(key)) out[key] = value;
  return out;
}

/** `ms` moved into the range a Date can hold (NaN becomes null): an absurd time never makes a write fail. */
export function clampTimeMs(ms: number | null): number | null {
  if (ms === null || Number.isNaN(ms)) return null;
  return Math.min(MAX_DATE_MS, Math.max(-MAX_DATE_MS, ms));
}

/** ISO-8601 of `ms`, clamped into the range a Date can hold; null for none. */
export const iso = (ms: number | null): string | null => {
  const clamped = clampTimeMs(ms);
  return clamped === null ? null : new Date(clamped).toISOString();
};

/** Encode `state` over the foreign keys of the file it replaces. Never throws for any state. */
export function encodeState(state: StoredState, foreign: RawFile): string {
  const out: RawFile = Object.create(null) as RawFile;
  for (const [key, value] of Object.entries(foreign)) out[key] = value;
  const t = state.tokens;
  if (t.kind !== 'none') {
    // A refresh-only login has the same keys, its access token's absent or null: one shape for readers of the file.
    const access = t.kind === 'active' ? t : null;
    if (access) out['access_token'] = access.accessToken;
    out['refresh_token'] = t.refreshToken;
    if (t.replacedRefreshToken !== null) out['replaced_refresh_token'] = t.replacedRefreshToken;
    out['token_type'] = access?.tokenType ?? 'Bearer';
    out['scope'] = t.scope;
    out['expires_at'] = iso(access?.expiresAtMs ?? null);
    out['obtained_at'] = iso(access?.obtainedAtMs ?? null);
    out['provider'] = t.provider;
    for (const [key, value] of Object.entries(t.account)) out[key] = value;
    if (state.legacyKeys) {
      if (access) out['monzoAccessToken'] = access.accessToken;
      if (t.refreshToken !== null) out['monzoRefreshToken'] = t.refreshToken;
    }
  }
  out['state_version'] = state.version;
  out['refresh_intent'] = state.intent
    ? { refresh_token_fingerprint: state.intent.refreshFingerprint, started_at: iso(state.intent.startedAtMs) ?? new Date(0).toISOString() }
    : null;
  return `${JSON.stringify(out, null, 2)}\n`;
}
