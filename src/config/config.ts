/**
 * Configuration, parsed once at the edge into one frozen `Config`.
 *
 * Precedence: flag > environment > default. Every problem is collected and
 * reported on its own line naming the option; nothing starts until the
 * whole configuration is valid (exit 2).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import type { ClientAuthMethod } from '../shared/contract.js';
import { insecureEndpoint } from '../shared/endpoint.js';
import { DEFAULT_LISTEN, defaultStateFile } from '../state-file/paths.js';

export type Listen = { readonly kind: 'tcp'; readonly host: string; readonly port: number } | { readonly kind: 'unix'; readonly path: string };

export interface ProviderConfig {
  readonly name: 'monzo' | 'oidc' | 'custom';
  readonly issuer: string | null;
  readonly authUrl: string | null;
  readonly tokenUrl: string | null;
  readonly clientId: string | null;
  readonly clientSecret: string | null;
  readonly authMethod: ClientAuthMethod | null;
  readonly scope: string | null;
  readonly redirectUri: string;
}

export interface Config {
  readonly provider: ProviderConfig;
  readonly stateFile: string;
  readonly listen: Listen;
  readonly apiKey: string | null;
  readonly logLevel: string;
  readonly allowedOrigins: readonly string[];
  readonly allowedHosts: readonly string[];
  /** Users besides tokend's own and root served on a keyless loopback TCP listener. */
  readonly allowedUids: readonly number[];
  /** Open client connections at most; lowered at start to fit the open-file limit. */
  readonly maxConnections: number;
  /** `GET /events` subscribers at most; lowered at start to fit the connection cap. */
  readonly maxEventClients: number;
  readonly wakeIntervalMs: number;
  readonly upstreamTimeoutMs: number;
  readonly shutdownTimeoutMs: number;
  readonly moveCorruptAside: boolean;
}

/** Option name (as a flag, camelCase) → environment variables, first found wins. */
export const envNames = {
  provider: ['TOKEND_PROVIDER'],
  issuer: ['TOKEND_ISSUER'],
  authUrl: ['TOKEND_AUTH_URL'],
  tokenUrl: ['TOKEND_TOKEN_URL'],
  clientId: ['TOKEND_CLIENT_ID', 'monzo_client_id'],
  clientSecret: ['TOKEND_CLIENT_SECRET', 'monzo_client_secret'],
  clientSecretFile: ['TOKEND_CLIENT_SECRET_FILE'],
  authMethod: ['TOKEND_TOKEN_AUTH_METHOD'],
  scope: ['TOKEND_SCOPE'],
  redirectUri: ['TOKEND_REDIRECT_URI'],
  stateFile: ['TOKEND_STATE_FILE', 'store_path'],
  listen: ['TOKEND_LISTEN'],
  apiKey: ['TOKEND_API_KEY'],
  apiKeyFile: ['TOKEND_API_KEY_FILE'],
  logLevel: ['TOKEND_LOG_LEVEL'],
  allowedOrigins: ['TOKEND_ALLOWED_ORIGINS'],
  allowedHosts: ['TOKEND_ALLOWED_HOSTS'],
  allowedUids: ['TOKEND_ALLOWED_UIDS'],
  maxConnections: ['TOKEND_MAX_CONNECTIONS'],
  maxEventClients: ['TOKEND_MAX_EVENT_CLIENTS'],
  wakeInterval: ['TOKEND_WAKE_INTERVAL_MS'],
  upstreamTimeout: ['TOKEND_UPSTREAM_TIMEOUT_MS'],
  shutdownTimeout: ['TOKEND_SHUTDOWN_TIMEOUT_MS'],
} as const;

export type OptionName = keyof typeof envNames;
export type RawOptions = Partial<Record<OptionName, string | undefined>> & { moveCorruptAside?: boolean };

/** The flag that sets an option, for messages: `clientId` → `--client-id`. */
export const flagOf = (name: OptionName): string => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Each provider's endpoints, client authentication and scope unless configured. */
export const presets = {
  monzo: { authUrl: 'https://auth.monzo.com/', tokenUrl: 'https://api.monzo.com/oauth2/token', authMethod: 'client_secret_post', scope: null },
  oidc: { authUrl: null, tokenUrl: null, authMethod: null, scope: 'openid offline_access' },
  custom: { authUrl: null, tokenUrl: null, authMethod: null, scope: null },
} as const;

export { DEFAULT_LISTEN, defaultStateFile };
export const DEFAULT_REDIRECT_URI = 'http://localhost:8080/authorization-code';

export function parseListen(value: string): Listen | string {
  if (value.startsWith('unix:')) {
    const path = value.slice(5);
    return path === '' ? 'unix: needs a path, as in unix:/run/tokend.sock' : { kind: 'unix', path: resolve(path) };
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return `"${value}" is not HOST:PORT or unix:/path`;
  const port = Number(m[3]!);
  if (port > 65535) return `port ${port} is out of range`;
  // One alternative or the other matched.
  const host = (m[1] ?? m[2])!;
  // A name would be resolved only at listen (and could change between starts): an address says where.
  if (host !== 'localhost' && isIP(host) === 0) return `"${host}" is not an IP address or localhost`;
  return { kind: 'tcp', host, port };
}

export function formatListen(listen: Listen): string {
  if (listen.kind === 'unix') return `unix:${listen.path}`;
  return listen.host.includes(':') ? `[${listen.host}]:${listen.port}` : `${listen.host}:${listen.port}`;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host);
}

export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_MAX_EVENT_CLIENTS = 512;

/** The numeric options: default and accepted range (milliseconds for the times). */
export const numericOptions = {
  wakeInterval: { fallback: 15_000, min: 50, max: 300_000 },
  upstreamTimeout: { fallback: 15_000, min: 100, max: 300_000 },
  shutdownTimeout: { fallback: 10_000, min: 0, max: 120_000 },
  maxConnections: { fallback: DEFAULT_MAX_CONNECTIONS, min: 2, max: 1_000_000 },
  maxEventClients: { fallback: DEFAULT_MAX_EVENT_CLIENTS, min: 1, max: 1_000_000 },
} as const satisfies Partial<Record<OptionName, { fallback: number; min: number; max: number }>>;
export type NumericOption = keyof typeof numericOptions;

/** (uid_t)-1 means "no user" to the kernel. */
export const MAX_UID = 2 ** 32 - 2;

/**
 * An API key clients can send as `Authorization: Bearer <key>` and that is
 * hard to guess: 16 or more visible ASCII characters. A key with spaces or
 * other characters no header carries intact could never match.
 */
export function isApiKey(key: string): boolean {
  return key.length >= 16 && /^[\x21-\x7e]+$/.test(key);
}

/**
 * A browser origin as browsers send it: an http(s) scheme, host and port. Not
 * `null` (sandboxed frames, file: pages: anyone can be one) nor `*`.
 */
export function isOrigin(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === value;
  } catch {
    return false;
  }
}

/** Plain decimal digits only: `Number()` would also take `1e3`, `0x3e8` and `" 1000"`. */
export function parseDecimal(value: string): number | null {
  if (!/^\d{1,15}$/.test(value)) return null;
  return Number(value);
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

export function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}
export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Pick flag, then the environment. Empty strings count as unset. */
export function pick(name: OptionName, flags: RawOptions, env: NodeJS.ProcessEnv): { value: string; from: string } | null {
  const flag = flags[name];
  if (flag !== undefined && flag !== '') return { value: flag, from: flagOf(name) };
  for (const key of envNames[name]) {
    const v = env[key];
    if (v !== undefined && v !== '') return { value: v, from: key };
  }
  return null;
}

/** How a problem names an option: `TOKEND_CLIENT_ID (--client-id)`. */
export const optionLabel = (name: OptionName): string => `${envNames[name][0]} (${flagOf(name)})`;

/** The secret held in `file`, trimmed, or why there is none to use (the path and the reason, never the content). */
export function readSecretFile(file: string): { readonly value: string } | { readonly problem: string } {
  try {
    const value = readFileSync(file, 'utf8').trim();
    return value === '' ? { problem: `${file} is empty` } : { value };
  } catch (err) {
    return { problem: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

export interface LoadOptions {
  /** Whether this command talks to the provider (serve, login): then provider settings must be complete. */
  readonly needsProvider: boolean;
}

export function loadConfig(flags: RawOptions, env: NodeJS.ProcessEnv, opts: LoadOptions): Config {
  const problems: string[] = [];
  const get = (name: OptionName): string | null => pick(name, flags, env)?.value ?? null;
  const label = optionLabel;

  const providerName = get('provider') ?? 'monzo';
  if (!(providerName in presets)) problems.push(`${label('provider')}: must be monzo, oidc or custom, not "${providerName}"`);
  const preset = presets[providerName as keyof typeof presets] ?? presets.custom;

  const checkUrl = (name: OptionName): string | null => {
    const v = get(name);
    if (v !== null && !isHttpUrl(v)) problems.push(`${label(name)}: "${v}" is not an http(s) URL`);
    else if (v !== null && (name === 'issuer' || name === 'tokenUrl')) {
      const insecure = insecureEndpoint(v);
      if (insecure) problems.push(`${label(name)}: ${v} ${insecure}`);
    }
    return v;
  };
  const issuer = checkUrl('issuer');
  const authUrl = checkUrl('authUrl') ?? preset.authUrl;
  const tokenUrl = checkUrl('tokenUrl') ?? preset.tokenUrl;
  const redirectUri = checkUrl('redirectUri') ?? DEFAULT_REDIRECT_URI;
  const clientId = get('clientId');
  const secretFrom = (name: OptionName): string | null => {
    const file = get(name);
    if (file === null) return null;
    const read = readSecretFile(file);
    if ('value' in read) return read.value;
    problems.push(`${label(name)}: ${read.problem}`);
    return null;
  };
  const clientSecret = get('clientSecret') ?? secretFrom('clientSecretFile');
  const authMethodRaw = get('authMethod');
  let authMethod: ClientAuthMethod | null = preset.authMethod;
  if (authMethodRaw !== null) {
    if (authMethodRaw === 'client_secret_post' || authMethodRaw === 'client_secret_basic' || authMethodRaw === 'none') authMethod = authMethodRaw;
    else problems.push(`${label('authMethod')}: must be client_secret_post, client_secret_basic or none`);
  }
  if (opts.needsProvider) {
    if (clientId === null) problems.push(`${label('clientId')}: required (the OAuth client id registered with the provider)`);
    if (providerName === 'oidc' && issuer === null && tokenUrl === null) problems.push(`${label('issuer')}: required for the oidc provider`);
    if (providerName === 'custom' && tokenUrl === null) problems.push(`${label('tokenUrl')}: required for the custom provider`);
  }

  const stateRaw = get('stateFile');
  const stateFile = stateRaw === null ? defaultStateFile(env) : resolve(stateRaw);

  const listenRaw = get('listen') ?? DEFAULT_LISTEN;
  const listen = parseListen(listenRaw);
  if (typeof listen === 'string') problems.push(`${label('listen')}: ${listen}`);

  const apiKey = get('apiKey') ?? secretFrom('apiKeyFile');
  if (apiKey !== null && apiKey !== '' && !isApiKey(apiKey)) {
    problems.push(`${label('apiKey')}: must be at least 16 visible ASCII characters, without spaces`);
  }
  if (typeof listen === 'object' && listen.kind === 'tcp' && !isLoopback(listen.host) && !apiKey) {
    problems.push(`${label('listen')}: ${listenRaw} is not a loopback address; set TOKEND_API_KEY (or TOKEND_API_KEY_FILE) to listen on it`);
  }

  const logLevel = get('logLevel') ?? 'info';
  if (!(logLevels as readonly string[]).includes(logLevel)) problems.push(`${label('logLevel')}: must be one of ${logLevels.join(', ')}`);

  const int = (name: NumericOption): number => {
    const { fallback, min, max } = numericOptions[name];
    const v = get(name);
    if (v === null) return fallback;
    const n = parseDecimal(v);
    if (n === null || n < min || n > max) {
      problems.push(`${label(name)}: must be an integer from ${min} to ${max}, in plain decimal digits`);
      return fallback;
    }
    return n;
  };
  const wakeIntervalMs = int('wakeInterval');
  const upstreamTimeoutMs = int('upstreamTimeout');
  const shutdownTimeoutMs = int('shutdownTimeout');
  const maxConnections = int('maxConnections');
  const maxEventClients = int('maxEventClients');

  const list = (name: OptionName): string[] =>
    (get(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');

  const allowedOrigins = list('allowedOrigins');
  for (const origin of allowedOrigins) {
    if (!isOrigin(origin))
      problems.push(`${label('allowedOrigins')}: "${origin}" is not an origin like https://app.example:8443 (scheme, host and port only; never null or *)`);
  }

  const allowedUids: number[] = [];
  for (const uid of list('allowedUids')) {
    const n = parseDecimal(uid);
    if (n === null || n > MAX_UID) problems.push(`${label('allowedUids')}: "${uid}" is not a user id (plain decimal digits)`);
    else allowedUids.push(n);
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    provider: Object.freeze({
      name: providerName as ProviderConfig['name'],
      issuer,
      authUrl,
      tokenUrl,
      clientId,
      clientSecret,
      authMethod,
      scope: get('scope') ?? preset.scope,
      redirectUri,
    }),
    stateFile,
    listen: listen as Listen,
    apiKey: apiKey === '' ? null : apiKey,
    logLevel,
    allowedOrigins: Object.freeze(allowedOrigins),
    allowedHosts: Object.freeze(list('allowedHosts')),
    allowedUids: Object.freeze(allowedUids),
    maxConnections,
    maxEventClients,
    wakeIntervalMs,
    upstreamTimeoutMs,
    shutdownTimeoutMs,
    moveCorruptAside: flags.moveCorruptAside === true,
  });
}
