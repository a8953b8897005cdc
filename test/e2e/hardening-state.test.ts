/**
 * The state file against a careless or hostile machine: links, files that are
 * not state files, unsafe directories, planted symlinks, absurd contents and
 * answers, hand-edits while running, and callers that ask too often. Each case
 * is driven from outside, as the built CLI sees it.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Daemon, findLeaks, nodeForOtherUsers, Proc, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { stubSuite } from '../fixtures/suite.ts';

const suite = stubSuite();
const fileOf = (path: string): Record<string, unknown> => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;

/**
 * Start a daemon that must refuse: its exit code and what it printed. One
 * that serves (or hangs) instead is killed and fails the test; a refusal
 * takes well under a second, so the 20 s limit only bounds that failure.
 */
async function refused(stateFile: string): Promise<{ code: number | null; stderr: string }> {
  const p = new Proc(['serve'], { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0' });
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([p.exited, new Promise<'running'>((resolve) => (timer = setTimeout(resolve, 20_000, 'running')))]);
  clearTimeout(timer);
  if (outcome === 'running') {
    p.kill('SIGKILL');
    await p.exited;
    assert.fail(`the daemon did not refuse:\n${p.output}`);
  }
  const exit = await p.exited;
  suite.outputs.push(p.output);
  assert.equal(p.stdout, '');
  return { code: exit.code, stderr: p.stderr };
}

describe('refresh tokens are never dropped', () => {
  it('POST /set-tokens without refresh_token keeps the current one, which still refreshes', async () => {
    const { d, stateFile } = await suite.start();
    const before = fileOf(stateFile);
    const set = await d.request('POST', '/set-tokens', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ access_token: 'acc_by_hand_0001' }),
    });
    assert.equal(set.status, 200, set.text);
    assert.equal(fileOf(stateFile)['refresh_token'], before['refresh_token']);
    assert.equal(fileOf(stateFile)['access_token'], 'acc_by_hand_0001');
    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 200, r.text);
    assert.equal(fileOf(stateFile)['refresh_token'], suite.stub.live!.refresh_token);
    await suite.finish(d);
  });

  it('a replaced refresh token is kept until the new one is redeemed, and tried before reauthorization_required', async () => {
    const { d, stateFile } = await suite.start();
    const live = suite.stub.live!.refresh_token;
    const typo = 'ref_mistyped_by_hand_0001';
    const set = await d.request('POST', '/set-tokens', {
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ access_token: 'acc_by_hand_0002', refresh_token: typo, expires_in: 3600 }),
    });
    assert.equal(set.status, 200, set.text);
    assert.equal(fileOf(stateFile)['refresh_token'], typo);
    assert.equal(fileOf(stateFile)['replaced_refresh_token'], live);
    const state = await d.request('GET', '/state');
    assert.deepEqual(findLeaks(state.text, [live, typo]), [], '/state shows fingerprints only');
    assert.match(String(state.json['replaced_refresh_token_fingerprint']), /^\S{6,}$/, '/state names the kept token by its fingerprint');
    assert.notEqual(state.json['replaced_refresh_token_fingerprint'], state.json['refresh_token_fingerprint']);

    const r = await d.request('POST', '/refresh-tokens');
    assert.equal(r.status, 200, r.text);
    await d.waitForLog('the provider refused the refresh token: trying the one it replaced');
    assert.deepEqual(
      suite.stub.calls.slice(-2).map((c) => c.refreshToken),
      [typo, live],
    );
    const after = fileOf(stateFile);
    assert.equal(after['refresh_token'], suite.stub.live!.refresh_token);
    assert.equal(Object.hasOwn(after, 'replaced_refresh_token'), false, 'redeemed once: the replaced one is gone');
    assert.equal((await d.request('GET', '/state')).json['replaced_refresh_token_fingerprint'], null);
    suite.outputs.push(typo);
    await suite.finish(d);
    assert.deepEqual(findLeaks(d.output, [typo]), []);
  });
});

describe('what a provider says cannot break the daemon', () => {
  for (const expiresIn of [9e12, '99999999999999999']) {
    it(`expires_in ${JSON.stringify(expiresIn)}: written, served, and written again`, async () => {
      const { d, stateFile } = await suite.start();
      suite.stub.expiresIn = expiresIn as number;
      try {
        const r = await d.request('POST', '/refresh-tokens');
        assert.equal(r.status, 200, r.text);
        const file = fileOf(stateFile);
        assert.equal(file['refresh_token'], suite.stub.live!.refresh_token);
        assert.ok(!Number.isNaN(Date.parse(String(file['expires_at']))));
        const served = await d.request('GET', '/token');
        assert.equal(served.status, 200, served.text);
        assert.equal(served.json['access_token'], suite.stub.live!.access_token);
        const set = await d.request('POST', '/set-tokens', {
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ access_token: 'acc_by_hand_0003' }),
        });
        assert.equal(set.status, 200, set.text);
      } finally {
        suite.stub.expiresIn = 3600;
      }
      await suite.finish(d);
    });
  }

  it('expires_in 0.001 drives no more than one refresh a second, and every rotation is written', async () => {
    const { d, stateFile } = await suite.start({ env: { TOKEND_WAKE_INTERVAL_MS: '50' } });
    suite.stub.expiresIn = 0.001;
    try {
      assert.equal((await d.request('POST', '/refresh-tokens')).status, 200);
      const first = suite.stub.calls.length;
      const from = Date.now();
      // Measuring a rate takes a while; readers keep asking meanwhile.
      while (Date.now() - from < 3_000) await d.request('GET', '/token');
      const calls = suite.stub.calls.length - first;
      assert.ok(calls <= 4, `${calls} refreshes in 3 s`);
      assert.equal((await d.request('GET', '/healthz')).status, 200);
    } finally {
      suite.stub.expiresIn = 3600;
    }
    await suite.finish(d);
    assert.equal(fileOf(stateFile)['refresh_token'], suite.stub.live!.refresh_token, 'the last rotation is on disk');
  });

  it('twenty sequential POST /refresh-tokens make at most one upstream call, and say so', async () => {
    const { d } = await suite.start();
    const before = suite.stub.calls.length;
    const tokens = new Set<unknown>();
    for (let i = 0; i < 20; i++) {
      const r = await d.request('POST', '/refresh-tokens');
      assert.equal(r.status, 200, r.text);
      tokens.add(r.json['access_token']);
    }
    assert.equal(suite.stub.calls.length - before, 1);
    assert.equal(tokens.size, 1);
    await d.waitForLog(/answered from it, the provider was not called/);
    await suite.finish(d);
  });
});

describe('the real file behind a name', () => {
  it('a symlinked state file stays a link, its target gets the tokens, and a daemon naming the target exits 75 naming the owner', async () => {
    const real = stateFileWith(tempDir(), suite.stub.login(), 3600);
    const link = join(tempDir(), 'tokens.json');
    symlinkSync(real, link);
    const { d } = await suite.start({ stateFile: link });
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 200);
    assert.ok(lstatSync(link).isSymbolicLink(), 'the link is still a link');
    assert.equal(fileOf(real)['refresh_token'], suite.stub.live!.refresh_token, 'the target holds the live token');
    const second = await refused(real);
    assert.equal(second.code, 75, second.stderr);
    assert.match(second.stderr, new RegExp(`owned by pid ${d.pid} .*listening on ${d.address}`));
    await suite.finish(d);
  });

  it('a symlink to nothing is refused with one clear line, and nothing is created where it points', async () => {
    const dir = tempDir();
    const target = join(dir, 'nowhere.json');
    const link = join(dir, 'tokens.json');
    symlinkSync(target, link);
    const r = await refused(link);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /state file .*tokens\.json is a symbolic link to a file that does not exist/);
    assert.deepEqual(readdirSync(dir), ['tokens.json']);
  });

  const notFiles: Array<[string, () => string, RegExp]> = [
    [
      'a directory',
      () => {
        const path = join(tempDir(), 'tokens.json');
        mkdirSync(path);
        return path;
      },
      /is a directory, not a regular file/,
    ],
    [
      'a FIFO',
      () => {
        const path = join(tempDir(), 'tokens.json');
        execFileSync('mkfifo', [path]);
        return path;
      },
      /is a FIFO, not a regular file/,
    ],
    ['/dev/zero', () => '/dev/zero', /state file \/dev\/zero is a device, not a regular file/],
  ];
  for (const [name, make, message] of notFiles) {
    it(`a state file that is ${name} is refused with one clear line, exit 2`, async () => {
      const r = await refused(make());
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }

  it('a state file with a second hard link is refused: a write would leave the other name holding a spent token', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    linkSync(stateFile, join(dir, 'copy.json'));
    const r = await refused(stateFile);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /has 2 hard links/);
  });
});

describe('files other users could reach', () => {
  it('a state directory writable by every user is refused at start, exit 2, naming the fix; nothing is written', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    chmodSync(dir, 0o777);
    const before = readFileSync(stateFile, 'utf8');
    const r = await refused(stateFile);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /state directory .* is unsafe: .* is writable by every user \(mode 0777\); run: chmod go-w /);
    assert.deepEqual(readdirSync(dir), ['tokens.json'], 'no lock, no owner record');
    assert.equal(readFileSync(stateFile, 'utf8'), before);
  });

  it('a private state directory inside one every user may write to (no sticky bit) is refused: it could be swapped', async () => {
    const open = tempDir();
    chmodSync(open, 0o777);
    const dir = join(open, 'private');
    mkdirSync(dir, { mode: 0o700 });
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const r = await refused(stateFile);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /lies inside .* which other users may write to without the sticky bit \(mode 0777\)/);
    assert.deepEqual(readdirSync(dir), ['tokens.json']);
  });

  it('a state file writable by its group, or owned by another user, is refused at start, exit 2', async () => {
    const groupWritable = stateFileWith(tempDir(), suite.stub.login(), 3600);
    chmodSync(groupWritable, 0o660);
    const a = await refused(groupWritable);
    assert.equal(a.code, 2, a.stderr);
    assert.match(a.stderr, /state file .* is unsafe: .* is writable by its group \(mode 0660\)/);

    if (process.getuid?.() === 0) {
      const foreign = stateFileWith(tempDir(), suite.stub.login(), 3600);
      chownSync(foreign, 65534, 65534);
      const b = await refused(foreign);
      assert.equal(b.code, 2, b.stderr);
      assert.match(b.stderr, /is owned by uid 65534, not by this user/);
    }
  });

  it('the owner record follows no planted symlink: not at its old predictable temp name, not at its own name', async () => {
    const dir = tempDir();
    const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
    const victims = tempDir();
    const victimA = join(victims, 'a');
    const victimB = join(victims, 'b');
    writeFileSync(victimA, 'precious a');
    writeFileSync(victimB, 'precious b');
    const hold = join(dir, 'go');
    const d = new Daemon({ ...stubEnv(suite.stub, stateFile), TOKEND_TEST_HOOKS: '1', TOKEND_TEST_HOLD_START: hold });
    symlinkSync(victimA, `${stateFile}.owner.json.tmp-${d.pid}`);
    symlinkSync(victimB, `${stateFile}.owner.json`);
    writeFileSync(hold, '');
    const serving = await d.waitForLog('tokend serving');
    d.address = String(serving['listen']);
    assert.equal(readFileSync(victimA, 'utf8'), 'precious a');
    assert.equal(readFileSync(victimB, 'utf8'), 'precious b');
    const record = lstatSync(`${stateFile}.owner.json`);
    assert.ok(record.isFile(), 'the record replaced the link');
    assert.equal(record.mode & 0o777, 0o600);
    assert.equal((fileOf(`${stateFile}.owner.json`) as { pid: number }).pid, d.pid);
    await suite.finish(d);
  });
});

describe('contents no state file has', () => {
  const big = (): string => JSON.stringify({ ...suite.stub.login(), junk: 'x'.repeat(2 * 1024 * 1024) });
  const cases: Array<[string, () => string, RegExp]> = [
    ['over 1 MiB', big, /state file .*tokens\.json is larger than 1 MiB/],
    [
      'nested 20,000 deep',
      () => `{"access_token":"acc_x","deep":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
      /state file .*tokens\.json nests deeper than 64 levels/,
    ],
    ['with a state_version of 2^53', () => JSON.stringify({ ...suite.stub.login(), state_version: 2 ** 53 }), /state_version.*must be at most/],
    [
      'with an expiry past the range of a date',
      () => JSON.stringify({ ...suite.stub.login(), expires_at: '+275761-01-01T00:00:00.000Z' }),
      /expires_at.*not an ISO-8601 date/,
    ],
  ];
  for (const [name, text, message] of cases) {
    it(`a state file ${name} is refused at load with one clear line, exit 1, untouched`, async () => {
      const dir = tempDir();
      const stateFile = join(dir, 'tokens.json');
      const body = text();
      writeFileSync(stateFile, body, { mode: 0o600 });
      const r = await refused(stateFile);
      assert.equal(r.code, 1, r.stderr.slice(0, 2000));
      assert.match(r.stderr, message);
      assert.equal(readFileSync(stateFile, 'utf8'), body);
    });
  }

  it('__proto__, constructor and prototype keys survive every write as plain keys', async () => {
    const dir = tempDir();
    const pair = suite.stub.login();
    const stateFile = join(dir, 'tokens.json');
    writeFileSync(
      stateFile,
      `{"access_token":"${pair.access_token}","refresh_token":"${pair.refresh_token}","expires_at":"${new Date(Date.now() + 3_600_000).toISOString()}","__proto__":{"other":"tool"},"constructor":{"x":1},"prototype":2}`,
      { mode: 0o600 },
    );
    const { d } = await suite.start({ stateFile });
    assert.equal((await d.request('POST', '/refresh-tokens')).status, 200);
    await suite.finish(d);
    const written = readFileSync(stateFile, 'utf8');
    const file = fileOf(stateFile);
    assert.equal(file['refresh_token'], suite.stub.live!.refresh_token);
    assert.ok(Object.hasOwn(file, '__proto__'), written);
    assert.deepEqual(file['__proto__'], { other: 'tool' });
    assert.deepEqual(file['constructor'], { x: 1 });
    assert.equal(file['prototype'], 2);
  });

  for (const [name, garbage] of [
    ['not JSON', '{"access_token": "half an ed'],
    ['not an object', '[1, 2, 3]'],
    ['over 1 MiB', 'x'.repeat(2 * 1024 * 1024)],
  ] as const) {
    it(`a hand-edit made while running that is ${name} is moved aside with a warning, and the write proceeds`, async () => {
      const { d, stateFile } = await suite.start();
      writeFileSync(stateFile, garbage);
      const r = await d.request('POST', '/refresh-tokens');
      assert.equal(r.status, 200, r.text);
      const warned = await d.waitForLog(/moved aside/);
      const aside = String(warned['movedAsideTo']);
      assert.match(aside, /tokens\.json\.corrupt-/);
      assert.equal(readFileSync(aside, 'utf8'), garbage, 'the hand-edit is kept');
      assert.equal(fileOf(stateFile)['refresh_token'], suite.stub.live!.refresh_token);
      await suite.finish(d);
    });
  }
});

describe('startup in a directory it cannot write', () => {
  it(
    'a read-only state directory: refused at start with one clear line naming the lock it cannot create',
    { skip: process.getuid?.() === 0 ? false : 'needs root' },
    async () => {
      const dir = tempDir();
      const stateFile = stateFileWith(dir, suite.stub.login(), 3600);
      chownSync(dir, 65534, 65534);
      chownSync(stateFile, 65534, 65534);
      chmodSync(dir, 0o500);
      const p = new Proc(
        ['--reuid=65534', '--regid=65534', '--clear-groups', nodeForOtherUsers(), join(import.meta.dirname, '../../dist/cli/main.js'), 'serve'],
        { ...stubEnv(suite.stub, stateFile), TOKEND_LISTEN: '127.0.0.1:0' },
        { command: 'setpriv' },
      );
      const exit = await p.exited;
      suite.outputs.push(p.output);
      // Taking the lock needs to write beside the file: refused with the reason, not a crash.
      assert.equal(exit.code, 1, p.output);
      assert.match(p.stderr, /cannot lock state file .*tokens\.json: cannot create .*tokens\.json\.lock \(EACCES\)/);
      chmodSync(dir, 0o700);
    },
  );
});
