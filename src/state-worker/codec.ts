/**
 * The state file's layout: what tokend reads and writes, and what it keeps.
 *
 * Unknown top-level keys belong to other tools and are carried through every
 * write untouched. The older layout (`monzoAccessToken`/`monzoRefreshToken`,
 * no expiry) is read, and when a file has it, those keys are kept current so
 * programs that read them keep working.
 */
import * as v from 'valibot';
import { describeIssues } from '../validation.js';
import { TokendError } from '../errors.js';

export interface StoredTokens {
  readonly accessToken: string;
  readonly refreshToken: string | null;
  readonly tokenType: string;
  readonly scope: string | null;
  readonly expiresAtMs: number | null;
  readonly obtainedAtMs: number | null;
  readonly provider: string | null;
  /** Provider fields worth keeping (Monzo's user_id, client_id). */
  readonly account: Readonly<Record<string, string>>;
}

export interface RefreshIntent {
  /** Fingerprint of the refresh token being redeemed. */
  readonly refreshFingerprint: string;
  readonly startedAtMs: number;
}

export interface StoredState {
  readonly version: number;
  readonly tokens: StoredTokens | null;
  readonly intent: RefreshIntent | null;
  /** Whether the file uses (or used) the older Monzo keys. */
  readonly legacyKeys: boolean;
}

export const emptyState: StoredState = { version: 0, tokens: null, intent: null, legacyKeys: false };

/** Keys tokend owns; every other key is someone else's and is preserved. */
const ownKeys = new Set([
  'access_token',
  'refresh_token',
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

const isoDate = v.pipe(
  v.string(),
  v.check((s) => !Number.isNaN(Date.parse(s)), 'not an ISO-8601 date'),
);
const nonEmpty = v.pipe(v.string(), v.minLength(1));
const opt = <T extends v.GenericSchema>(schema: T) => v.optional(schema);
const optNull = <T extends v.GenericSchema>(schema: T) => v.optional(v.nullable(schema));

const fileSchema = v.looseObject({
  access_token: opt(nonEmpty),
  refresh_token: optNull(nonEmpty),
  token_type: opt(v.string()),
  scope: optNull(v.string()),
  expires_at: optNull(isoDate),
  obtained_at: optNull(isoDate),
  provider: optNull(v.string()),
  user_id: opt(v.string()),
  client_id: opt(v.string()),
  state_version: opt(v.pipe(v.number(), v.integer(), v.minValue(0))),
  refresh_intent: optNull(v.object({ refresh_token_fingerprint: v.string(), started_at: isoDate })),
  monzoAccessToken: opt(nonEmpty),
  monzoRefreshToken: opt(nonEmpty),
});

export type RawFile = Record<string, unknown>;

/** Decode the file's text. Throws `state_corrupt` naming the problem, never the values. */
export function decodeState(text: string, path: string): { state: StoredState; raw: RawFile } {
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
  const result = v.safeParse(fileSchema, parsed);
  if (!result.success) throw new TokendError('state_corrupt', `state file ${path} has invalid fields: ${describeIssues(result.issues)}`);
  const f = result.output;
  const legacyKeys = f.monzoAccessToken !== undefined || f.monzoRefreshToken !== undefined;
  const accessToken = f.access_token ?? f.monzoAccessToken;
  const refreshToken = f.refresh_token ?? f.monzoRefreshToken ?? null;
  const account: Record<string, string> = {};
  for (const key of accountKeys) {
    const value = f[key];
    if (value !== undefined) account[key] = value;
  }
  let tokens: StoredTokens | null = null;
  if (accessToken !== undefined) {
    // With only the older keys, nothing says when the token expires: refresh at start.
    const fromNewKeys = f.access_token !== undefined;
    tokens = {
      accessToken,
      refreshToken,
      tokenType: f.token_type ?? 'Bearer',
      scope: f.scope ?? null,
      expiresAtMs: fromNewKeys && f.expires_at ? Date.parse(f.expires_at) : null,
      obtainedAtMs: fromNewKeys && f.obtained_at ? Date.parse(f.obtained_at) : null,
      provider: f.provider ?? null,
      account,
    };
  } else if (refreshToken !== null) {
    tokens = {
      accessToken: '',
      refreshToken,
      tokenType: 'Bearer',
      scope: f.scope ?? null,
      expiresAtMs: null,
      obtainedAtMs: null,
      provider: f.provider ?? null,
      account,
    };
  }
  const intent = f.refresh_intent
    ? { refreshFingerprint: f.refresh_intent.refresh_token_fingerprint, startedAtMs: Date.parse(f.refresh_intent.started_at) }
    : null;
  return { state: { version: f.state_version ?? 0, tokens, intent, legacyKeys }, raw: parsed as RawFile };
}

/** The keys of `raw` that belong to other tools. */
export function foreignKeys(raw: RawFile): RawFile {
  const out: RawFile = {};
  for (const [key, value] of Object.entries(raw)) if (!ownKeys.has(key)) out[key] = value;
  return out;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** Encode `state` over the foreign keys of the file it replaces. */
export function encodeState(state: StoredState, foreign: RawFile): string {
  const out: RawFile = { ...foreign };
  const t = state.tokens;
  if (t) {
    if (t.accessToken !== '') out['access_token'] = t.accessToken;
    out['refresh_token'] = t.refreshToken;
    out['token_type'] = t.tokenType;
    out['scope'] = t.scope;
    out['expires_at'] = iso(t.expiresAtMs);
    out['obtained_at'] = iso(t.obtainedAtMs);
    out['provider'] = t.provider;
    for (const [key, value] of Object.entries(t.account)) out[key] = value;
    if (state.legacyKeys) {
      if (t.accessToken !== '') out['monzoAccessToken'] = t.accessToken;
      if (t.refreshToken !== null) out['monzoRefreshToken'] = t.refreshToken;
    }
  }
  out['state_version'] = state.version;
  out['refresh_intent'] = state.intent
    ? { refresh_token_fingerprint: state.intent.refreshFingerprint, started_at: new Date(state.intent.startedAtMs).toISOString() }
    : null;
  return `${JSON.stringify(out, null, 2)}\n`;
}
