/**
 * Prometheus metrics (prom-client), kept on the main thread: the owner
 * reports refreshes and writes as events, the HTTP layer times requests.
 * No label or value ever carries a token.
 */
import type { Counter, Histogram, Registry } from 'prom-client';
import type { DaemonStatus, OwnerEvent, Snapshot } from '../contract.js';

type PromClient = typeof import('prom-client');

/** Requests held, compactly, until prom-client loads. */
const HELD_REQUESTS = 32_768;

/**
 * The daemon's metrics. prom-client (with the OpenTelemetry API it pulls in,
 * ~11 MB here) loads on the first scrape, or once many requests are held: a
 * daemon nobody scrapes never pays for it. Until then requests are held in
 * typed arrays and other events in a short queue, and replayed exactly.
 */
export class Metrics {
  #impl: Instruments | null = null;
  #loading: Promise<Instruments> | null = null;
  readonly #pending: Array<(i: Instruments) => void> = [];
  readonly #routes: string[] = [];
  readonly #heldRoute = new Uint8Array(HELD_REQUESTS);
  readonly #heldStatus = new Uint16Array(HELD_REQUESTS);
  readonly #heldSeconds = new Float64Array(HELD_REQUESTS);
  #held = 0;
  #snapshot: Snapshot | null = null;

  load(): Promise<Instruments> {
    this.#loading ??= import('prom-client').then((client) => {
      const impl = new Instruments(client, () => this.#snapshot);
      for (let i = 0; i < this.#held; i++) impl.request(this.#routes[this.#heldRoute[i]!]!, this.#heldStatus[i]!, this.#heldSeconds[i]!);
      this.#held = 0;
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

  request(route: string, status: number, seconds: number): void {
    if (this.#impl) return this.#impl.request(route, status, seconds);
    if (this.#held === HELD_REQUESTS) return this.#apply((i) => i.request(route, status, seconds));
    let index = this.#routes.indexOf(route);
    if (index === -1) index = this.#routes.push(route) - 1;
    this.#heldRoute[this.#held] = index;
    this.#heldStatus[this.#held] = status;
    this.#heldSeconds[this.#held++] = seconds;
    if (this.#held === HELD_REQUESTS / 2) void this.load();
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
  readonly #requests: Counter<'route' | 'status'>;
  readonly #requestSeconds: Histogram<'route'>;
  readonly #restarts: Counter;
  readonly #requestChildren = new Map<string, { inc(): void }>();
  readonly #latencyChildren = new Map<string, { observe(v: number): void }>();

  constructor(client: PromClient, snap: () => Snapshot | null) {
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
    this.#requests = new Counter({ name: 'tokend_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'], registers });
    this.#requestSeconds = new Histogram({
      name: 'tokend_http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['route'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5],
      registers,
    });
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

  /** Per-request: label children are bound once per route and status, so the hot path hashes no labels. */
  request(route: string, status: number, seconds: number): void {
    const key = `${route} ${status}`;
    let counter = this.#requestChildren.get(key);
    if (!counter) this.#requestChildren.set(key, (counter = this.#requests.labels(route, String(status))));
    counter.inc();
    let timer = this.#latencyChildren.get(route);
    if (!timer) this.#latencyChildren.set(route, (timer = this.#requestSeconds.labels(route)));
    timer.observe(seconds);
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }
}
