/**
 * The keys a config file may hold, each with the valibot schema of its value:
 * the same rules as the environment's for the same values (http(s) URLs,
 * secrets sent only over https or to this machine, the listen syntax, the
 * limits), with messages that never repeat a secret.
 */
import * as v from 'valibot';
import type { ClientAuthMethod } from '../shared/contract.js';
import { insecureEndpoint } from '../shared/endpoint.js';
import type { Argv } from './accounts.js';
import { isHttpUrl, isOrigin, logLevels, MAX_UID, numericOptions, parseListen, presets, type Listen } from './config.js';
import { parseDuration } from './duration.js';

const text = v.pipe(v.string('must be a string'), v.nonEmpty('must not be empty'));

const httpUrl = v.pipe(
  text,
  v.check(isHttpUrl, (issue) => `"${String(issue.input)}" is not an http(s) URL`),
);

/** A URL tokend sends secrets to (a client secret, a refresh token). */
const secretUrl = v.pipe(
  httpUrl,
  v.check(
    (url) => insecureEndpoint(url) === null,
    (issue) => `${String(issue.input)} ${insecureEndpoint(String(issue.input))}`,
  ),
);

const argv: v.GenericSchema<unknown, Argv> = v.tupleWithRest(
  [v.pipe(v.string('needs the program as its first element'), v.nonEmpty('needs the program as its first element'))],
  v.string('must hold strings only'),
  'must be an array of strings: the program, then its arguments (run without a shell)',
);

/** `1d`, `5m`, `50ms`: how a limit reads in a message. */
function showMs(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return ms === 0 ? '0s' : `${ms}ms`;
}

const duration = (minMs: number, maxMs: number): v.GenericSchema<unknown, number> =>
  v.pipe(
    v.string('must be a duration in a string, such as "90s", "5m", "12h" or "90d"'),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const ms = parseDuration(dataset.value);
      if (ms === null) {
        addIssue({ message: `"${dataset.value}" is not a duration such as "90s", "5m", "12h" or "90d"` });
        return NEVER;
      }
      if (ms < minMs || ms > maxMs) {
        addIssue({ message: `must be from ${showMs(minMs)} to ${showMs(maxMs)}` });
        return NEVER;
      }
      return ms;
    }),
  );

const integer = (min: number, max: number): v.GenericSchema<unknown, number> => {
  const message = `must be an integer from ${min} to ${max}`;
  return v.pipe(v.number(message), v.integer(message), v.minValue(min, message), v.maxValue(max, message));
};

const listen: v.GenericSchema<unknown, Listen> = v.pipe(
  v.string('must be a string: HOST:PORT or unix:/path'),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const parsed = parseListen(dataset.value);
    if (typeof parsed === 'string') {
      addIssue({ message: parsed });
      return NEVER;
    }
    return parsed;
  }),
);

/** `postgres://user:password@host/db`: never repeated in a message, it may hold a password. */
const storeUrl = v.pipe(
  v.string('must be a postgres:// URL'),
  v.check((url) => /^postgres(?:ql)?:\/\/./.test(url), 'must be a postgres:// URL (leave it out for state files)'),
);

const names = <const T extends readonly [string, ...string[]]>(options: T): v.GenericSchema<unknown, T[number]> =>
  v.picklist(options, (issue) => {
    const given = typeof issue.input === 'string' ? `, not "${issue.input}"` : '';
    return `must be ${options.slice(0, -1).join(', ')} or ${options.at(-1)!}${given}`;
  });

export const globalKeys = {
  listen,
  api_key_file: text,
  state_dir: text,
  log_level: v.picklist(logLevels, `must be one of ${logLevels.join(', ')}`),
  default_account: text,
  store: storeUrl,
  allowed_origins: v.array(
    v.pipe(
      v.string('must hold strings only'),
      v.check(isOrigin, (issue) => `"${String(issue.input)}" is not an origin like https://app.example:8443 (scheme, host and port only; never null or *)`),
    ),
    'must be an array of origins',
  ),
  allowed_hosts: v.array(v.pipe(v.string('must hold strings only'), v.nonEmpty('must not hold an empty name')), 'must be an array of host names'),
  allowed_uids: v.array(integer(0, MAX_UID), 'must be an array of user ids'),
  max_connections: integer(numericOptions.maxConnections.min, numericOptions.maxConnections.max),
  max_event_clients: integer(numericOptions.maxEventClients.min, numericOptions.maxEventClients.max),
  wake_interval: duration(numericOptions.wakeInterval.min, numericOptions.wakeInterval.max),
  upstream_timeout: duration(numericOptions.upstreamTimeout.min, numericOptions.upstreamTimeout.max),
  shutdown_timeout: duration(numericOptions.shutdownTimeout.min, numericOptions.shutdownTimeout.max),
} as const;

export const accountKeys = {
  provider: names<readonly [keyof typeof presets, ...(keyof typeof presets)[]]>(['monzo', 'oidc', 'custom']),
  issuer: secretUrl,
  auth_url: httpUrl,
  token_url: secretUrl,
  device_authorization_url: secretUrl,
  client_id: text,
  client_secret_file: text,
  client_secret_command: argv,
  token_auth_method: names<readonly [ClientAuthMethod, ...ClientAuthMethod[]]>(['client_secret_post', 'client_secret_basic', 'none']),
  scope: v.string('must be a string'),
  redirect_uri: httpUrl,
  state_file: text,
  refresh_lead: duration(1_000, 30 * 86_400_000),
  refresh_at_least: duration(60_000, 3_650 * 86_400_000),
  reauthorize_after: duration(60_000, 3_650 * 86_400_000),
  on_token_change: argv,
  on_reauthorization_required: argv,
  on_error: argv,
} as const;

/** Keys refused with a reason: a secret does not belong in a file that is read by many and often copied. */
export const refusedKeys: Readonly<Record<string, string>> = {
  api_key: 'an API key is not kept in the config file; put it in a private file (chmod 600) and name it with api_key_file',
  client_secret:
    'a client secret is not kept in the config file; put it in a private file (chmod 600) and name it with client_secret_file, or use client_secret_command',
};

/**
 * Keys whose values are checked and read but not acted on yet: refused, so
 * that no one sets one and silently gets nothing. Making one available is
 * taking its name out of this set.
 */
export const unavailableKeys: ReadonlySet<string> = new Set(['reauthorize_after', 'on_token_change', 'on_reauthorization_required', 'on_error']);

/** What a misspelt key was probably meant to be: the known key within two edits, if one is. */
export function didYouMean(key: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
