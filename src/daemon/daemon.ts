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
import type { Logger } from '../shared/log.js';
import { replaceableProblem } from '../shared/fs-safety.js';
import { formatListen, type Config, type Listen } from '../config/config.js';
import { ownerOptions } from '../config/owner-options.js';
import { Metrics } from './metrics.js';
import { trimWhenIdle } from './idle-trim.js';
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
  const metrics = new Metrics();
  let hub: EventHub | null = null;
  let fatal: (e: ErrorData) => void = () => undefined;
  const starting = OwnerHandle.start(
    ownerOptions(config, randomUUID()),
    logging,
    {
      onSnapshot(snapshot, previous) {
        metrics.setSnapshot(snapshot);
        hub?.publish(snapshot, previous);
      },
      onEvent: (event) => metrics.record(event),
      onRestart: () => metrics.workerRestarted(),
      onFatal: (e) => fatal(e),
    },
    thread,
  );
  const [{ EventHub }, { createHttpServer }] = await Promise.all([import('../http/events.js'), import('../http/app.js')]);
  // Until the owner has answered, requests wait for it (/healthz and /readyz answer at once).
  let owner: OwnerHandle | null = null;
  let opened!: () => void;
  const opening = new Promise<void>((resolve) => (opened = resolve));
  const current = (): OwnerHandle => owner!;
  hub = new EventHub(() => current().snapshot);

  let draining = false;
  const ownerInfo = { pid: process.pid, listen: null as string | null };
  const server = createHttpServer({
    listen: config.listen,
    apiKey: config.apiKey,
    allowedOrigins: config.allowedOrigins,
    allowedHosts: config.allowedHosts,
    allowedUids: config.allowedUids,
    maxConnections: config.maxConnections,
    maxEventClients: config.maxEventClients,
    log: deferredLog(logging),
    metrics,
    isDraining: () => draining,
    starting: () => (owner ? null : opening),
    backend: {
      snapshot: () => current().snapshot,
      ensureFresh: () => current().ensureFresh(),
      refresh: (trigger) => current().refresh(trigger),
      setTokens: (input) => current().setTokens(input),
      owner: ownerInfo,
      metricsText: () => metrics.text(),
      hub,
    },
  });

  // Listen while the owner thread is still starting: the process is alive
  // (/healthz) before the state is loaded (/readyz, /token).
  let bound: Bound;
  try {
    bound = await listen(server, config.listen);
  } catch (err) {
    // The owner's verdict comes first: "owned by pid N" (exit 75) says more than "address in use".
    const started = await starting;
    if (!started.ok) throw new StartError(started.error);
    await started.value.close(0);
    await started.value.destroy();
    throw listenFailure(config.listen, err);
  }
  const { address, socket } = bound;
  const log = await logging;
  log.debug({ listen: address }, 'listening; the owner thread is starting');
  const started = await starting;
  if (!started.ok) {
    // Requests waiting for the owner are dropped with their connections: the process exits.
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    socket?.remove();
    throw new StartError(started.error);
  }
  const running = (owner = started.value);
  metrics.setSnapshot(running.snapshot);
  opened();
  ownerInfo.listen = address;
  await running.setListen(address);
  log.info({ listen: address, stateFile: config.stateFile, status: running.snapshot.status }, 'tokend serving');
  const trimmer = trimWhenIdle({
    requests: () => metrics.requestsServed(),
    onTrim: ({ youngBefore, youngAfter, rssBefore, rssAfter }) =>
      log.debug({ youngMb: [mb(youngBefore), mb(youngAfter)], rssMb: [mb(rssBefore), mb(rssAfter)] }, 'idle: young generation trimmed'),
  });
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let stopping: Promise<number> | null = null;

  const stop = (reason: string, exitCode = 0): Promise<number> => {
    let code = exitCode;
    stopping ??= (async () => {
      log.info({ reason }, 'shutting down');
      draining = true;
      trimmer.stop();
      hub.closeAll();
      const closed = closeServer(server, 2_000);
      // A refresh in flight is waited for up to its own deadline at least: a stop request never abandons a
      // provider that may still answer with a rotation. Past that, the owner abandons it and closes.
      const waitMs = Math.max(config.shutdownTimeoutMs, config.upstreamTimeoutMs + 1_000);
      // Whatever else hangs (the thread pool, a socket), the process ends: the last word is a line saying so.
      const hardStop = setTimeout(
        () => {
          log.fatal({ waitedMs: waitMs + CLOSE_GRACE_MS + 5_000 }, 'the stop did not finish in time: exiting');
          resolveDone(1);
        },
        waitMs + CLOSE_GRACE_MS + 5_000,
      );
      const result = await withDeadline(running.close(waitMs), waitMs + CLOSE_GRACE_MS);
      if (result === null) {
        // The owner thread is stuck (a hung disk, a busy loop): nothing it holds can be written now.
        log.fatal({ waitedMs: waitMs + CLOSE_GRACE_MS }, 'the owner thread did not close in time: exiting without it');
        await running.destroy();
        code = 1;
      } else if (!result.ok) log.error({ code: result.error.code }, result.error.message);
      await closed;
      socket?.remove();
      clearTimeout(hardStop);
      log.info({ version: running.snapshot.version }, 'stopped');
      resolveDone(code);
      return code;
    })();
    return stopping;
  };
  fatal = (e) => {
    log.fatal({ code: e.code }, e.message);
    void stop('owner thread failed', 1);
  };
  const hurry = (): void => {
    if (stopping) void running.hurry();
  };
  return { address, done, status: () => running.snapshot.status, stop: (reason) => stop(reason), hurry, setTokens: (input) => running.setTokens(input) };
}

/** Beyond the owner's own wait: its grace for an abandoned request, flushing and releasing the lock. */
const CLOSE_GRACE_MS = 10_000;

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
  const temp = where.kind === 'unix' ? await socketTempPath(where.path) : null;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (where.kind === 'unix') {
      // The socket is created 0600 from the start: no window where others may connect.
      const old = process.umask(0o177);
      try {
        server.listen(temp!, () => resolve());
      } finally {
        process.umask(old);
      }
    } else {
      server.listen(where.port, where.host, () => resolve());
    }
  });
  server.removeAllListeners('error');
  server.on('error', () => undefined);
  if (where.kind === 'unix') {
    try {
      requireSocketOrNothing(where.path);
      renameSync(temp!, where.path);
    } catch (err) {
      await new Promise((resolve) => server.close(resolve));
      throw err;
    }
    return { address: formatListen(where), socket: OwnSocket.created(where.path) };
  }
  const addr = server.address() as AddressInfo;
  return { address: formatListen({ kind: 'tcp', host: where.host, port: addr.port }), socket: null };
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
