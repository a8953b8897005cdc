/**
 * Start and stop, in one place.
 *
 * Start: the owner thread takes the lock and loads the state while the HTTP
 * server already listens (/healthz answers; routes that need the state wait
 * for the owner's answer). Stop is start
 * reversed: refuse new work (503, Connection: close) → close the server →
 * let the refresh in flight settle (bounded) and flush → release the lock →
 * exit. A second signal exits at once: every change was already on disk.
 */
import { randomUUID } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DaemonStatus, OwnerOptions } from '../contract.js';
import { exitCodeOf, type ErrorData } from '../errors.js';
import type { EventHub } from '../http/events.js';
import type { Logger } from '../log.js';
import { formatListen, type Config, type Listen } from './config.js';
import { Metrics } from './metrics.js';
import { trimWhenIdle } from './idle-trim.js';
import { deferredLog } from '../deferred-log.js';
import { OwnerHandle } from './owner-handle.js';
import type { OwnerThread } from './owner-thread.js';

export interface RunningDaemon {
  readonly address: string;
  status(): DaemonStatus;
  /** Resolves with the exit code once the daemon has stopped. */
  readonly done: Promise<number>;
  stop(reason: string): Promise<number>;
}

export function ownerOptions(config: Config, instance: string): OwnerOptions {
  const p = config.provider;
  return {
    stateFile: config.stateFile,
    provider: {
      name: p.name,
      tokenUrl: p.tokenUrl ?? '',
      issuer: p.issuer,
      clientId: p.clientId ?? '',
      clientSecret: p.clientSecret,
      authMethod: p.authMethod,
    },
    timeouts: {
      connectMs: Math.min(5_000, config.upstreamTimeoutMs),
      headersMs: config.upstreamTimeoutMs,
      bodyMs: config.upstreamTimeoutMs,
      totalMs: config.upstreamTimeoutMs,
    },
    wakeIntervalMs: config.wakeIntervalMs,
    owner: { pid: process.pid, instance, listen: null },
    moveCorruptAside: config.moveCorruptAside,
    logLevel: config.logLevel,
    scheduleRefresh: true,
  };
}

export class StartError extends Error {
  constructor(
    readonly error: ErrorData,
    readonly exitCode: number,
  ) {
    super(error.message);
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
  const starting = OwnerHandle.start(ownerOptions(config, randomUUID()), logging, {
    onSnapshot(snapshot, previous) {
      metrics.setSnapshot(snapshot);
      hub?.publish(snapshot, previous);
    },
    onEvent: (event) => metrics.record(event),
    onRestart: () => metrics.workerRestarted(),
    onFatal: (e) => fatal(e),
  }, thread);
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
  let address: string;
  try {
    address = await listen(server, config.listen);
  } catch (err) {
    // The owner's verdict comes first: "owned by pid N" (exit 75) says more than "address in use".
    const started = await starting;
    if (!started.ok) throw new StartError(started.error, exitCodeOf(started.error.code));
    await started.value.close(0);
    await started.value.destroy();
    const e = err as NodeJS.ErrnoException;
    const message = `cannot listen on ${formatListen(config.listen)}: ${e.code === 'EADDRINUSE' ? 'address already in use' : (e.code ?? e.message)}`;
    throw new StartError({ code: 'config_invalid', message }, 1);
  }
  const log = await logging;
  log.debug({ listen: address }, 'listening; the owner thread is starting');
  const started = await starting;
  if (!started.ok) {
    // Requests waiting for the owner are dropped with their connections: the process exits.
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    if (config.listen.kind === 'unix') removeSocket(config.listen.path);
    throw new StartError(started.error, exitCodeOf(started.error.code));
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
  if (process.env['TOKEND_TEST_HOOKS'] === '1') {
    // Test hook: SIGUSR2 kills the owner thread, to prove a restart loses nothing.
    process.on('SIGUSR2', () => void running.terminateThread());
  }

  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let stopping: Promise<number> | null = null;

  const stop = (reason: string, code = 0): Promise<number> => {
    stopping ??= (async () => {
      log.info({ reason }, 'shutting down');
      draining = true;
      trimmer.stop();
      hub!.closeAll();
      const closed = closeServer(server, 2_000);
      const result = await running.close(config.shutdownTimeoutMs);
      if (!result.ok) log.error({ code: result.error.code }, result.error.message);
      await closed;
      if (config.listen.kind === 'unix') removeSocket(config.listen.path);
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
  return { address, done, status: () => running.snapshot.status, stop: (reason) => stop(reason) };
}

async function listen(server: Server, where: Listen): Promise<string> {
  if (where.kind === 'unix') await removeStaleSocket(where.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (where.kind === 'unix') {
      // The socket is created 0600 from the start: no window where others may connect.
      const old = process.umask(0o177);
      try {
        server.listen(where.path, () => resolve());
      } finally {
        process.umask(old);
      }
    } else {
      server.listen(where.port, where.host, () => resolve());
    }
  });
  server.removeAllListeners('error');
  server.on('error', () => undefined);
  if (where.kind === 'unix') return formatListen(where);
  const addr = server.address() as AddressInfo;
  return formatListen({ kind: 'tcp', host: where.host, port: addr.port });
}

/** A socket file nobody answers on is left from a crash: remove it. A live one is left alone. */
async function removeStaleSocket(path: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (!live) removeSocket(path);
}

function removeSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
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
