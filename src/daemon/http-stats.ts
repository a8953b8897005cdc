/**
 * HTTP request counts and latency, kept in flat typed arrays: recording a
 * request is a few array writes, with no label hashing and no allocation.
 * prom-client's own Counter and Histogram hash their labels on every call,
 * which cost ~20% of GET /token's CPU per request in `npm run bench`.
 * At scrape time the arrays are read into two metric objects in the shape
 * prom-client's registry exports (the shape its cluster aggregator registers).
 */

/** Upper bounds, in seconds, of the latency histogram's buckets. */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5];

const MIN_STATUS = 100;
const STATUSES = 500; // 100–599

interface Sample {
  readonly metricName?: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}
interface Exported {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: readonly Sample[];
}
/**
 * A metric prom-client's registry can export: name, help, type and a `get()`
 * returning what `registry.getMetricsAsJSON()` returns for a metric.
 */
export interface CollectedMetric extends Exported {
  get(): Exported;
}

export class HttpStats {
  readonly #routes: readonly string[];
  readonly #counts: Float64Array;
  readonly #buckets: Float64Array;
  readonly #sums: Float64Array;
  readonly #totals: Float64Array;

  /** `routes`: the label of each route index; requests are recorded by index. */
  constructor(routes: readonly string[]) {
    this.#routes = routes;
    this.#counts = new Float64Array(routes.length * STATUSES);
    this.#buckets = new Float64Array(routes.length * LATENCY_BUCKETS.length);
    this.#sums = new Float64Array(routes.length);
    this.#totals = new Float64Array(routes.length);
  }

  request(route: number, status: number, seconds: number): void {
    const s = status >= MIN_STATUS && status < MIN_STATUS + STATUSES ? status - MIN_STATUS : 500 - MIN_STATUS;
    this.#counts[route * STATUSES + s]!++;
    let b = 0;
    while (b < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[b]!) b++;
    if (b < LATENCY_BUCKETS.length) this.#buckets[route * LATENCY_BUCKETS.length + b]!++;
    this.#sums[route]! += seconds;
    this.#totals[route]!++;
  }

  /** Requests recorded so far, all routes. */
  get total(): number {
    let n = 0;
    for (const t of this.#totals) n += t;
    return n;
  }

  /** `tokend_http_requests_total` and `tokend_http_request_duration_seconds`, read at scrape time. */
  metrics(): CollectedMetric[] {
    const requests = collected('tokend_http_requests_total', 'HTTP requests by route and status', 'counter', () => {
      const values: Sample[] = [];
      this.#routes.forEach((route, r) => {
        for (let s = 0; s < STATUSES; s++) {
          const value = this.#counts[r * STATUSES + s]!;
          if (value > 0) values.push({ labels: { route, status: String(s + MIN_STATUS) }, value });
        }
      });
      return values;
    });
    const name = 'tokend_http_request_duration_seconds';
    const latency = collected(name, 'HTTP request latency by route', 'histogram', () => {
      const values: Sample[] = [];
      this.#routes.forEach((route, r) => {
        const count = this.#totals[r]!;
        if (count === 0) return;
        let cumulative = 0;
        LATENCY_BUCKETS.forEach((le, b) => {
          cumulative += this.#buckets[r * LATENCY_BUCKETS.length + b]!;
          values.push({ metricName: `${name}_bucket`, labels: { le, route }, value: cumulative });
        });
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf', route }, value: count });
        values.push({ metricName: `${name}_sum`, labels: { route }, value: this.#sums[r]! });
        values.push({ metricName: `${name}_count`, labels: { route }, value: count });
      });
      return values;
    });
    return [requests, latency];
  }
}

function collected(name: string, help: string, type: 'counter' | 'histogram', values: () => Sample[]): CollectedMetric {
  const metric = { name, help, type, aggregator: 'sum' as const, values: [] };
  return { ...metric, get: () => ({ ...metric, values: values() }) };
}
