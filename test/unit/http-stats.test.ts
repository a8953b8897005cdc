import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry, type Metric } from 'prom-client';
import { HttpStats, LATENCY_BUCKETS } from '../../src/daemon/http-stats.ts';

function exported(stats: HttpStats): Promise<string> {
  const registry = new Registry();
  for (const m of stats.metrics()) registry.registerMetric(m as unknown as Metric);
  return registry.metrics();
}

describe('HTTP request metrics', () => {
  it('counts by route and status, with cumulative latency buckets, sum and count', async () => {
    const stats = new HttpStats(['/token', '/state', 'other']);
    stats.request(0, 200, 0.00005);
    stats.request(0, 200, 0.0003);
    stats.request(0, 503, 0.002);
    stats.request(2, 404, 7);
    assert.equal(stats.total, 4);
    const text = await exported(stats);
    assert.match(text, /^# TYPE tokend_http_requests_total counter$/m);
    assert.match(text, /^tokend_http_requests_total\{route="\/token",status="200"\} 2$/m);
    assert.match(text, /^tokend_http_requests_total\{route="\/token",status="503"\} 1$/m);
    assert.match(text, /^tokend_http_requests_total\{route="other",status="404"\} 1$/m);
    assert.doesNotMatch(text, /route="\/state"/, 'a route with no requests has no samples');
    assert.match(text, /^# TYPE tokend_http_request_duration_seconds histogram$/m);
    assert.match(text, /^tokend_http_request_duration_seconds_bucket\{le="0.0001",route="\/token"\} 1$/m);
    assert.match(text, /^tokend_http_request_duration_seconds_bucket\{le="0.00025",route="\/token"\} 1$/m);
    assert.match(text, /^tokend_http_request_duration_seconds_bucket\{le="0.0005",route="\/token"\} 2$/m);
    assert.match(text, /^tokend_http_request_duration_seconds_bucket\{le="0.0025",route="\/token"\} 3$/m);
    assert.match(text, /^tokend_http_request_duration_seconds_bucket\{le="\+Inf",route="\/token"\} 3$/m);
    assert.match(text, /^tokend_http_request_duration_seconds_count\{route="\/token"\} 3$/m);
    const sum = Number(/^tokend_http_request_duration_seconds_sum\{route="\/token"\} (\S+)$/m.exec(text)?.[1]);
    assert.ok(Math.abs(sum - 0.00235) < 1e-12, `sum ${sum}`);
    // 7 s is above the last bound: only +Inf counts it.
    assert.match(text, new RegExp(`^tokend_http_request_duration_seconds_bucket\\{le="${LATENCY_BUCKETS.at(-1)}",route="other"\\} 0$`, 'm'));
    assert.match(text, /^tokend_http_request_duration_seconds_bucket\{le="\+Inf",route="other"\} 1$/m);
  });

  it('a value on a bucket bound counts in that bucket (le is inclusive)', async () => {
    const stats = new HttpStats(['/token']);
    stats.request(0, 200, 0.001);
    assert.match(await exported(stats), /^tokend_http_request_duration_seconds_bucket\{le="0.001",route="\/token"\} 1$/m);
  });

  it('reads the counts at each scrape', async () => {
    const stats = new HttpStats(['/token']);
    stats.request(0, 200, 0.001);
    const registry = new Registry();
    for (const m of stats.metrics()) registry.registerMetric(m as unknown as Metric);
    assert.match(await registry.metrics(), /status="200"\} 1$/m);
    stats.request(0, 200, 0.001);
    assert.match(await registry.metrics(), /status="200"\} 2$/m);
  });

  it('an out-of-range status is counted as 500, never dropped', async () => {
    const stats = new HttpStats(['/token']);
    stats.request(0, 700, 0.001);
    assert.match(await exported(stats), /^tokend_http_requests_total\{route="\/token",status="500"\} 1$/m);
  });
});
