/**
 * The TOML config file: global keys and one `[accounts.NAME]` table per
 * account, read once into a frozen `DaemonConfig` — or refused whole, with
 * every problem on its own line naming the file, the line and the key
 * (`config.toml:12: accounts.work.token_url: "ftp://x" is not an http(s) URL`).
 *
 * Precedence: flag > environment > file > default for the global keys that
 * have a variable (`TOKEND_LISTEN`, `TOKEND_API_KEY[_FILE]`, `TOKEND_LOG_LEVEL`,
 * the allowed lists and limits); a problem with such a value names the
 * variable, as without a file. Accounts come from the file alone: the
 * per-account variables (`TOKEND_CLIENT_ID`, `TOKEND_STATE_FILE`, …) are not
 * read, and their flags are refused, since they could not say which account
 * they mean.
 *
 * Keys of later features (`reauthorize_after`, the hooks) are refused with
 * a line of their own until tokend acts on them: a setting accepted and then
 * ignored is worse than one refused.
 *
 * Secrets: never inline. `client_secret` and `api_key` are refused with the
 * way to do it instead (a config file is read by everyone who helps with it,
 * copied into dotfiles and pasted into bug reports); secret files must be
 * private as ssh wants a private key (owner only, mode 600), and the config
 * file must be writable by its owner only, since it names commands tokend
 * runs. Relative paths, and `~/`, are taken from the config file's directory
 * and the home directory.
 */
import { fstatSync, openSync, readFileSync, closeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import * as v from 'valibot';
import { ownershipProblem, secretFileProblem } from '../shared/fs-safety.js';
import { issueText } from '../shared/validation.js';
import { defaultStateDir } from '../state-file/paths.js';
import { ACCOUNT_NAME, DEFAULT_ACCOUNT, type AccountConfig, type DaemonConfig } from './accounts.js';
import { accountKeys, didYouMean, globalKeys, refusedKeys, unavailableKeys } from './config-file-keys.js';
import {
  ConfigError,
  DEFAULT_LISTEN,
  DEFAULT_REDIRECT_URI,
  isApiKey,
  isLoopback,
  isOrigin,
  logLevels,
  flagOf,
  formatListen,
  MAX_UID,
  numericOptions,
  optionLabel,
  parseDecimal,
  parseListen,
  pick,
  presets,
  readSecretFile,
  type Listen,
  type LoadOptions,
  type NumericOption,
  type OptionName,
  type ProviderConfig,
} from './config.js';
import { KeyLines, type KeyPath } from './toml-lines.js';

export type { FileFlags } from './config-path.js';
import type { FileFlags } from './config-path.js';

/** The options that belong to one account: with a config file they come from its `[accounts.NAME]` tables only. */
const accountOptions: readonly OptionName[] = [
  'provider',
  'issuer',
  'authUrl',
  'tokenUrl',
  'clientId',
  'clientSecret',
  'clientSecretFile',
  'authMethod',
  'scope',
  'redirectUri',
  'stateFile',
];

export { configFilePath } from './config-path.js';

type Fields = Readonly<Record<string, v.GenericSchema>>;
type Values<F extends Fields> = { -readonly [K in keyof F]?: v.InferOutput<F[K]> };
type Table = Record<string, unknown>;

const isTable = (value: unknown): value is Table => typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);

/** Problems in the file, each placed on its line; problems with a variable or flag, unplaced. */
class Problems {
  readonly #placed: { line: number; text: string }[] = [];
  readonly #other: string[] = [];
  constructor(
    readonly file: string,
    readonly lines: KeyLines,
  ) {}

  /** A problem with `path`, on the line of `at` (by default `path` itself, else the nearest table that holds it). */
  at(path: KeyPath, message: string, at: KeyPath = path): void {
    const line = this.lines.lineOf(at);
    this.#placed.push({ line, text: `${this.file}:${line}: ${showPath(path)}: ${message}` });
  }

  outside(message: string): void {
    this.#other.push(message);
  }

  /** Unplaced first, then by line (in the order found within a line). */
  get all(): string[] {
    return [...this.#other, ...this.#placed.sort((a, b) => a.line - b.line).map((p) => p.text)];
  }
}

/** `accounts.work.on_error[1]`, quoting a key that is not bare as TOML would. */
function showPath(path: KeyPath): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += (out === '' ? '' : '.') + (/^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key));
  }
  return out;
}

/**
 * Each key of `table` checked against its schema (a refused or unavailable
 * key is reported without being read). A valid value is returned;
 * an invalid one is reported and left out, but is `present`, so rules about
 * absent keys do not fire on it as well.
 */
function readTable<F extends Fields>(
  table: Table,
  fields: F,
  base: KeyPath,
  problems: Problems,
  elsewhere: { readonly keys: readonly string[]; readonly hint: string },
): { values: Values<F>; present: ReadonlySet<string> } {
  const values: Record<string, unknown> = {};
  const present = new Set<string>();
  for (const [key, value] of Object.entries(table)) {
    present.add(key);
    const path = [...base, key];
    const refused = refusedKeys[key];
    if (refused !== undefined) {
      problems.at(path, refused);
      continue;
    }
    if (unavailableKeys.has(key)) {
      problems.at(path, 'not available in this version of tokend');
      continue;
    }
    const schema = fields[key];
    if (schema === undefined) {
      const near = didYouMean(key, Object.keys(fields));
      problems.at(
        path,
        elsewhere.keys.includes(key) ? `unknown key here (${key} ${elsewhere.hint})` : `unknown key${near === null ? '' : ` (did you mean ${near}?)`}`,
      );
      continue;
    }
    const result = v.safeParse(schema, value, { abortEarly: false, abortPipeEarly: true });
    if (result.success) values[key] = result.output;
    else for (const issue of result.issues) problems.at([...path, ...(issue.path ?? []).map((p) => p.key as string | number)], issueText(issue));
  }
  return { values, present };
}

/** `~/x` from home, a relative path from the config file's directory. */
function pathFrom(dir: string, value: string): string {
  if (value === '~' || value.startsWith('~/')) return join(homedir(), value.slice(1));
  return resolve(dir, value);
}

/** The secret in a private file, or why it may not be used (never its content). */
function readPrivateSecret(file: string): { readonly value: string } | { readonly problem: string } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    return { problem: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  }
  try {
    // Checked on the open file: what is read is what was checked.
    const problem = secretFileProblem(fstatSync(fd), file);
    if (problem !== null) return { problem };
    const value = readFileSync(fd, 'utf8').trim();
    return value === '' ? { problem: `${file} is empty` } : { value };
  } catch (err) {
    return { problem: `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
  } finally {
    closeSync(fd);
  }
}

/** The file's text, or the one problem that stops there. */
function readConfigText(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  try {
    const st = fstatSync(fd);
    const problem = st.isFile() ? ownershipProblem(st, file) : `${file} is not a regular file`;
    // Whoever may write the file may name the commands tokend runs.
    if (problem !== null) throw new ConfigError([`${file}: ${problem}`]);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * The daemon's configuration from the config file at `file`, with the
 * environment and flags over its global keys (see the module comment).
 * Throws `ConfigError` listing every problem, one line each; returns nothing
 * partial. `opts.needsProvider` (default true) as for `loadConfig`: whether
 * each account's provider settings must be complete.
 */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv, flags: FileFlags = {}, opts: LoadOptions = { needsProvider: true }): DaemonConfig {
  const source = readConfigText(file);
  let doc: Table;
  try {
    doc = parse(source);
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const what = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
    throw new ConfigError([`${file}:${err.line}: not valid TOML: ${what} (column ${err.column})`]);
  }
  const problems = new Problems(file, new KeyLines(source));
  const dir = dirname(resolve(file));

  const { accounts: accountsRaw, ...globalTable } = doc;
  const global = readTable(globalTable, globalKeys, [], problems, {
    keys: Object.keys(accountKeys),
    hint: 'belongs in an [accounts.NAME] table',
  }).values;
  const stateDir = global.state_dir === undefined ? defaultStateDir(env) : pathFrom(dir, global.state_dir);

  const accounts: AccountConfig[] = [];
  const names: string[] = [];
  if (accountsRaw !== undefined && !isTable(accountsRaw)) problems.at(['accounts'], 'must hold one [accounts.NAME] table per account');
  else if (accountsRaw === undefined || Object.keys(accountsRaw).length === 0) problems.at(['accounts'], 'no account: add an [accounts.NAME] table');
  else {
    const stateFiles = new Map<string, string>();
    for (const [name, table] of Object.entries(accountsRaw)) {
      names.push(name);
      if (!ACCOUNT_NAME.test(name)) {
        problems.at(['accounts', name], 'an account name is 1 to 63 lower-case letters, digits, _ and -, starting with a letter or digit');
      }
      if (!isTable(table)) {
        problems.at(['accounts', name], `must be a table of the account's settings ([accounts.${name}])`);
        continue;
      }
      const account = readAccount(name, table, { dir, stateDir, problems, needsProvider: opts.needsProvider });
      const other = stateFiles.get(account.stateFile);
      if (other !== undefined)
        problems.at(['accounts', name, 'state_file'], `${account.stateFile} is also the state file of account ${other}; each account needs its own`);
      stateFiles.set(account.stateFile, name);
      accounts.push(account);
    }
  }

  let defaultAccount = global.default_account ?? null;
  if (defaultAccount !== null && names.length > 0 && !names.includes(defaultAccount)) {
    problems.at(['default_account'], `"${defaultAccount}" is not an account of this file (${names.join(', ')})`);
  } else if (defaultAccount === null && names.length > 0) {
    defaultAccount = names.length === 1 ? names[0]! : names.includes(DEFAULT_ACCOUNT) ? DEFAULT_ACCOUNT : null;
    if (defaultAccount === null) problems.at(['default_account'], `needed when there are several accounts (${names.join(', ')})`, ['accounts']);
  }

  const settings = globalSettings(global, { dir, env, flags, problems });
  for (const name of accountOptions) {
    const flag = flags[name];
    if (flag !== undefined && flag !== '') problems.outside(`${flagOf(name)}: set per account in ${file} when a config file is used`);
  }

  const all = problems.all;
  if (all.length > 0) throw new ConfigError(all);
  return Object.freeze({
    ...settings,
    moveCorruptAside: flags.moveCorruptAside === true,
    configFile: resolve(file),
    stateDir,
    defaultAccount: defaultAccount!,
    store: global.store ?? null,
    accounts: Object.freeze(accounts),
  });
}

interface AccountContext {
  readonly dir: string;
  readonly stateDir: string;
  readonly problems: Problems;
  readonly needsProvider: boolean;
}

function readAccount(name: string, table: Table, { dir, stateDir, problems, needsProvider }: AccountContext): AccountConfig {
  const base = ['accounts', name];
  const { values: a, present } = readTable(table, accountKeys, base, problems, {
    keys: Object.keys(globalKeys),
    hint: 'is a global key, set before the first [accounts.NAME] table',
  });
  const providerName = a.provider ?? (present.has('provider') ? 'custom' : 'monzo');
  const preset = presets[providerName];

  let clientSecret: string | null = null;
  if (a.client_secret_file !== undefined) {
    const read = readPrivateSecret(pathFrom(dir, a.client_secret_file));
    if ('value' in read) clientSecret = read.value;
    else problems.at([...base, 'client_secret_file'], read.problem);
  }
  if (present.has('client_secret_file') && present.has('client_secret_command')) {
    problems.at([...base, 'client_secret_command'], 'set client_secret_file or client_secret_command, not both');
  }
  if (needsProvider) {
    const missing = (key: string, why: string): void => {
      if (!present.has(key)) problems.at([...base, key], why);
    };
    missing('client_id', 'required (the OAuth client id registered with the provider)');
    if (a.provider === 'oidc' && !present.has('token_url')) missing('issuer', 'required for the oidc provider (or token_url)');
    if (a.provider === 'custom') missing('token_url', 'required for the custom provider');
  }

  const provider: ProviderConfig = Object.freeze({
    name: providerName,
    issuer: a.issuer ?? null,
    authUrl: a.auth_url ?? preset.authUrl,
    tokenUrl: a.token_url ?? preset.tokenUrl,
    clientId: a.client_id ?? null,
    clientSecret,
    authMethod: a.token_auth_method ?? preset.authMethod,
    scope: a.scope ?? preset.scope,
    redirectUri: a.redirect_uri ?? DEFAULT_REDIRECT_URI,
  });
  return Object.freeze({
    name,
    provider,
    stateFile: a.state_file === undefined ? join(stateDir, `${name}.json`) : pathFrom(dir, a.state_file),
    deviceAuthorizationUrl: a.device_authorization_url ?? null,
    clientSecretCommand: a.client_secret_command ?? null,
    refreshLeadMs: a.refresh_lead ?? null,
    refreshAtLeastMs: a.refresh_at_least ?? null,
    reauthorizeAfterMs: a.reauthorize_after ?? null,
    hooks: Object.freeze({
      onTokenChange: a.on_token_change ?? null,
      onReauthorizationRequired: a.on_reauthorization_required ?? null,
      onError: a.on_error ?? null,
    }),
  });
}

type GlobalValues = Values<typeof globalKeys>;
type Settings = Omit<DaemonConfig, 'moveCorruptAside' | 'configFile' | 'stateDir' | 'defaultAccount' | 'store' | 'accounts'>;

interface GlobalContext {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly flags: FileFlags;
  readonly problems: Problems;
}

/**
 * The global settings: a flag or variable when set (checked as without a
 * file, its problems naming it), else the file's value (checked already),
 * else the default.
 */
function globalSettings(file: GlobalValues, { dir, env, flags, problems }: GlobalContext): Settings {
  const fromEnv = (name: OptionName): string | null => pick(name, flags, env)?.value ?? null;
  const bad = (name: OptionName, message: string): void => problems.outside(`${optionLabel(name)}: ${message}`);

  const listenRaw = fromEnv('listen');
  let listen: Listen | string;
  if (listenRaw !== null) {
    listen = parseListen(listenRaw);
    if (typeof listen === 'string') bad('listen', listen);
  } else listen = file.listen ?? parseListen(DEFAULT_LISTEN);

  let apiKey: string | null = null;
  let apiKeyFrom: 'env' | 'file' = 'env';
  const envKey = fromEnv('apiKey');
  const envKeyFile = fromEnv('apiKeyFile');
  if (envKey !== null) apiKey = envKey;
  else if (envKeyFile !== null) {
    const read = readSecretFile(envKeyFile);
    if ('value' in read) apiKey = read.value;
    else bad('apiKeyFile', read.problem);
  } else if (file.api_key_file !== undefined) {
    apiKeyFrom = 'file';
    const read = readPrivateSecret(pathFrom(dir, file.api_key_file));
    if ('value' in read) apiKey = read.value;
    else problems.at(['api_key_file'], read.problem);
  }
  if (apiKey !== null && !isApiKey(apiKey)) {
    const message = 'must be at least 16 visible ASCII characters, without spaces';
    if (apiKeyFrom === 'file') problems.at(['api_key_file'], `the key in it ${message}`);
    else bad('apiKey', message);
  }
  if (typeof listen === 'object' && listen.kind === 'tcp' && !isLoopback(listen.host) && apiKey === null) {
    if (listenRaw !== null) bad('listen', `${listenRaw} is not a loopback address; set TOKEND_API_KEY (or TOKEND_API_KEY_FILE) to listen on it`);
    else problems.at(['listen'], `${formatListen(listen)} is not a loopback address; set api_key_file to listen on it`);
  }

  let logLevel = fromEnv('logLevel') ?? file.log_level ?? 'info';
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    bad('logLevel', `must be one of ${logLevels.join(', ')}`);
    logLevel = 'info';
  }

  const int = (name: NumericOption, fromFile: number | undefined): number => {
    const { fallback, min, max } = numericOptions[name];
    const raw = fromEnv(name);
    if (raw === null) return fromFile ?? fallback;
    const n = parseDecimal(raw);
    if (n === null || n < min || n > max) bad(name, `must be an integer from ${min} to ${max}, in plain decimal digits`);
    return n ?? fallback;
  };
  const list = (name: OptionName): string[] | null => {
    const raw = fromEnv(name);
    return raw === null
      ? null
      : raw
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
  };

  const allowedOrigins = list('allowedOrigins') ?? file.allowed_origins ?? [];
  for (const origin of fromEnv('allowedOrigins') === null ? [] : allowedOrigins) {
    if (!isOrigin(origin)) bad('allowedOrigins', `"${origin}" is not an origin like https://app.example:8443 (scheme, host and port only; never null or *)`);
  }
  let allowedUids: number[] = file.allowed_uids ?? [];
  const uidList = list('allowedUids');
  if (uidList !== null) {
    allowedUids = [];
    for (const uid of uidList) {
      const n = parseDecimal(uid);
      if (n === null || n > MAX_UID) bad('allowedUids', `"${uid}" is not a user id (plain decimal digits)`);
      else allowedUids.push(n);
    }
  }

  return {
    listen: listen as Listen,
    apiKey,
    logLevel,
    allowedOrigins: Object.freeze(allowedOrigins),
    allowedHosts: Object.freeze(list('allowedHosts') ?? file.allowed_hosts ?? []),
    allowedUids: Object.freeze(allowedUids),
    maxConnections: int('maxConnections', file.max_connections),
    maxEventClients: int('maxEventClients', file.max_event_clients),
    wakeIntervalMs: int('wakeInterval', file.wake_interval),
    upstreamTimeoutMs: int('upstreamTimeout', file.upstream_timeout),
    shutdownTimeoutMs: int('shutdownTimeout', file.shutdown_timeout),
  };
}
