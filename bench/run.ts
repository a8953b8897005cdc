/**
 * npm run bench — what users feel, measured against a bare node:http server
 * in the same run. Absolute numbers on a shared 2-core machine drift by 2×
 * between runs; only the ratios within one run mean anything.
 *
 *   BENCH_ROUNDS=3 BENCH_SECONDS=5 npm run bench
 *
 * - GET /token throughput and p50/p99 latency, tokend vs bare, alternating
 *   A B A B, concurrency 50 and 1 (autocannon); servers pinned to core 0 and
 *   the load generator to core 1 where `taskset` exists.
 * - start to healthy (/healthz) and to the first token served (GET /token)
 *   with a valid token on disk, vs a bare `node -e` start (neither pinned)
 * - idle RSS of the whole process (both threads)
 * - SIGTERM to exit, idle and under load
 * - 1,000 concurrent GET /token on an expired token: upstream calls
 * - persist latency p99 from tokend's own metrics
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, stateFileWith, tempDir } from '../test/fixtures/daemon.ts';
import { MonzoStub } from '../test/fixtures/monzo-stub.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const BARE = fileURLToPath(new URL('./bare-server.mjs', import.meta.url));
const AUTOCANNON = fileURLToPath(new URL('../node_modules/autocannon/autocannon.js', import.meta.url));
const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
type Command = [file: string, ...args: string[]];
const pin = (core: number, cmd: Command): Command => (hasTaskset ? ['taskset', '-c', String(core), ...cmd] : cmd);

const rss = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (n: number, d = 2): string => n.toFixed(d);

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(port: number, path: string, status = 200): Promise<void> {
  for (;;) {
    const r = await get(port, path).catch(() => null);
    if (r?.status === status) return;
    await new Promise((r) => setTimeout(r, 2));
  }
}

function spawnServer(cmd: Command, env: NodeJS.ProcessEnv, pinned = true): ChildProcess {
  const [bin, ...args] = pinned ? pin(0, cmd) : cmd;
  return spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
}

function exited(p: ChildProcess): Promise<void> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r()));
}

/** CPU time (user + system) a process has used, in ms (clock ticks of 10 ms). */
const cpuMs = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1];
  if (fields === undefined) throw new Error(`/proc/${pid}/stat: no ") " after the command name`);
  const f = fields.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};

interface Load {
  rps: number;
  /** Server CPU per request, µs: steadier than req/s on a shared machine. */
  cpuUs: number;
  p50: number;
  p99: number;
  errors: number;
}

function autocannon(port: number, connections: number, seconds: number, pid: number, path = '/token'): Load {
  const cpu0 = cpuMs(pid);
  const [bin, ...args] = pin(1, [process.execPath, AUTOCANNON, '-j', '-c', String(connections), '-d', String(seconds), `http://127.0.0.1:${port}${path}`]);
  const r = spawnSync(bin, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const j = JSON.parse(r.stdout) as { requests: { average: number; total: number }; latency: { p50: number; p99: number }; errors: number; non2xx: number };
  const cpuUs = ((cpuMs(pid) - cpu0) * 1000) / Math.max(1, j.requests.total);
  return { rps: j.requests.average, cpuUs, p50: j.latency.p50, p99: j.latency.p99, errors: j.errors + j.non2xx };
}

/**
 * Sequential GET /token on one keep-alive connection, each timed with
 * performance.now(): autocannon reports latency in whole milliseconds, and
 * at concurrency 1 both servers answer in well under one.
 */
async function sequentialLatency(port: number, n: number): Promise<{ p50: number; p99: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const us: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/token', agent }, (res) => res.resume().on('end', resolve));
      req.on('error', reject);
      req.end();
    });
    us.push((performance.now() - t0) * 1000);
  }
  agent.destroy();
  us.sort((a, b) => a - b);
  return { p50: us[Math.floor(n * 0.5)]!, p99: us[Math.floor(n * 0.99)]! };
}

async function main(): Promise<void> {
  const stub = await new MonzoStub().start();
  const dir = tempDir('tokend-bench-');
  const results: Record<string, unknown> = { node: process.version, taskset: hasTaskset, rounds: ROUNDS, seconds: SECONDS };
  const tokendEnv = (stateFile: string, port: number): NodeJS.ProcessEnv => ({
    TOKEND_STATE_FILE: stateFile,
    TOKEND_TOKEN_URL: stub.tokenUrl,
    TOKEND_CLIENT_ID: stub.clientId,
    TOKEND_CLIENT_SECRET: stub.clientSecret,
    TOKEND_LISTEN: `127.0.0.1:${port}`,
    TOKEND_LOG_LEVEL: 'warn',
  });

  // ---- throughput and latency --------------------------------------------
  const stateFile = stateFileWith(dir, stub.login(), 6 * 3600);
  const tPort = await freePort();
  const tokend = spawnServer([process.execPath, CLI, 'serve'], tokendEnv(stateFile, tPort));
  await waitFor(tPort, '/readyz');
  await new Promise((r) => setTimeout(r, 2_000));
  const rssAtStartMb = rss(tokend.pid!);
  const body = (await get(tPort, '/token')).body;
  const bPort = await freePort();
  const bare = spawnServer([process.execPath, BARE, String(bPort)], { BARE_BODY: body });
  await waitFor(bPort, '/token');
  console.log(`GET /token, ${ROUNDS} rounds of ${SECONDS} s, alternating; taskset: ${hasTaskset ? 'servers core 0, load core 1' : 'not available'}`);
  const load: Record<string, unknown> = {};
  for (const c of [50, 1]) {
    autocannon(tPort, c, 1, tokend.pid!);
    autocannon(bPort, c, 1, bare.pid!);
    const pairs: Array<{ t: Load; b: Load }> = [];
    for (let i = 0; i < ROUNDS; i++) pairs.push({ b: autocannon(bPort, c, SECONDS, bare.pid!), t: autocannon(tPort, c, SECONDS, tokend.pid!) });
    const rpsRatios = pairs.map((p) => p.t.rps / p.b.rps);
    const p99Ratios = pairs.map((p) => (p.t.p99 || 0.001) / (p.b.p99 || 0.001));
    const cpuRatios = pairs.map((p) => p.t.cpuUs / p.b.cpuUs);
    console.log(`\n  concurrency ${c}`);
    console.log('  round   tokend req/s  bare req/s  ratio   tokend p50/p99 ms  bare p50/p99 ms');
    pairs.forEach((p, i) =>
      console.log(
        `  ${String(i + 1).padEnd(6)}  ${fmt(p.t.rps, 0).padStart(12)}  ${fmt(p.b.rps, 0).padStart(10)}  ${fmt(rpsRatios[i]!).padStart(5)}   ${`${p.t.p50}/${p.t.p99}`.padStart(17)}  ${`${p.b.p50}/${p.b.p99}`.padStart(15)}`,
      ),
    );
    console.log(
      `  median throughput ratio ${fmt(median(rpsRatios))}, median p99 ratio ${fmt(median(p99Ratios))}, errors ${pairs.reduce((a, p) => a + p.t.errors, 0)}`,
    );
    console.log(
      `  server CPU per request: tokend ${fmt(median(pairs.map((p) => p.t.cpuUs)), 1)} µs, bare ${fmt(median(pairs.map((p) => p.b.cpuUs)), 1)} µs, median ratio ${fmt(median(cpuRatios))}`,
    );
    load[`c${c}`] = { pairs, medianRpsRatio: median(rpsRatios), medianP99Ratio: median(p99Ratios), medianCpuRatio: median(cpuRatios) };
  }
  results['load'] = load;

  // ---- several accounts: GET /accounts/NAME/token ----------------------------
  // One daemon configured by a file with N accounts (each its own state file and owner), the last account's token
  // asked for: the same hot path as /token, with the account named in the path.
  const accountsLoad: Record<string, unknown> = {};
  for (const n of [1, 20]) {
    const accDir = join(dir, `accounts-${n}`);
    mkdirSync(accDir, { mode: 0o700 });
    const secretFile = join(accDir, 'client.secret');
    writeFileSync(secretFile, `${stub.clientSecret}\n`, { mode: 0o600 });
    // Global keys first (default_account among them), then one table per account.
    const lines = [`state_dir = ${JSON.stringify(accDir)}`, 'log_level = "warn"', 'default_account = "acct-0"'];
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const pair = stub.login();
      const state = { ...pair, token_type: 'Bearer', expires_at: new Date(now + 6 * 3600_000).toISOString(), obtained_at: new Date(now).toISOString() };
      writeFileSync(join(accDir, `acct-${i}.json`), JSON.stringify(state), { mode: 0o600 });
      lines.push('', `[accounts.acct-${i}]`, 'provider = "custom"', `token_url = ${JSON.stringify(stub.tokenUrl)}`);
      lines.push(`auth_url = ${JSON.stringify(`${stub.url}/auth`)}`, `client_id = ${JSON.stringify(stub.clientId)}`);
      lines.push(`client_secret_file = ${JSON.stringify(secretFile)}`, 'token_auth_method = "client_secret_post"');
    }
    const config = join(accDir, 'config.toml');
    writeFileSync(config, `${lines.join('\n')}\n`, { mode: 0o600 });
    const port = await freePort();
    const daemon = spawnServer([process.execPath, CLI, 'serve', '--config', config], { TOKEND_LISTEN: `127.0.0.1:${port}` });
    await waitFor(port, '/readyz');
    const path = `/accounts/acct-${n - 1}/token`;
    autocannon(port, 50, 1, daemon.pid!, path);
    autocannon(bPort, 50, 1, bare.pid!);
    const pairs: Array<{ t: Load; b: Load }> = [];
    for (let i = 0; i < ROUNDS; i++) pairs.push({ b: autocannon(bPort, 50, SECONDS, bare.pid!), t: autocannon(port, 50, SECONDS, daemon.pid!, path) });
    const rpsRatio = median(pairs.map((p) => p.t.rps / p.b.rps));
    const cpuRatio = median(pairs.map((p) => p.t.cpuUs / p.b.cpuUs));
    const errors = pairs.reduce((a, p) => a + p.t.errors, 0);
    console.log(
      `\n  ${n} account${n === 1 ? '' : 's'} (config file), GET ${path} at concurrency 50: median throughput ratio ${fmt(rpsRatio)}, CPU per request ratio ${fmt(cpuRatio)}, errors ${errors}`,
    );
    accountsLoad[`accounts${n}`] = { pairs, medianRpsRatio: rpsRatio, medianCpuRatio: cpuRatio, errors };
    daemon.kill('SIGTERM');
    await exited(daemon);
  }
  results['accounts'] = accountsLoad;

  // ---- latency at concurrency 1, microseconds -------------------------------------
  if (hasTaskset) spawnSync('taskset', ['-cp', '1', String(process.pid)]);
  await sequentialLatency(tPort, 500);
  await sequentialLatency(bPort, 500);
  const lat: Array<{ t: { p50: number; p99: number }; b: { p50: number; p99: number } }> = [];
  for (let i = 0; i < ROUNDS; i++) lat.push({ b: await sequentialLatency(bPort, 3000), t: await sequentialLatency(tPort, 3000) });
  if (hasTaskset) spawnSync('taskset', ['-cp', '0,1', String(process.pid)]);
  const latP50 = median(lat.map((l) => l.t.p50 / l.b.p50));
  const latP99 = median(lat.map((l) => l.t.p99 / l.b.p99));
  console.log(
    `\n  latency, one request at a time (3,000 per round, µs): tokend p50/p99 ${fmt(median(lat.map((l) => l.t.p50)), 0)}/${fmt(median(lat.map((l) => l.t.p99)), 0)}, bare ${fmt(median(lat.map((l) => l.b.p50)), 0)}/${fmt(median(lat.map((l) => l.b.p99)), 0)}; median ratios p50 ${fmt(latP50)}, p99 ${fmt(latP99)}`,
  );
  results['latencyC1'] = { rounds: lat, medianP50Ratio: latP50, medianP99Ratio: latP99 };

  // ---- idle RSS --------------------------------------------------------------
  // 2 s after the load, and again once tokend has been quiet long enough to
  // trim what the load grew (src/daemon/idle-trim.ts: from 6 s of quiet).
  await new Promise((r) => setTimeout(r, 2_000));
  const rssMb = rss(tokend.pid!);
  const bareRssMb = rss(bare.pid!);
  await new Promise((r) => setTimeout(r, 8_000));
  const rssIdleMb = rss(tokend.pid!);
  const bareRssIdleMb = rss(bare.pid!);
  console.log(
    `\nRSS of the whole process (both threads): ${fmt(rssAtStartMb, 1)} MB idle after start, ${fmt(rssMb, 1)} MB 2 s after the load, ${fmt(rssIdleMb, 1)} MB 10 s after it; bare server ${fmt(bareRssMb, 1)} / ${fmt(bareRssIdleMb, 1)} MB`,
  );
  results['idleRssMb'] = { afterStart: rssAtStartMb, afterLoad2s: rssMb, afterLoad10s: rssIdleMb, bare2s: bareRssMb, bare10s: bareRssIdleMb };
  bare.kill('SIGTERM');
  tokend.kill('SIGTERM');
  await Promise.all([exited(bare), exited(tokend)]);

  // ---- start to healthy / to the first token --------------------------------
  // Not pinned, like `node -e`: the owner thread boots on the other core.
  const nodeStarts: number[] = [];
  const healthyStarts: number[] = [];
  const tokenStarts: number[] = [];
  const stopTimesIdle: number[] = [];
  const stopTimesLoad: number[] = [];
  for (let i = 0; i < 7; i++) {
    let t0 = performance.now();
    spawnSync(process.execPath, ['-e', '0']);
    nodeStarts.push(performance.now() - t0);
    const port = await freePort();
    t0 = performance.now();
    const p = spawnServer([process.execPath, CLI, 'serve'], tokendEnv(stateFile, port), false);
    await waitFor(port, '/healthz');
    healthyStarts.push(performance.now() - t0);
    await waitFor(port, '/token');
    tokenStarts.push(performance.now() - t0);
    // SIGTERM to exit, idle (settled: a second after start)
    await new Promise((r) => setTimeout(r, 1_000));
    t0 = performance.now();
    p.kill('SIGTERM');
    await exited(p);
    stopTimesIdle.push(performance.now() - t0);
    // SIGTERM to exit, under load
    const port2 = await freePort();
    const q = spawnServer([process.execPath, CLI, 'serve'], tokendEnv(stateFile, port2), false);
    await waitFor(port2, '/readyz');
    let loading = true;
    const workers = Array.from({ length: 16 }, async () => {
      while (loading) await get(port2, '/token').catch(() => null);
    });
    await new Promise((r) => setTimeout(r, 300));
    t0 = performance.now();
    q.kill('SIGTERM');
    await exited(q);
    stopTimesLoad.push(performance.now() - t0);
    loading = false;
    await Promise.all(workers);
  }
  const node = median(nodeStarts);
  const healthy = median(healthyStarts);
  const firstToken = median(tokenStarts);
  console.log(
    `\nstart (valid token on disk), medians of 7: bare node -e ${fmt(node, 0)} ms; tokend healthy (/healthz 200) ${fmt(healthy, 0)} ms = ${fmt(healthy / node)}x, first token served (GET /token 200, lock held, state loaded) ${fmt(firstToken, 0)} ms = ${fmt(firstToken / node)}x`,
  );
  console.log(`SIGTERM to exit (state flushed, lock released): idle ${fmt(median(stopTimesIdle), 0)} ms, under load ${fmt(median(stopTimesLoad), 0)} ms`);
  results['startMs'] = { node: nodeStarts, healthy: healthyStarts, firstToken: tokenStarts, healthyRatio: healthy / node, firstTokenRatio: firstToken / node };
  results['stopMs'] = { idle: stopTimesIdle, load: stopTimesLoad };

  // ---- burst on an expired token -----------------------------------------------
  const expired = stateFileWith(tempDir('tokend-bench-'), stub.login(), 3600, {
    obtained_at: new Date(Date.now() - 7_200_000).toISOString(),
    expires_at: new Date(Date.now() - 60_000).toISOString(),
  });
  const burstPort = await freePort();
  stub.faults.push({ kind: 'delay', ms: 1_500 });
  const before = stub.calls.length;
  const b = spawnServer([process.execPath, CLI, 'serve'], tokendEnv(expired, burstPort));
  await waitFor(burstPort, '/healthz');
  const answers = await Promise.all(Array.from({ length: 1000 }, () => get(burstPort, '/token')));
  const upstream = stub.calls.length - before;
  const live = stub.live!.access_token;
  const withNew = answers.filter((a) => a.status === 200 && (JSON.parse(a.body) as { access_token: string }).access_token === live).length;
  console.log(`\nburst: 1000 concurrent GET /token on an expired token → ${upstream} upstream refresh(es), ${withNew}/1000 answered with the new token`);
  results['burst'] = { upstream, withNew };

  // ---- persist latency -----------------------------------------------------------
  for (let i = 0; i < 50; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: burstPort, path: '/refresh-tokens', method: 'POST', agent: false }, (res) =>
        res.resume().on('end', resolve),
      );
      req.on('error', reject);
      req.end();
    });
  }
  const metrics = (await get(burstPort, '/metrics')).body;
  const buckets = [...metrics.matchAll(/^tokend_persist_duration_seconds_bucket\{le="([^"]+)",result="ok"\} (\d+)/gm)].map((m) => ({
    le: m[1],
    n: Number(m[2]),
  }));
  const count = buckets.at(-1)?.n ?? 0;
  const p99 = buckets.find((x) => x.n >= count * 0.99)?.le ?? 'n/a';
  const sum = Number(/^tokend_persist_duration_seconds_sum\{result="ok"\} (\S+)/m.exec(metrics)?.[1] ?? 0);
  console.log(
    `persist (write, fsync, rename, dir fsync): ${count} writes, mean ${fmt((sum / count) * 1000)} ms, p99 ≤ ${p99 === '+Inf' ? p99 : `${Number(p99) * 1000} ms`} (histogram bucket)`,
  );
  results['persist'] = { count, meanMs: (sum / count) * 1000, p99Bucket: p99 };
  b.kill('SIGTERM');
  await exited(b);
  await stub.close();

  mkdirSync('bench-results', { recursive: true });
  writeFileSync('bench-results/latest.json', `${JSON.stringify(results, null, 2)}\n`);
  console.log('\nfull results: bench-results/latest.json');
}

await main();
