/**
 * Start and stop, in one place.
 *
 * Start: the owner thread takes each account's lock and loads its state
 * while the HTTP server already listens (/healthz answers; routes that need
 * the state wait until every account has answered). Stop is start reversed:
 * refuse new work (503, Connection: close) → close the server → let each
 * account's refresh in flight settle (bounded) and flush → release every
 * lock → exit. A deliberate second stop request hurries the owners (no more
 * waiting for the provider), never skips writing an answer that has arrived.
 *
 * Accounts: one owner thread runs every account's owner (see
 * src/owner/thread.ts). An account whose owner does not start (a corrupt or
 * unreadable state file, a secret command that fails) is served as failed
 * beside the others — except that a state file held by another live daemon
 * stops the whole start (exit 75, naming the account), as a second daemon
 * must never half-share accounts with the first. Configured by the
 * environment (no config file), the daemon is the single account of before:
 * any failure of it is the start's failure, with the same words.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, renameSync, unlinkSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { connect } from 'node:net';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DaemonStatus, Result, SetTokensInput, Snapshot } from '../shared/contract.js';
import { exitCodeOf, type ErrorCode, type ErrorData } from '../shared/errors.js';
import type { EventHub } from '../http/events.js';
import type { AccountBackend, Backend, ReloadResult } from '../http/routes.js';
import type { Logger } from '../shared/log.js';
import { replaceableProblem } from '../shared/fs-safety.js';
import { ConfigError, formatListen, type Listen } from '../config/config.js';
import type { DaemonConfig } from '../config/accounts.js';
import { Metrics } from './metrics.js';
import { trimTakesEffect, trimWhenIdle, type IdleTrimmer } from './idle-trim.js';
import { deferredLog } from '../shared/deferred-log.js';
import { describeDeath } from './owner-handle.js';
import { destroyOwnerThread, startOwnerThread, type OwnerThread } from './owner-thread.js';
import { Accounts, type Started } from './accounts.js';

export interface RunningDaemon {
  readonly address: string;
  /** The default account's status. */
  status(): DaemonStatus;
  /** Resolves with the exit code once the daemon has stopped. */
  readonly done: Promise<number>;
  stop(reason: string): Promise<number>;
  /** A deliberate second stop request: stop waiting for the provider. */
  hurry(): void;
  /** Hand the default account's owner new tokens (a login run by this process). */
  setTokens(input: SetTokensInput): Promise<Result<Snapshot>>;
  /** Read the config file again and bring the accounts to it; an invalid file changes nothing. */
  reload(): Promise<ReloadOutcome>;
}

/** What a reload did, account by account, or why it changed nothing (see routes.ts: `POST /reload` answers with it). */
export type ReloadOutcome = ReloadResult;

/** The daemon did not start: `error` says why, and its code the exit code (from the catalogue). */
export class StartError extends Error {
  constructor(readonly error: ErrorData) {
    super(error.message);
  }

  get exitCode(): number {
    return exitCodeOf(this.error.code);
  }
}

export interface DaemonSources {
  /** The config file read again (flags and environment over it), for a reload; null: no file, nothing to reload. */
  readonly reread: (() => Promise<DaemonConfig>) | null;
}

/**
 * `logging` is still loading when this is called, and `thread` (when given)
 * is already booting: the owner takes the locks and loads the states on the
 * other core while this thread loads the HTTP side, listens, and then the logger.
 */
export async function startDaemon(
  config: DaemonConfig,
  logging: Promise<Logger>,
  thread: OwnerThread | null = null,
  sources: DaemonSources = { reread: null },
): Promise<RunningDaemon> {
  const daemon = new Daemon(config, logging, sources);
  await daemon.start(thread);
  return daemon;
}

/** Beyond the owners' own wait: their grace for an abandoned request, flushing and releasing the locks. */
const CLOSE_GRACE_MS = 10_000;
/** Beyond everything the stop waits for: whatever else hangs (the thread pool, a socket), the process ends. */
const HARD_STOP_GRACE_MS = 5_000;

/** What a started daemon holds; the stop undoes it in reverse. */
interface Serving {
  readonly server: Server;
  readonly bound: Bound;
  readonly hub: EventHub;
  readonly log: Logger;
  readonly trimmer: IdleTrimmer | null;
}

type Phase =
  | { readonly name: 'starting' }
  | { readonly name: 'serving'; readonly parts: Serving }
  /** New requests get 503 with Connection: close; `stopped` resolves with the exit code. */
  | { readonly name: 'stopping'; readonly parts: Serving; readonly stopped: Promise<number> };

/** Whether the start can go on with these accounts' outcomes: null, or why not. */
export function startVerdict(started: readonly Started[], fromFile: boolean): ErrorData | null {
  const failures = started.flatMap((s) => (s.result.ok ? [] : [{ account: s.config.name, error: s.result.error }]));
  const named = (f: (typeof failures)[number]): ErrorData => (fromFile ? { ...f.error, message: `account ${f.account}: ${f.error.message}` } : f.error);
  // Another daemon serves this file: sharing some accounts with it would split them between two daemons.
  const locked = failures.find((f) => f.error.code === 'state_locked');
  if (locked) return named(locked);
  // Configured by the environment, the one account is the daemon; with a file, the daemon serves while one account does.
  if (failures.length > 0 && (!fromFile || failures.length === started.length)) return named(failures[0]!);
  return null;
}

class Daemon implements RunningDaemon {
  #config: DaemonConfig;
  readonly #logging: Promise<Logger>;
  readonly #sources: DaemonSources;
  readonly #fromFile: boolean;
  readonly #metrics: Metrics;
  #thread: OwnerThread | null = null;
  #accounts: Accounts | null = null;
  /** Settles once every account has answered its start: until then requests wait (see app.ts). */
  readonly #opened = deferred<void>();
  #open = false;
  /** Where snapshots go once the HTTP side has loaded (until then no one can have subscribed). */
  #hub: EventHub | null = null;
  /** This daemon as GET /state names it: the address is known once it listens. */
  readonly #ownerInfo: { readonly pid: number; listen: string | null } = { pid: process.pid, listen: null };
  readonly #done = deferred<number>();
  #phase: Phase = { name: 'starting' };
  /** Reloads one at a time, in the order asked. */
  #reloading: Promise<unknown> = Promise.resolve();
  /** The last owner thread whose death was counted: every account reports the same death. */
  #countedDeath = -1;

  constructor(config: DaemonConfig, logging: Promise<Logger>, sources: DaemonSources) {
    this.#config = config;
    this.#logging = logging;
    this.#sources = sources;
    this.#fromFile = config.configFile !== null;
    this.#metrics = new Metrics(this.#fromFile);
  }

  get address(): string {
    return this.#parts().bound.address;
  }

  get done(): Promise<number> {
    return this.#done.promise;
  }

  status(): DaemonStatus {
    return this.#defaultAccount().snapshot().status;
  }

  setTokens(input: SetTokensInput): Promise<Result<Snapshot>> {
    return this.#defaultAccount().setTokens(input);
  }

  #defaultAccount(): AccountBackend {
    const account = this.#accounts?.backends.get(this.#config.defaultAccount);
    if (!account || !this.#open) throw new Error('the accounts have not started');
    return account;
  }

  /**
   * The owner thread first (it boots on the other core), then the HTTP side,
   * which listens while the owners are still starting: the process is alive
   * (/healthz) before the states are loaded (/readyz, /token).
   */
  async start(given: OwnerThread | null): Promise<void> {
    const thread = (this.#thread = given ?? startOwnerThread());
    const threadLog = deferredLog(this.#logging);
    thread.onError((err) => threadLog.error({ err: describeDeath(err) }, 'owner thread failed'));
    const accounts = (this.#accounts = new Accounts({
      thread,
      settings: this.#config,
      logging: this.#logging,
      namedLogs: this.#fromFile,
      events: {
        onSnapshot: (account, snapshot, previous) => {
          this.#metrics.setSnapshot(account, snapshot);
          this.#hub?.publish(account, snapshot, previous);
        },
        onEvent: (account, event) => this.#metrics.record(account, event),
        onRestart: (threadId) => {
          if (threadId !== -1 && threadId === this.#countedDeath) return;
          this.#countedDeath = threadId;
          this.#metrics.workerRestarted();
        },
        onFatal: (e) => this.#ownerFailed(e),
      },
    }));
    const starting = this.#startAccounts(accounts);
    const { server, hub } = await this.#loadHttp(accounts);
    const bound = await this.#listen(server, starting);
    const log = await this.#logging;
    log.debug({ listen: bound.address }, 'listening; the owner thread is starting');
    await this.#accountsStarted(starting, server, bound);
    // Requests waiting for the owners go ahead from here.
    this.#open = true;
    this.#opened.resolve();
    this.#ownerInfo.listen = bound.address;
    await accounts.setListen(bound.address);
    this.#logStarted(log, accounts, bound.address);
    const trimmer = trimTakesEffect
      ? trimWhenIdle({
          requests: () => this.#metrics.requestsServed(),
          onTrim: ({ youngBefore, youngAfter, rssBefore, rssAfter }) =>
            log.debug({ youngMb: [mb(youngBefore), mb(youngAfter)], rssMb: [mb(rssBefore), mb(rssAfter)] }, 'idle: young generation trimmed'),
        })
      : null;
    this.#phase = { name: 'serving', parts: { server, bound, hub, log, trimmer } };
  }

  #logStarted(log: Logger, accounts: Accounts, listen: string): void {
    const main = this.#defaultAccount().snapshot();
    if (!this.#fromFile) {
      log.info({ listen, stateFile: main.stateFile, status: main.status }, 'tokend serving');
      return;
    }
    for (const name of accounts.names) {
      const slot = accounts.slot(name)!;
      if (slot.kind === 'failed')
        log.error({ account: name, code: slot.error.code, stateFile: slot.config.stateFile }, `account ${name} failed: ${slot.error.message}`);
    }
    const statuses = Object.fromEntries(accounts.names.map((n) => [n, accounts.backends.get(n)!.snapshot().status]));
    log.info({ listen, configFile: this.#config.configFile, defaultAccount: this.#config.defaultAccount, accounts: statuses }, 'tokend serving');
  }

  stop(reason: string): Promise<number> {
    return this.#stop(reason, 0);
  }

  hurry(): void {
    if (this.#phase.name === 'stopping') this.#accounts?.hurry();
  }

  /** Every account's start; resolves with why the daemon cannot serve (then every owner that started is closed), or null. */
  async #startAccounts(accounts: Accounts): Promise<ErrorData | null> {
    const verdict = startVerdict(await accounts.startAll(this.#config.accounts), this.#fromFile);
    if (verdict) await this.#abandonStart(accounts);
    return verdict;
  }

  /** Close whatever started (flushed, locks released) and end the thread. */
  async #abandonStart(accounts: Accounts): Promise<void> {
    await accounts.closeAll(0);
    if (this.#thread) await destroyOwnerThread(this.#thread);
  }

  /** The HTTP side, loaded while the owners boot. Until they have answered, requests wait (/healthz and /readyz answer at once). */
  async #loadHttp(accounts: Accounts): Promise<{ readonly server: Server; readonly hub: EventHub }> {
    const [{ EventHub }, { createHttpServer }] = await Promise.all([import('../http/events.js'), import('../http/app.js')]);
    const metrics = this.#metrics;
    const hub = (this.#hub = new EventHub(() => accounts.backends.values()));
    const config = this.#config;
    const daemon = { defaultAccount: () => this.#config.defaultAccount };
    const backend: Backend = {
      accounts: accounts.backends,
      get defaultAccount() {
        return daemon.defaultAccount();
      },
      owner: this.#ownerInfo,
      metricsText: () => metrics.text(),
      hub,
      reload: () => this.reload(),
    };
    const server = createHttpServer({
      listen: config.listen,
      apiKey: config.apiKey,
      allowedOrigins: config.allowedOrigins,
      allowedHosts: config.allowedHosts,
      allowedUids: config.allowedUids,
      maxConnections: config.maxConnections,
      maxEventClients: config.maxEventClients,
      log: deferredLog(this.#logging),
      metrics,
      isDraining: () => this.#phase.name === 'stopping',
      starting: () => (this.#open ? null : this.#opened.promise),
      backend,
    });
    return { server, hub };
  }

  /** Listen; when that fails, the owners' verdict comes first: "owned by pid N" (exit 75) says more than "address in use". */
  async #listen(server: Server, starting: Promise<ErrorData | null>): Promise<Bound> {
    try {
      return await listen(server, this.#config.listen);
    } catch (err) {
      const verdict = await starting;
      if (verdict) throw new StartError(verdict);
      await this.#abandonStart(this.#accounts!);
      throw listenFailure(this.#config.listen, err);
    }
  }

  /** Once every account has answered; when the daemon cannot serve them, the server closes and the start fails with the reason. */
  async #accountsStarted(starting: Promise<ErrorData | null>, server: Server, bound: Bound): Promise<void> {
    const verdict = await starting;
    if (!verdict) return;
    // Requests waiting for the owners are dropped with their connections: the process exits.
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    bound.socket?.remove();
    throw new StartError(verdict);
  }

  /** The owner thread cannot be kept alive: stop, exit 1. (During the start, the start's own outcome decides.) */
  #ownerFailed(e: ErrorData): void {
    if (this.#phase.name === 'starting') return;
    this.#phase.parts.log.fatal({ code: e.code }, e.message);
    void this.#stop('owner thread failed', 1);
  }

  reload(): Promise<ReloadOutcome> {
    const next = this.#reloading.then(() => this.#reload());
    this.#reloading = next.catch(() => undefined);
    return next;
  }

  async #reload(): Promise<ReloadOutcome> {
    if (this.#phase.name !== 'serving') {
      const error: ErrorData =
        this.#phase.name === 'stopping'
          ? { code: 'shutting_down', message: 'not reloading: tokend is shutting down' }
          : { code: 'not_ready', message: 'not reloading: tokend is still starting' };
      return { ok: false, error, problems: [] };
    }
    const { log } = this.#phase.parts;
    const reread = this.#sources.reread;
    if (!reread) {
      log.warn('reload asked for, but the daemon was configured without a config file: nothing to re-read');
      const message = 'nothing to reload: this daemon was configured by the environment, not a config file (restart it to change its settings)';
      return { ok: false, error: { code: 'reload_unavailable', message }, problems: [] };
    }
    let next: DaemonConfig;
    try {
      next = await reread();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const problem of err.problems) log.error({ configFile: this.#config.configFile }, `config reload refused: ${problem}`);
      log.warn({ configFile: this.#config.configFile }, 'the configuration in use goes on unchanged');
      const n = err.problems.length;
      const message = `config reload refused: ${n} problem${n === 1 ? '' : 's'} in ${this.#config.configFile}; the configuration in use goes on unchanged`;
      return { ok: false, error: { code: 'config_invalid', message }, problems: err.problems };
    }
    for (const key of restartOnlyKeys) {
      if (JSON.stringify(next[key]) !== JSON.stringify(this.#config[key]))
        log.warn({ setting: key }, 'changed in the config file: takes effect at the next start');
    }
    const waitMs = closeWaitMs(this.#config);
    const summary = await this.#accounts!.reload(next.accounts, waitMs);
    // The daemon-wide settings stay those it started with; the accounts and the default are the file's.
    this.#config = Object.freeze({ ...this.#config, accounts: next.accounts, defaultAccount: next.defaultAccount });
    this.#metrics.setAccounts(this.#accounts!.names);
    for (const f of summary.failed) log.error({ account: f.account, code: f.error.code }, `account ${f.account} failed: ${f.error.message}`);
    const { added, removed, restarted, failed } = summary;
    const changed = new Set([...added, ...restarted]);
    const unchanged = next.accounts.map((a) => a.name).filter((name) => !changed.has(name));
    log.info({ added, removed, restarted, failed: failed.map((f) => f.account), defaultAccount: next.defaultAccount }, 'configuration reloaded');
    return { ok: true, started: added, stopped: removed, restarted, unchanged, failed, defaultAccount: next.defaultAccount };
  }

  /** One stop, however many ask: a later request gets the first one's outcome. */
  #stop(reason: string, exitCode: number): Promise<number> {
    const phase = this.#phase;
    switch (phase.name) {
      case 'starting':
        return Promise.reject(new Error('the daemon has not started'));
      case 'stopping':
        return phase.stopped;
      case 'serving': {
        // Its first steps run at once, before any other request can be dispatched.
        const stopped = this.#stopInOrder(phase.parts, reason, exitCode);
        this.#phase = { name: 'stopping', parts: phase.parts, stopped };
        return stopped;
      }
    }
  }

  /** Start reversed: no new work, the server closing, the owners settling and flushing, then the socket. */
  async #stopInOrder(parts: Serving, reason: string, exitCode: number): Promise<number> {
    const { log } = parts;
    log.info({ reason }, 'shutting down');
    parts.trimmer?.stop();
    parts.hub.closeAll();
    const closed = closeServer(parts.server, 2_000);
    // A refresh in flight is waited for up to its own deadline at least: a stop request never abandons a
    // provider that may still answer with a rotation. Past that, the owner abandons it and closes.
    const waitMs = closeWaitMs(this.#config);
    const hardStop = this.#hardStopAfter(waitMs + CLOSE_GRACE_MS + HARD_STOP_GRACE_MS, log);
    const code = (await this.#closeAccounts(waitMs, log)) ? exitCode : 1;
    await closed;
    parts.bound.socket?.remove();
    clearTimeout(hardStop);
    log.info(this.#fromFile ? {} : { version: this.#defaultAccount().snapshot().version }, 'stopped');
    this.#done.resolve(code);
    return code;
  }

  /** Whatever hangs, the process ends at `ms`: the last word is a line saying so. */
  #hardStopAfter(ms: number, log: Logger): NodeJS.Timeout {
    return setTimeout(() => {
      log.fatal({ waitedMs: ms }, 'the stop did not finish in time: exiting');
      this.#done.resolve(1);
    }, ms);
  }

  /** Settle, flush and release every account's lock, all at once; false when the owner thread had to be given up. */
  async #closeAccounts(waitMs: number, log: Logger): Promise<boolean> {
    const accounts = this.#accounts!;
    const results = await withDeadline(accounts.closeAll(waitMs), waitMs + CLOSE_GRACE_MS);
    if (results === null) {
      // The owner thread is stuck (a hung disk, a busy loop): nothing it holds can be written now.
      log.fatal({ waitedMs: waitMs + CLOSE_GRACE_MS }, 'the owner thread did not close in time: exiting without it');
      accounts.destroyAll();
      await destroyOwnerThread(this.#thread!);
      return false;
    }
    for (const { account, result } of results) {
      if (!result.ok) log.error({ ...(this.#fromFile ? { account } : {}), code: result.error.code }, result.error.message);
    }
    return true;
  }

  #parts(): Serving {
    if (this.#phase.name === 'starting') throw new Error('the daemon has not started');
    return this.#phase.parts;
  }
}

/** Daemon-wide settings a reload cannot change in a running daemon (its listener, its owners' limits). */
const restartOnlyKeys = [
  'listen',
  'apiKey',
  'logLevel',
  'allowedOrigins',
  'allowedHosts',
  'allowedUids',
  'maxConnections',
  'maxEventClients',
  'wakeIntervalMs',
  'upstreamTimeoutMs',
  'shutdownTimeoutMs',
  'store',
] as const satisfies readonly (keyof DaemonConfig)[];

/** How long a stop (or a reload's restart) waits for a refresh in flight: at least the token request's own deadline. */
function closeWaitMs(config: DaemonConfig): number {
  return Math.max(config.shutdownTimeoutMs, config.upstreamTimeoutMs + 1_000);
}

/** A promise with its resolve at hand (Promise.withResolvers is Node 22). */
function deferred<T>(): { readonly promise: Promise<T>; readonly resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => undefined;
  const promise = new Promise<T>((settle) => (resolve = settle));
  return { promise, resolve };
}

/** `promise`'s value, or null when `ms` pass first. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<null>((resolve) => (timer = setTimeout(resolve, ms, null)));
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

interface Bound {
  readonly address: string;
  /** The unix socket this daemon created, when it listens on one. */
  readonly socket: OwnSocket | null;
}

/**
 * A unix socket is bound under a temporary name beside its path, then renamed
 * into place (replacing a dead socket atomically): libuv unlinks the path it
 * bound when the server closes, whatever is there by then, so the path it
 * knows must be one that nothing else will ever have.
 */
async function listen(server: Server, where: Listen): Promise<Bound> {
  if (where.kind === 'tcp') {
    await bind(server, (ready) => server.listen(where.port, where.host, ready));
    const addr = server.address() as AddressInfo;
    return { address: formatListen({ kind: 'tcp', host: where.host, port: addr.port }), socket: null };
  }
  const temp = await socketTempPath(where.path);
  await bind(server, (ready) => {
    // The socket is created 0600 from the start: no window where others may connect.
    const old = process.umask(0o177);
    try {
      server.listen(temp, ready);
    } finally {
      process.umask(old);
    }
  });
  try {
    requireSocketOrNothing(where.path);
    renameSync(temp, where.path);
  } catch (err) {
    await new Promise((resolve) => server.close(resolve));
    throw err;
  }
  return { address: formatListen(where), socket: OwnSocket.created(where.path) };
}

/** Start listening: an error before the server listens rejects; once it listens, the server's errors are ignored. */
async function bind(server: Server, start: (ready: () => void) => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    start(() => resolve());
  });
  server.removeAllListeners('error');
  server.on('error', () => undefined);
}

/** Why a listen cannot work. */
type ListenFailureCode = Extract<ErrorCode, 'config_invalid' | 'address_in_use' | 'listen_failed'>;

/** A listen refused before binding: a setting a person must fix (`config_invalid`), or a busy address (`address_in_use`). */
class ListenRefused extends Error {
  constructor(
    readonly code: ListenFailureCode,
    message: string,
  ) {
    super(message);
  }
}

/** Why the daemon cannot listen at `where`, from listen's error (exported for its unit test). */
export function listenFailure(where: Listen, err: unknown): StartError {
  const at = `cannot listen on ${formatListen(where)}`;
  if (err instanceof ListenRefused) return new StartError({ code: err.code, message: `${at}: ${err.message}` });
  const [code, message] = listenErrorMeaning(where, err as NodeJS.ErrnoException);
  return new StartError({ code, message: `${at}: ${message}` });
}

/** What listen's error means: a busy address, a setting to fix, or (any other) `listen_failed`. */
function listenErrorMeaning(where: Listen, e: NodeJS.ErrnoException): readonly [ListenFailureCode, string] {
  switch (e.code) {
    case 'EADDRINUSE':
      return ['address_in_use', 'address already in use'];
    case 'EADDRNOTAVAIL':
      return ['config_invalid', 'the address is not available on this host'];
    case 'EACCES':
      return ['config_invalid', where.kind === 'unix' ? 'permission denied' : 'permission denied (ports below 1024 need privileges)'];
    case 'EPERM':
      return ['config_invalid', 'permission denied'];
    case 'ENOENT':
      return ['config_invalid', 'no such directory'];
    default:
      return ['listen_failed', e.code ?? e.message];
  }
}

/** Longest unix socket path (sun_path, less its NUL): a longer one would be silently cut short. */
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Check the socket's path and name a temporary path to bind beside it. The
 * path must hold nothing, or a socket left by a crash (one that nobody
 * answers on), which the new socket replaces. Anything else there is refused
 * and left alone: it may be the state file itself.
 */
async function socketTempPath(path: string): Promise<string> {
  const temp = join(dirname(path), `.tokend-${randomBytes(6).toString('hex')}.sock`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES || Buffer.byteLength(temp) > MAX_SOCKET_PATH_BYTES) {
    const dirMax = MAX_SOCKET_PATH_BYTES - (Buffer.byteLength(temp) - Buffer.byteLength(dirname(path)));
    throw new ListenRefused(
      'config_invalid',
      `the socket path is too long: at most ${MAX_SOCKET_PATH_BYTES} bytes, in a directory whose path has at most ${dirMax}`,
    );
  }
  // Another user who may replace entries of the directory could swap the socket for theirs and hear what clients send.
  const dirProblem = replaceableProblem(dirname(path));
  if (dirProblem) throw new ListenRefused('config_invalid', `the socket's directory is unsafe: ${dirProblem}; use a directory of your own`);
  const found = requireSocketOrNothing(path);
  if (!found) return temp;
  const answer = await new Promise<string | null>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(null);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
  if (answer === null) throw new ListenRefused('address_in_use', `${path} is in use: another process answers on it`);
  if (answer !== 'ECONNREFUSED') throw new ListenRefused('config_invalid', `cannot tell whether ${path} is in use (${answer}); remove it if it is stale`);
  return temp;
}

/** What is at the socket's path, when it is a socket; null when nothing is; refused otherwise. */
function requireSocketOrNothing(path: string): Stats | null {
  const found = lstatOrNull(path);
  if (found && !found.isSocket()) throw new ListenRefused('config_invalid', `${path} exists and is not a socket; refusing to replace it`);
  return found;
}

/** A unix socket identified by its inode: removed only while it is still that socket. */
class OwnSocket {
  constructor(
    readonly path: string,
    readonly dev: number,
    readonly ino: number,
  ) {}

  static created(path: string): OwnSocket | null {
    const st = lstatOrNull(path);
    return st ? new OwnSocket(path, st.dev, st.ino) : null;
  }

  remove(): void {
    const st = lstatOrNull(this.path);
    if (!st || !st.isSocket() || st.dev !== this.dev || st.ino !== this.ino) return;
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}

/**
 * Close the server: idle keep-alive sockets at once, busy ones as soon as
 * their response ends (a socket busy at close() otherwise lingers until
 * keepAliveTimeout on Node 20), everything at the deadline.
 */
function closeServer(server: Server, deadlineMs: number): Promise<void> {
  return new Promise((resolve) => {
    const sweep = setInterval(() => server.closeIdleConnections(), 25);
    const deadline = setTimeout(() => server.closeAllConnections(), deadlineMs);
    server.close(() => {
      clearInterval(sweep);
      clearTimeout(deadline);
      resolve();
    });
    server.closeIdleConnections();
  });
}

const mb = (bytes: number): number => Math.round(bytes / 1024 / 102.4) / 10;
