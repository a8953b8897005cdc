/**
 * Prometheus metrics (prom-client), kept on the main thread: the owner
 * reports refreshes and writes as events, the HTTP layer times requests.
 * No label or value ever carries a token.
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
  #snapshot: Snapshot | null = null;

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
      const impl = new Instruments(client, () => this.#snapshot, this.#http);
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

  setSnapshot(snapshot: Snapshot): void {
    this.#snapshot = snapshot;
  }

  record(event: OwnerEvent): void {
    this.#apply((i) => i.record(event));
  }

  workerRestarted(): void {
    this.#apply((i) => i.workerRestarted());
  }

  /** Prometheus text format. */
  async text(): Promise<string> {
    return (await this.load()).registry.metrics();
  }
}

const statuses: readonly DaemonStatus[] = ['ok', 'waiting_for_login', 'expired', 'reauthorization_required', 'lock_lost'];

class Instruments {
  readonly registry: Registry;
  readonly #refreshes: Counter<'outcome'>;
  readonly #refreshSeconds: Histogram;
  readonly #persistSeconds: Histogram<'result'>;
  readonly #restarts: Counter;

  constructor(client: PromClient, snap: () => Snapshot | null, http: HttpStats | null) {
    const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = client;
    this.registry = new Registry();
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'tokend_' });
    this.#refreshes = new Counter({ name: 'tokend_refresh_total', help: 'Refresh attempts by outcome', labelNames: ['outcome'], registers });
    this.#refreshSeconds = new Histogram({
      name: 'tokend_refresh_duration_seconds',
      help: 'Duration of upstream refresh calls',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#persistSeconds = new Histogram({
      name: 'tokend_persist_duration_seconds',
      help: 'Duration of state-file writes (temp, fsync, rename, dir fsync)',
      labelNames: ['result'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    });
    // Collected from HttpStats at scrape time; the registry exports any object of this shape.
    for (const m of http?.metrics() ?? []) this.registry.registerMetric(m as unknown as Metric);
    this.#restarts = new Counter({ name: 'tokend_worker_restarts_total', help: 'Restarts of the owner thread', registers });
    new Gauge({
      name: 'tokend_token_expires_in_seconds',
      help: 'Seconds until the access token expires (negative when expired)',
      registers,
      collect() {
        const at = snap()?.token?.expiresAtMs;
        if (at !== null && at !== undefined) this.set((at - Date.now()) / 1000);
      },
    });
    new Gauge({
      name: 'tokend_last_refresh_success_timestamp_seconds',
      help: 'Unix time of the last successful refresh',
      registers,
      collect() {
        const at = snap()?.refresh.lastSuccessAtMs;
        if (at !== null && at !== undefined) this.set(at / 1000);
      },
    });
    new Gauge({
      name: 'tokend_lock_held',
      help: '1 while this daemon holds the state-file lock',
      registers,
      collect() {
        this.set(snap()?.lockHeld ? 1 : 0);
      },
    });
    new Gauge({
      name: 'tokend_persist_ok',
      help: '1 when the last state-file write succeeded',
      registers,
      collect() {
        this.set(snap()?.persist.ok === false ? 0 : 1);
      },
    });
    new Gauge({
      name: 'tokend_status',
      help: 'Daemon status: 1 for the current one',
      labelNames: ['status'],
      registers,
      collect() {
        const current = snap()?.status;
        for (const s of statuses) this.set({ status: s }, s === current ? 1 : 0);
      },
    });
  }

  record(event: OwnerEvent): void {
    if (event.type === 'refresh') {
      this.#refreshes.inc({ outcome: event.outcome });
      if (event.outcome !== 'skipped') this.#refreshSeconds.observe(event.seconds);
    } else if (event.type === 'persist') {
      this.#persistSeconds.observe({ result: event.ok ? 'ok' : 'error' }, event.seconds);
    }
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }
}
