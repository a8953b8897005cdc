/**
 * The process against a hostile or careless machine: what every signal does,
 * a unix socket path that is not ours to delete, listen addresses that cannot
 * work, an owner record another user wrote, a dev directory another user made,
 * bad input on `tokend set --stdin`, a reader that goes away, and an owner
 * thread that dies of something.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TokendClient } from '../../src/client/index.ts';
import { CLI, Daemon, freePort, http, nodeForOtherUsers, Proc, runCli, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();
const { outputs } = suite;

function keep<T extends { output: string }>(p: T): T {
  outputs.push(p.output);
  return p;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const daemonOn = async (env: NodeJS.ProcessEnv = {}): Promise<{ d: Daemon; stateFile: string; dir: string }> => {
  const dir = tempDir();
  const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
  return { d: await Daemon.start(stubEnv(suite.stub, stateFile, env)), stateFile, dir };
};

describe('signals', () => {
  it('SIGUSR1 opens no inspector: the daemon logs that it ignored it, 127.0.0.1:9229 refuses connections, and it serves on', async () => {
    const { d } = await daemonOn();
    d.kill('SIGUSR1');
    const rec = await d.waitForLog('signal ignored');
    assert.equal(rec['signal'], 'SIGUSR1');
    assert.equal(await accepts(9229), false, 'an inspector listens on 9229');
    assert.equal((await d.request('GET', '/token')).status, 200);
    await suite.finish(d);
  });

  it('SIGUSR2, SIGALRM, SIGVTALRM, SIGIO, SIGSTKFLT, SIGSYS and SIGTRAP are logged and ignored: the daemon serves on', async () => {
    const { d } = await daemonOn();
    for (const signal of ['SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGIO', 'SIGSTKFLT', 'SIGSYS', 'SIGTRAP'] as const) {
      d.kill(signal);
      await d.waitForLine((l) => l.includes('"signal ignored"') && l.includes(`"${signal}"`));
      assert.equal((await d.request('GET', '/token')).status, 200, `after ${signal}`);
    }
    await suite.finish(d);
  });

  for (const signal of ['SIGQUIT', 'SIGHUP', 'SIGXCPU', 'SIGXFSZ', 'SIGPWR'] as const) {
    it(`${signal} is a clean stop: exit 0, the lock and the owner record removed`, async () => {
      const { d, stateFile } = await daemonOn();
      d.kill(signal);
      const exit = await d.exited;
      keep(d);
      assert.deepEqual(exit, { code: 0, signal: null }, d.output);
      assert.match(d.stderr, /"msg":"stopped"/);
      assert.ok(!existsSync(`${stateFile}.lock`), 'the lock is left behind');
      assert.ok(!existsSync(`${stateFile}.owner.json`), 'the owner record is left behind');
    });
  }

  it('under GNU timeout (one SIGTERM delivered twice), a refresh in flight still completes and its new pair is on disk', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const env = { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0', TOKEND_LOG_LEVEL: 'debug' };
    // timeout's own clock is SIGALRM: sending it one makes the timeout fire now, deterministically.
    const p = new Proc(['--preserve-status', '-s', 'TERM', '600', process.execPath, CLI, 'serve'], env, { command: 'timeout' });
    const address = String((await p.waitForLog('tokend serving'))['listen']);
    suite.stub.faults.push({ kind: 'delay', ms: 1_500 });
    const arrived = suite.stub.nextRequest();
    void http(address, 'POST', '/refresh-tokens').catch(() => null);
    await arrived;
    p.kill('SIGALRM');
    const exit = await p.exited;
    keep(p);
    assert.equal(exit.code, 0, p.output);
    const file = JSON.parse(readFileSync(stateFile, 'utf8'));
    assert.equal(file.refresh_token, suite.stub.live!.refresh_token, 'the rotated refresh token is on disk');
    assert.equal(file.refresh_intent, null);
  });

  it('`tokend login` ignores SIGUSR1 too (it holds the client secret): no inspector, and the login still waits', async () => {
    const dir = tempDir();
    const env = {
      TOKEND_STATE_FILE: join(dir, 'tokens.json'),
      TOKEND_CLIENT_ID: 'oauth2client_test',
      TOKEND_CLIENT_SECRET: 'mnzconf.secret-for-tests',
      TOKEND_REDIRECT_URI: `http://127.0.0.1:${await freePort()}/callback`,
    };
    const p = new Proc(['login', '--no-browser', '--no-wait-approval'], env);
    await p.waitForLine((l) => l.startsWith('waiting for the authorization callback'));
    p.kill('SIGUSR1');
    await p.waitForLine((l) => l === 'tokend: ignored SIGUSR1');
    assert.equal(await accepts(9229), false, 'an inspector listens on 9229');
    p.kill('SIGINT');
    const exit = await p.exited;
    keep(p);
    assert.equal(exit.code, 1);
    assert.match(p.stderr, /login cancelled/);
  });
});

describe('the unix socket', () => {
  const unixEnv = (stateFile: string, path: string): NodeJS.ProcessEnv => ({ ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: `unix:${path}` });

  it('pointed at the state file, it refuses (exit 2, one line) and the state file survives as it was', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const before = readFileSync(stateFile, 'utf8');
    const r = keep(await runCli(['serve'], unixEnv(stateFile, stateFile)));
    assert.equal(r.result.code, 2, r.output);
    assert.match(r.stderr, /exists and is not a socket; refusing to replace it/);
    assert.equal(readFileSync(stateFile, 'utf8'), before);
    assert.ok(!existsSync(`${stateFile}.lock`), 'the lock is released');
  });

  it('a stale socket (nobody answers) is replaced, and the daemon serves on it', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const path = join(dir, 'tokend.sock');
    // A socket bound and never listened on: exactly what a crashed daemon leaves.
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
    const d = await Daemon.start(unixEnv(stateFile, path));
    assert.equal((await http(d.address, 'GET', '/token', { socketPath: path })).status, 200);
    await suite.finish(d);
    assert.ok(!existsSync(path), 'its own socket is removed at stop');
  });

  it('a live socket is "in use": exit 1, and the other server keeps its socket', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const path = join(dir, 'tokend.sock');
    const other: Server = createServer((s) => s.end());
    await new Promise<void>((resolve) => other.listen(path, resolve));
    try {
      const r = keep(await runCli(['serve'], unixEnv(stateFile, path)));
      assert.equal(r.result.code, 1, r.output);
      assert.match(r.stderr, /is in use: another process answers on it/);
      assert.equal(
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => !l.startsWith('{')).length,
        1,
        'one line',
      );
      assert.ok(existsSync(path));
      await new Promise<void>((resolve, reject) => connect(path).once('connect', resolve).once('error', reject));
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });

  it('at stop, a socket path that is no longer our socket is left alone', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const path = join(dir, 'tokend.sock');
    const d = await Daemon.start(unixEnv(stateFile, path));
    renameSync(path, join(dir, 'moved.sock'));
    writeFileSync(path, 'not a socket');
    await suite.finish(d);
    assert.equal(readFileSync(path, 'utf8'), 'not a socket');
  });

  it('a socket path longer than sun_path allows is refused (exit 2) instead of being cut short', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const path = join(dir, `${'s'.repeat(120)}.sock`);
    const r = keep(await runCli(['serve'], unixEnv(stateFile, path)));
    assert.equal(r.result.code, 2, r.output);
    assert.match(r.stderr, /the socket path is too long: at most 107 bytes/);
  });
});

describe('listen addresses that cannot work', () => {
  it('an address not on this host (EADDRNOTAVAIL) exits 2 with one line', async () => {
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const r = keep(await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '192.0.2.1:4242', TOKEND_API_KEY: 'an-api-key-for-this-test' }));
    assert.equal(r.result.code, 2, r.output);
    assert.match(r.stderr, /^tokend: cannot listen on 192\.0\.2\.1:4242: the address is not available on this host$/m);
  });

  it('a privileged port for an unprivileged user (EACCES) exits 2 with one line', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    chownSync(dir, 65534, 65534);
    chownSync(stateFile, 65534, 65534);
    const p = new Proc(
      ['-u', 'nobody', '--', nodeForOtherUsers(), CLI, 'serve'],
      { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:1' },
      { command: 'runuser' },
    );
    const exit = await p.exited;
    keep(p);
    assert.equal(exit.code, 2, p.output);
    assert.match(p.stderr, /^tokend: cannot listen on 127\.0\.0\.1:1: permission denied \(ports below 1024 need privileges\)$/m);
  });

  it('an address in use stays exit 1', async () => {
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const port = (other.address() as { port: number }).port;
    try {
      const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
      const r = keep(await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: `127.0.0.1:${port}` }));
      assert.equal(r.result.code, 1, r.output);
      assert.match(r.stderr, /address already in use/);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });
});

describe('an owner record another user could have written', () => {
  /** A listener posing as tokend: counts what reaches it. */
  async function impostor(): Promise<{ server: HttpServer; port: number; seen: string[] }> {
    const seen: string[] = [];
    const server = createHttpServer((req, res) => {
      seen.push(String(req.headers['authorization'] ?? ''));
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ access_token: 'forged-token-from-impostor', token_type: 'Bearer', expires_at: null, expires_in: null }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { server, port: (server.address() as { port: number }).port, seen };
  }

  function plantRecord(dir: string, port: number): string {
    const stateFile = join(dir, 'tokens.json');
    writeFileSync(
      `${stateFile}.owner.json`,
      JSON.stringify({ pid: process.pid, host: hostname(), instance: 'x', listen: `127.0.0.1:${port}`, startedAt: new Date().toISOString() }),
    );
    return stateFile;
  }

  const apiKey = 'api-key-that-must-stay-home';
  // Nothing of ours listens at the default address in these tests: point it at a closed port.
  const run = async (stateFile: string) => keep(await runCli(['token'], { TOKEND_STATE_FILE: stateFile, TOKEND_API_KEY: apiKey }));

  it('in a directory writable by every user: `tokend token` ignores it, says why, and the listener never receives the API key', async () => {
    const fake = await impostor();
    try {
      const dir = tempDir();
      chmodSync(dir, 0o777);
      const r = await run(plantRecord(dir, fake.port));
      assert.deepEqual(fake.seen, [], 'the API key reached the listener named by the forged record');
      assert.match(r.stderr, /^tokend: ignoring the owner record: .* is writable by every user/m);
      assert.ok(!r.stdout.includes('forged-token'), 'printed the forged token');
      assert.notEqual(r.result.code, 0);
    } finally {
      fake.server.close();
    }
  });

  it('owned by another user: ignored as well, by the CLI and by the client library', async () => {
    const fake = await impostor();
    try {
      const dir = tempDir();
      const stateFile = plantRecord(dir, fake.port);
      chownSync(`${stateFile}.owner.json`, 65534, 65534);
      const r = await run(stateFile);
      assert.match(r.stderr, /ignoring the owner record: .* is owned by uid 65534/);
      const warnings: string[] = [];
      const client = new TokendClient({ stateFile, apiKey, onWarning: (w) => warnings.push(w), timeoutMs: 2_000 });
      await assert.rejects(client.getAccessToken());
      await client.close();
      assert.equal(warnings.length, 1);
      assert.deepEqual(fake.seen, [], 'the API key reached the listener named by the record');
    } finally {
      fake.server.close();
    }
  });

  it('in a private directory it is trusted (the control: the same record, followed)', async () => {
    const fake = await impostor();
    try {
      const r = await run(plantRecord(tempDir(), fake.port));
      assert.equal(r.result.code, 0, r.output);
      assert.deepEqual(fake.seen, [`Bearer ${apiKey}`]);
    } finally {
      fake.server.close();
    }
  });
});

describe('a listener another user runs', { skip: process.getuid?.() !== 0 && 'needs root to act as another user' }, () => {
  /** A listener posing as tokend, run by uid 65534: prints one line per request it receives. */
  const FAKE = `
const [where] = JSON.parse(process.argv[1]);
const server = require('http').createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    process.stdout.write(JSON.stringify({ auth: req.headers.authorization ?? null, body }) + '\\n');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ access_token: 'forged-token-from-squatter', token_type: 'Bearer', expires_at: null, expires_in: null, version: 1 }));
  });
});
server.listen(...(where.startsWith('unix:') ? [where.slice(5)] : [Number(where.split(':')[1]), '127.0.0.1']), () => process.stdout.write('listening\\n'));
`;
  async function squatter(where: string): Promise<{ seen: () => string; stop: () => void }> {
    const child = spawn(nodeForOtherUsers(), ['-e', FAKE, JSON.stringify([where])], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    await new Promise<void>((resolve) =>
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('listening\n')) resolve();
      }),
    );
    return { seen: () => out.replace('listening\n', ''), stop: () => void child.kill() };
  }
  const apiKey = 'api-key-that-must-stay-home';

  it('on the TCP address: `tokend token` and `tokend set` refuse to talk to it; it receives neither the API key nor the refresh token', async () => {
    const where = `127.0.0.1:${await freePort()}`;
    const fake = await squatter(where);
    try {
      const token = keep(await runCli(['token'], { TOKEND_LISTEN: where, TOKEND_API_KEY: apiKey }));
      assert.equal(token.result.code, 1, token.output);
      assert.match(token.stderr, /^tokend: the listener on 127\.0\.0\.1:\d+ belongs to uid 65534, not to you or root/m);
      assert.ok(!token.stdout.includes('forged-token'));
      const set = keep(
        await runCli(
          ['set', '--stdin'],
          { TOKEND_LISTEN: where, TOKEND_API_KEY: apiKey },
          JSON.stringify({ access_token: 'acc_mine', refresh_token: 'ref_mine_never_shared' }),
        ),
      );
      assert.equal(set.result.code, 1, set.output);
      assert.equal(fake.seen(), '', 'the squatter received a request');
    } finally {
      fake.stop();
    }
  });

  it('on a unix socket: refused by the client; and the daemon refuses a socket directory others can write without the sticky bit', async () => {
    const dir = tempDir();
    chmodSync(dir, 0o1777);
    const where = `unix:${join(dir, 'tokend.sock')}`;
    const fake = await squatter(where);
    try {
      const r = keep(await runCli(['token'], { TOKEND_LISTEN: where, TOKEND_API_KEY: apiKey }));
      assert.equal(r.result.code, 1, r.output);
      assert.match(r.stderr, /belongs to uid 65534, not to you or root/);
      assert.equal(fake.seen(), '');
    } finally {
      fake.stop();
    }
    const open = tempDir();
    chmodSync(open, 0o777);
    const stateFile = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const d = keep(await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: `unix:${join(open, 'tokend.sock')}` }));
    assert.equal(d.result.code, 2, d.output);
    assert.match(d.stderr, /writable by other users without the sticky bit/);
    // The same one level up: a private socket directory inside an open one can be swapped whole.
    const inner = join(open, 'private');
    mkdirSync(inner, { mode: 0o700 });
    const nested = keep(await runCli(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: `unix:${join(inner, 'tokend.sock')}` }));
    assert.equal(nested.result.code, 2, nested.output);
    assert.match(nested.stderr, /lies inside .* which other users may write to without the sticky bit/);
  });
});

describe('tokend dev refuses a directory another user could use', () => {
  /** A private file of the victim's, outside the dev directory. */
  function victimFile(): string {
    const path = join(tempDir(), 'private.key');
    writeFileSync(path, 'the victim private key', { mode: 0o600 });
    return path;
  }

  const dev = async (tmp: string, args: string[] = []) =>
    keep(await runCli(['dev', '--provider-port', String(await freePort()), ...args], { TMPDIR: tmp, TOKEND_LISTEN: '127.0.0.1:0' }));

  const devDir = (tmp: string): string => join(tmp, `tokend-dev-${process.getuid!()}`);

  it('a directory writable by every user, with a planted symlink in it: refused (exit 2, why and what to do), the victim file untouched', async () => {
    const tmp = tempDir();
    const victim = victimFile();
    mkdirSync(devDir(tmp));
    chmodSync(devDir(tmp), 0o777);
    symlinkSync(victim, join(devDir(tmp), 'provider.json'));
    symlinkSync(victim, join(devDir(tmp), 'client-secret'));
    for (const args of [[], ['--fresh']]) {
      const r = await dev(tmp, args);
      assert.equal(r.result.code, 2, r.output);
      assert.match(r.stderr, /^tokend: refusing the dev directory: .* is writable by every user .*remove it if it is not yours, or pass --dir/m);
      assert.equal(readFileSync(victim, 'utf8'), 'the victim private key');
    }
  });

  it('a private directory inside one others may write (no sticky bit): refused too, since they could swap the whole directory', async () => {
    const tmp = tempDir();
    chmodSync(tmp, 0o777);
    mkdirSync(devDir(tmp), { mode: 0o700 });
    const r = await dev(tmp);
    assert.equal(r.result.code, 2, r.output);
    assert.match(r.stderr, /^tokend: refusing the dev directory: .* lies inside .* which other users may write to without the sticky bit/m);
    assert.deepEqual(readdirSync(devDir(tmp)), [], 'nothing written');
  });

  it('a symlink in place of the directory: refused, with or without --fresh; the directory it points to is untouched', async () => {
    const tmp = tempDir();
    const victim = victimFile();
    const target = join(victim, '..');
    symlinkSync(target, devDir(tmp));
    for (const args of [[], ['--fresh']]) {
      const r = await dev(tmp, args);
      assert.equal(r.result.code, 2, r.output);
      assert.match(r.stderr, /is a symbolic link/);
      assert.equal(readFileSync(victim, 'utf8'), 'the victim private key');
    }
  });

  it("the provider's port held by another server: exit 1, and that server never hears from tokend dev (no client secret sent)", async () => {
    const seen: string[] = [];
    const other = createHttpServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.end();
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = (other.address() as { port: number }).port;
      const r = keep(await runCli(['dev', '--provider-port', String(port)], { TMPDIR: tempDir(), TOKEND_LISTEN: '127.0.0.1:0' }));
      assert.equal(r.result.code, 1, r.output);
      assert.match(r.stderr, new RegExp(`the dev provider's port ${port} is in use`));
      assert.deepEqual(seen, []);
    } finally {
      other.close();
    }
  });

  it('a directory owned by another user: refused', async () => {
    const tmp = tempDir();
    mkdirSync(devDir(tmp), { mode: 0o700 });
    chownSync(devDir(tmp), 65534, 65534);
    const r = await dev(tmp);
    assert.equal(r.result.code, 2, r.output);
    assert.match(r.stderr, /is owned by uid 65534/);
  });
});

describe('tokend set --stdin', () => {
  const inputs: Array<[string, string | Buffer, RegExp]> = [
    ['null', 'null', /must be a JSON object .*, not null$/],
    ['an array', '[]', /not an array$/],
    ['a string', '"x"', /not a string$/],
    ['a number', '42', /not a number$/],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /not valid UTF-8$/],
    ['empty input', '', /standard input is empty/],
  ];
  for (const [name, input, message] of inputs) {
    it(`${name}: one clear line, exit 2`, async () => {
      const child = spawn(process.execPath, [CLI, 'set', '--stdin'], { env: { PATH: process.env['PATH'], TOKEND_LISTEN: '127.0.0.1:1' } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.stdin.end(input);
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      assert.equal(code, 2, stderr);
      assert.equal(stdout, '');
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, stderr);
      assert.match(lines[0]!, message);
    });
  }
});

describe('a reader that goes away', () => {
  it('`tokend token` into a closed pipe: no stack trace, exit 0', async () => {
    const { d } = await daemonOn();
    const child = spawn(process.execPath, [CLI, 'token'], { env: { PATH: process.env['PATH'], TOKEND_LISTEN: d.address }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(stderr, '');
    assert.equal(code, 0);
    await suite.finish(d);
  });
});

describe('the owner thread dies of something', () => {
  // Node 24's V8 fights a worker's heap limit for over a minute before giving up: the out-of-memory death is timed on Node 20.
  it(
    'out of memory: the cause (ERR_WORKER_OUT_OF_MEMORY) is logged, a new owner reloads and serves',
    { skip: !process.versions.node.startsWith('20.') && 'Node 24 takes minutes to end a worker out of memory' },
    async () => {
      const dir = tempDir();
      const crash = join(dir, 'crash-owner');
      const { d } = await daemonOn({ TOKEND_TEST_HOOKS: '1', TOKEND_TEST_CRASH_OWNER: crash });
      writeFileSync(crash, 'oom');
      const died = await d.waitForLog('owner thread died; starting a new one from the state file', 60_000);
      assert.match(String(died['cause']), /ERR_WORKER_OUT_OF_MEMORY/);
      await d.waitForLog('owner thread restarted');
      assert.equal((await d.request('GET', '/token')).status, 200);
      await suite.finish(d);
    },
  );

  it('a crash loop: the daemon gives up (exit 1) and its last line names the cause', async () => {
    const dir = tempDir();
    const crash = join(dir, 'crash-owner');
    const { d, stateFile } = await daemonOn({ TOKEND_TEST_HOOKS: '1', TOKEND_TEST_CRASH_OWNER: crash });
    writeFileSync(crash, 'loop');
    const exit = await d.exited;
    keep(d);
    assert.equal(exit.code, 1, d.output);
    const fatal = d.stderr.split('\n').filter((l) => l.includes('"level":60'));
    assert.equal(fatal.length, 1, d.output);
    assert.match(fatal[0]!, /test hook: owner thread crashed \(loop\)/);
    assert.doesNotMatch(fatal[0]!, /it is being restarted/);
    assert.ok(existsSync(stateFile));
  });
});
