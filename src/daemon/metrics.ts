/**
 * Prometheus metrics (prom-client), kept on the main thread: the owners
 * report refreshes and writes as events, the HTTP layer times requests.
 * No label or value ever carries a token.
 *
 * Each account's series (expiry, refreshes, writes, lock, status) carry an
 * `account` label when the daemon is configured by a config file. A daemon
 * configured by the environment (one account, `default`) exports the series
 * exactly as before, without the label, so its dashboards and alerts keep
 * matching.
 */
import type { Counter, Histogram, Metric, Registry } from 'prom-client';
import type { DaemonStatus, OwnerEvent, Snapshot } from '../shared/contract.js';
import { HttpStats } from './http-stats.js';

type PromClient = typeof import('prom-client');

/**
 * The daemon's metrics. prom-client (with the OpenTelemetry API it pulls in,
 * ~11 MB here) loads on the first scrape: a daemon nobody scrapes never pays
 * for it. Until then owner events wait in a short queue and are replayed
 * exactly. HTTP requests are counted in `HttpStats` from the first request.
 */
export class Metrics {
  #http: HttpStats | null = null;
  #impl: Instruments | null = null;
  #loading: Promise<Instruments> | null = null;
  readonly #pending: Array<(i: Instruments) => void> = [];
  /** The latest snapshot of each account, in config order. */
  readonly #snapshots = new Map<string, Snapshot>();
  readonly #labelled: boolean;

  /** `labelled`: each account's series carry an `account` label (see the module comment). */
  constructor(labelled = false) {
    this.#labelled = labelled;
  }

  /** Counts HTTP requests by route index; `routes` labels each index. */
  trackRequests(routes: readonly string[]): HttpStats {
    this.#http = new HttpStats(routes);
    return this.#http;
  }

  /** HTTP requests answered so far. */
  requestsServed(): number {
    return this.#http?.total ?? 0;
  }

  load(): Promise<Instruments> {
    this.#loading ??= import('prom-client').then((client) => {
      const impl = new Instruments(client, this.#snapshots, this.#http, this.#labelled);
      for (const apply of this.#pending.splice(0)) apply(impl);
      this.#impl = impl;
      return impl;
    });
    return this.#loading;
  }

  #apply(fn: (i: Instruments) => void): void {
    if (this.#impl) fn(this.#impl);
    else if (this.#pending.length < 10_000) this.#pending.push(fn);
  }

  setSnapshot(account: string, snapshot: Snapshot): void {
    this.#snapshots.set(account, snapshot);
  }

  /** The accounts in config order (after a reload); an account not named stops being exported. */
  setAccounts(names: readonly string[]): void {
    const kept = names.filter((n) => this.#snapshots.has(n)).map((n) => [n, this.#snapshots.get(n)!] as const);
    this.#snapshots.clear();
    for (const [n, s] of kept) this.#snapshots.set(n, s);
  }

  record(account: string, event: OwnerEvent): void {
    this.#apply((i) => i.record(account, event));
  }

  workerRestarted(): void {
    this.#apply((i) => i.workerRestarted());
  }

  /** Prometheus text format. */
  async text(): Promise<string> {
    return (await this.load()).registry.metrics();
  }
}

const statuses: readonly DaemonStatus[] = ['ok', 'waiting_for_login', 'expired', 'reauthorization_required', 'lock_lost', 'failed'];

type Labels = Record<string, string>;

class Instruments {
  readonly registry: Registry;
  readonly #refreshes: Counter;
  readonly #refreshSeconds: Histogram;
  readonly #persistSeconds: Histogram;
  readonly #restarts: Counter;
  /** An account's labels (none unless labelled), with `extra`. */
  readonly #labels: (account: string, extra?: Labels) => Labels;

  constructor(client: PromClient, snapshots: ReadonlyMap<string, Snapshot>, http: HttpStats | null, labelled: boolean) {
    const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = client;
    this.registry = new Registry();
    const registers = [this.registry];
    const labels = (this.#labels = (account, extra = {}) => (labelled ? { account, ...extra } : extra));
    const named = (...names: string[]): string[] => (labelled ? ['account', ...names] : names);
    collectDefaultMetrics({ register: this.registry, prefix: 'tokend_' });
    this.#refreshes = new Counter({ name: 'tokend_refresh_total', help: 'Refresh attempts by outcome', labelNames: named('outcome'), registers });
    this.#refreshSeconds = new Histogram({
      name: 'tokend_refresh_duration_seconds',
      help: 'Duration of upstream refresh calls',
      labelNames: named(),
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#persistSeconds = new Histogram({
      name: 'tokend_persist_duration_seconds',
      help: 'Duration of state-file writes (temp, fsync, rename, dir fsync)',
      labelNames: named('result'),
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    });
    // Collected from HttpStats at scrape time; the registry exports any object of this shape.
    for (const m of http?.metrics() ?? []) this.registry.registerMetric(m as unknown as Metric);
    this.#restarts = new Counter({ name: 'tokend_worker_restarts_total', help: 'Restarts of the owner thread', registers });
    /** A gauge with one sample per account, from its latest snapshot (none where `value` is null). */
    const perAccount = (name: string, help: string, value: (s: Snapshot) => number | null): void =>
      void new Gauge({
        name,
        help,
        labelNames: named(),
        registers,
        collect() {
          this.reset();
          for (const [account, s] of snapshots) {
            const v = value(s);
            if (v !== null) this.set(labels(account), v);
          }
        },
      });
    perAccount('tokend_token_expires_in_seconds', 'Seconds until the access token expires (negative when expired)', (s) => {
      const at = s.token?.expiresAtMs;
      return at === null || at === undefined ? null : (at - Date.now()) / 1000;
    });
    perAccount('tokend_last_refresh_success_timestamp_seconds', 'Unix time of the last successful refresh', (s) => {
      const at = s.refresh.lastSuccessAtMs;
      return at === null ? null : at / 1000;
    });
    perAccount('tokend_lock_held', '1 while this daemon holds the state-file lock', (s) => (s.lockHeld ? 1 : 0));
    perAccount('tokend_persist_ok', '1 when the last state-file write succeeded', (s) => (s.persist.ok ? 1 : 0));
    new Gauge({
      name: 'tokend_status',
      help: 'Daemon status: 1 for the current one',
      labelNames: named('status'),
      registers,
      collect() {
        this.reset();
        for (const [account, snap] of snapshots) for (const s of statuses) this.set(labels(account, { status: s }), s === snap.status ? 1 : 0);
      },
    });
  }

  record(account: string, event: OwnerEvent): void {
    if (event.type === 'refresh') {
      this.#refreshes.inc(this.#labels(account, { outcome: event.outcome }));
      if (event.outcome !== 'skipped') this.#refreshSeconds.observe(this.#labels(account), event.seconds);
    } else if (event.type === 'persist') {
      this.#persistSeconds.observe(this.#labels(account, { result: event.ok ? 'ok' : 'error' }), event.seconds);
    }
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }
}
