/**
 * Start and stop, in one place.
 *
 * Start: the owner thread takes the lock and loads the state while the HTTP
 * server already listens (/healthz answers; routes that need the state wait
 * for the owner's answer). Stop is start
 * reversed: refuse new work (503, Connection: close) → close the server →
 * let the refresh in flight settle (bounded) and flush → release the lock →
 * exit. A deliberate second stop request hurries the owner (no more waiting
 * for the provider), never skips writing an answer that has arrived.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { lstatSync, renameSync, unlinkSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { connect } from 'node:net';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DaemonStatus, Result, SetTokensInput, Snapshot } from '../shared/contract.js';
import { exitCodeOf, type ErrorCode, type ErrorData } from '../shared/errors.js';
import type { EventHub } from '../http/events.js';
import type { AccountBackend } from '../http/routes.js';
import type { Logger } from '../shared/log.js';
import { replaceableProblem } from '../shared/fs-safety.js';
import { formatListen, type Config, type Listen } from '../config/config.js';
import { ownerOptions } from '../config/owner-options.js';
import { Metrics } from './metrics.js';
import { trimTakesEffect, trimWhenIdle, type IdleTrimmer } from './idle-trim.js';
import { deferredLog } from '../shared/deferred-log.js';
import { OwnerHandle } from './owner-handle.js';
import type { OwnerThread } from './owner-thread.js';

export interface RunningDaemon {
  readonly address: string;
  status(): DaemonStatus;
  /** Resolves with the exit code once the daemon has stopped. */
  readonly done: Promise<number>;
  stop(reason: string): Promise<number>;
  /** A deliberate second stop request: stop waiting for the provider. */
  hurry(): void;
  /** Hand the owner new tokens (a login run by this process). */
  setTokens(input: SetTokensInput): Promise<Result<Snapshot>>;
}

/** The daemon did not start: `error` says why, and its code the exit code (from the catalogue). */
export class StartError extends Error {
  constructor(readonly error: ErrorData) {
    super(error.message);
  }

  get exitCode(): number {
    return exitCodeOf(this.error.code);
  }
}

/**
 * `logging` is still loading when this is called, and `thread` (when given)
 * is already booting: the owner takes the lock and loads the state on the
 * other core while this thread loads the HTTP side, listens, and then the logger.
 */
export async function startDaemon(config: Config, logging: Promise<Logger>, thread: OwnerThread | null = null): Promise<RunningDaemon> {
  const daemon = new Daemon(config, logging);
  await daemon.start(thread);
  return daemon;
}

/** Beyond the owner's own wait: its grace for an abandoned request, flushing and releasing the lock. */
const CLOSE_GRACE_MS = 10_000;
/** Beyond everything the stop waits for: whatever else hangs (the thread pool, a socket), the process ends. */
const HARD_STOP_GRACE_MS = 5_000;

/** What a started daemon holds; the stop undoes it in reverse. */
interface Serving {
  readonly owner: OwnerHandle;
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

class Daemon implements RunningDaemon {
  readonly #config: Config;
  readonly #logging: Promise<Logger>;
  readonly #metrics = new Metrics();
  readonly #owner = new OwnerSlot();
  /** Where snapshots go once the HTTP side has loaded (until then no one can have subscribed). */
  #hub: EventHub | null = null;
  /** This daemon as GET /state names it: the address is known once it listens. */
  readonly #ownerInfo: { readonly pid: number; listen: string | null } = { pid: process.pid, listen: null };
  readonly #done = deferred<number>();
  #phase: Phase = { name: 'starting' };

  constructor(config: Config, logging: Promise<Logger>) {
    this.#config = config;
    this.#logging = logging;
  }

  get address(): string {
    return this.#parts().bound.address;
  }

  get done(): Promise<number> {
    return this.#done.promise;
  }

  status(): DaemonStatus {
    return this.#owner.current().snapshot.status;
  }

  setTokens(input: SetTokensInput): Promise<Result<Snapshot>> {
    return this.#owner.current().setTokens(input);
  }

  /**
   * The owner thread first (it boots on the other core), then the HTTP side,
   * which listens while the owner is still starting: the process is alive
   * (/healthz) before the state is loaded (/readyz, /token).
   */
  async start(thread: OwnerThread | null): Promise<void> {
    const starting = this.#startOwner(thread);
    const { server, hub } = await this.#loadHttp();
    const bound = await this.#listen(server, starting);
    const log = await this.#logging;
    log.debug({ listen: bound.address }, 'listening; the owner thread is starting');
    const owner = await this.#ownerStarted(starting, server, bound);
    // Requests waiting for the owner go ahead from here.
    this.#metrics.setSnapshot(owner.snapshot);
    this.#owner.open(owner);
    this.#ownerInfo.listen = bound.address;
    await owner.setListen(bound.address);
    log.info({ listen: bound.address, stateFile: this.#config.stateFile, status: owner.snapshot.status }, 'tokend serving');
    const trimmer = trimTakesEffect
      ? trimWhenIdle({
          requests: () => this.#metrics.requestsServed(),
          onTrim: ({ youngBefore, youngAfter, rssBefore, rssAfter }) =>
            log.debug({ youngMb: [mb(youngBefore), mb(youngAfter)], rssMb: [mb(rssBefore), mb(rssAfter)] }, 'idle: young generation trimmed'),
        })
      : null;
    this.#phase = { name: 'serving', parts: { owner, server, bound, hub, log, trimmer } };
  }

  stop(reason: string): Promise<number> {
    return this.#stop(reason, 0);
  }

  hurry(): void {
    if (this.#phase.name === 'stopping') void this.#phase.parts.owner.hurry();
  }

  #startOwner(thread: OwnerThread | null): Promise<Result<OwnerHandle>> {
    return OwnerHandle.start(
      ownerOptions(this.#config, randomUUID()),
      this.#logging,
      {
        onSnapshot: (snapshot, previous) => {
          this.#metrics.setSnapshot(snapshot);
          this.#hub?.publish('default', snapshot, previous);
        },
        onEvent: (event) => this.#metrics.record(event),
        onRestart: () => this.#metrics.workerRestarted(),
        onFatal: (e) => this.#ownerFailed(e),
      },
      thread,
    );
  }

  /** The HTTP side, loaded while the owner boots. Until the owner has answered, requests wait for it (/healthz and /readyz answer at once). */
  async #loadHttp(): Promise<{ readonly server: Server; readonly hub: EventHub }> {
    const [{ EventHub }, { createHttpServer }] = await Promise.all([import('../http/events.js'), import('../http/app.js')]);
    const owner = this.#owner;
    const metrics = this.#metrics;
    // One account, `default`, from the one owner: the HTTP side's Backend holds a map of accounts.
    const account: AccountBackend = {
      name: 'default',
      snapshot: () => owner.current().snapshot,
      ensureFresh: () => owner.current().ensureFresh(),
      refresh: (trigger) => owner.current().refresh(trigger),
      setTokens: (input) => owner.current().setTokens(input),
    };
    const hub = (this.#hub = new EventHub(() => [account]));
    const config = this.#config;
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
      starting: () => owner.starting(),
      backend: {
        accounts: new Map([[account.name, account]]),
        defaultAccount: account.name,
        owner: this.#ownerInfo,
        metricsText: () => metrics.text(),
        hub,
      },
    });
    return { server, hub };
  }

  /** Listen; when that fails, the owner's verdict comes first: "owned by pid N" (exit 75) says more than "address in use". */
  async #listen(server: Server, starting: Promise<Result<OwnerHandle>>): Promise<Bound> {
    try {
      return await listen(server, this.#config.listen);
    } catch (err) {
      const started = await starting;
      if (!started.ok) throw new StartError(started.error);
      await started.value.close(0);
      await started.value.destroy();
      throw listenFailure(this.#config.listen, err);
    }
  }

  /** The started owner; when it did not start, the server closes and the start fails with the owner's reason. */
  async #ownerStarted(starting: Promise<Result<OwnerHandle>>, server: Server, bound: Bound): Promise<OwnerHandle> {
    const started = await starting;
    if (started.ok) return started.value;
    // Requests waiting for the owner are dropped with their connections: the process exits.
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    bound.socket?.remove();
    throw new StartError(started.error);
  }

  /** The owner cannot be kept alive: stop, exit 1. (During the start, the start's own outcome decides.) */
  #ownerFailed(e: ErrorData): void {
    if (this.#phase.name === 'starting') return;
    this.#phase.parts.log.fatal({ code: e.code }, e.message);
    void this.#stop('owner thread failed', 1);
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

  /** Start reversed: no new work, the server closing, the owner settling and flushing, then the socket. */
  async #stopInOrder(parts: Serving, reason: string, exitCode: number): Promise<number> {
    const { owner, log } = parts;
    log.info({ reason }, 'shutting down');
    parts.trimmer?.stop();
    parts.hub.closeAll();
    const closed = closeServer(parts.server, 2_000);
    // A refresh in flight is waited for up to its own deadline at least: a stop request never abandons a
    // provider that may still answer with a rotation. Past that, the owner abandons it and closes.
    const waitMs = Math.max(this.#config.shutdownTimeoutMs, this.#config.upstreamTimeoutMs + 1_000);
    const hardStop = this.#hardStopAfter(waitMs + CLOSE_GRACE_MS + HARD_STOP_GRACE_MS, log);
    const code = (await this.#closeOwner(owner, waitMs, log)) ? exitCode : 1;
    await closed;
    parts.bound.socket?.remove();
    clearTimeout(hardStop);
    log.info({ version: owner.snapshot.version }, 'stopped');
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

  /** Settle, flush and release the lock; false when the owner thread had to be given up. */
  async #closeOwner(owner: OwnerHandle, waitMs: number, log: Logger): Promise<boolean> {
    const result = await withDeadline(owner.close(waitMs), waitMs + CLOSE_GRACE_MS);
    if (result === null) {
      // The owner thread is stuck (a hung disk, a busy loop): nothing it holds can be written now.
      log.fatal({ waitedMs: waitMs + CLOSE_GRACE_MS }, 'the owner thread did not close in time: exiting without it');
      await owner.destroy();
      return false;
    }
    if (!result.ok) log.error({ code: result.error.code }, result.error.message);
    return true;
  }

  #parts(): Serving {
    if (this.#phase.name === 'starting') throw new Error('the daemon has not started');
    return this.#phase.parts;
  }
}

/**
 * The owner once it has started. Until then requests wait on `starting()`
 * (/healthz and /readyz answer at once), so nothing asks for `current()` before.
 */
class OwnerSlot {
  #owner: OwnerHandle | null = null;
  readonly #opened = deferred<void>();

  /** Null once the owner has started; until then, settles when it has. */
  starting(): Promise<void> | null {
    return this.#owner ? null : this.#opened.promise;
  }

  open(owner: OwnerHandle): void {
    this.#owner = owner;
    this.#opened.resolve();
  }

  current(): OwnerHandle {
    if (!this.#owner) throw new Error('the owner thread has not started');
    return this.#owner;
  }
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
