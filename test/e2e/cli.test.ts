import assert from 'node:assert/strict';
import { readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Daemon, findLeaks, runCli, stateFileWith, tempDir } from '../fixtures/daemon.ts';
import { stubEnv } from '../fixtures/env.ts';
import { MonzoStub } from '../fixtures/monzo-stub.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const outputs: string[] = [];
let stub: MonzoStub;
let d: Daemon;
let stateFile: string;

before(async () => {
  stub = await new MonzoStub().start();
  stateFile = stateFileWith(tempDir(), stub.login(), 5 * 3600 + 12 * 60 + 30);
  d = await Daemon.start(stubEnv(stub, stateFile));
});
after(async () => {
  assert.equal((await d.stop()).code, 0);
  outputs.push(d.output);
  await stub.close();
  // Only `tokend token` prints a token, on purpose; everything else must not.
  assert.deepEqual(findLeaks(outputs.join('\n'), stub.issued), [], 'a token value appeared in output');
});

/** Client commands find the daemon through the owner record beside the state file. */
const viaRecord = (): NodeJS.ProcessEnv => ({ TOKEND_STATE_FILE: stateFile });

describe('client commands', () => {
  it('tokend token prints the access token alone, found through the owner record', async () => {
    const r = await runCli(['token'], viaRecord());
    assert.equal(r.result.code, 0, r.stderr);
    assert.equal(r.stdout, `${stub.live!.access_token}\n`);
    assert.equal(r.stderr, '');
  });

  it('tokend token finds the daemon through a symlink to the state file (the owner record sits beside the real file)', async () => {
    const link = join(tempDir(), 'tokens-link.json');
    symlinkSync(stateFile, link);
    const r = await runCli(['token'], { TOKEND_STATE_FILE: link });
    assert.equal(r.result.code, 0, r.stderr);
    assert.equal(r.stdout, `${stub.live!.access_token}\n`);
  });

  it('tokend token --exec runs a command with the token in the environment and returns its exit code', async () => {
    const r = await runCli(
      ['token', '--exec', '--', process.execPath, '-e', 'process.exit(process.env.TOKEND_ACCESS_TOKEN === process.argv[1] ? 7 : 1)', stub.live!.access_token],
      viaRecord(),
    );
    assert.equal(r.result.code, 7, r.stderr);
  });

  it('tokend status is human readable: durations, next refresh, state file, owner', async () => {
    const r = await runCli(['status'], viaRecord());
    outputs.push(r.output);
    assert.equal(r.result.code, 0, r.stderr);
    assert.match(r.stdout, /^status: +ok$/m);
    assert.match(r.stdout, /^access token: +valid for 5h 1[12]m \(until \d\d:\d\d\)$/m);
    assert.match(r.stdout, /^next refresh: +in \dh \d+m at \d\d:\d\d$/m);
    assert.match(r.stdout, new RegExp(`^state file: +${stateFile}$`, 'm'));
    assert.match(r.stdout, new RegExp(`^owner: +pid ${d.pid}, listening on ${d.address}$`, 'm'));
  });

  it('tokend status --json prints the state for scripts', async () => {
    const r = await runCli(['status', '--json'], viaRecord());
    outputs.push(r.stdout.replace(stub.live!.access_token, ''));
    const state = JSON.parse(r.stdout);
    assert.equal(state.status, 'ok');
    assert.equal(state.owner.pid, d.pid);
  });

  it('tokend refresh rotates and prints the new expiry', async () => {
    const before = stub.calls.length;
    const r = await runCli(['refresh', '--listen', d.address], {});
    outputs.push(r.output);
    assert.equal(r.result.code, 0, r.stderr);
    assert.match(r.stdout, /^refreshed: expires at \d{4}-\d\d-\d\dT/);
    assert.equal(stub.calls.length, before + 1);
  });

  it('tokend set --stdin hands over tokens without putting them in argv', async () => {
    const fresh = stub.login();
    const r = await runCli(['set', '--stdin'], viaRecord(), JSON.stringify({ ...fresh, expires_in: 900 }));
    outputs.push(r.output);
    assert.equal(r.result.code, 0, r.stderr);
    assert.equal(JSON.parse(readFileSync(stateFile, 'utf8')).access_token, fresh.access_token);
  });

  it('tokend set with bad input exits 2 and changes nothing', async () => {
    const before = readFileSync(stateFile, 'utf8');
    const r = await runCli(['set', '--stdin'], viaRecord(), '{"refresh_token":"x"}');
    assert.equal(r.result.code, 2);
    assert.match(r.stderr, /access token is required/);
    assert.equal(readFileSync(stateFile, 'utf8'), before);
  });

  it('a client command with no daemon exits 1 saying where it looked', async () => {
    const r = await runCli(['token', '--listen', '127.0.0.1:1'], {});
    assert.equal(r.result.code, 1);
    assert.match(r.stderr, /not reachable at http:\/\/127\.0\.0\.1:1/);
    assert.equal(r.stdout, '');
  });
});

describe('usage and configuration', () => {
  it('--version prints the version', async () => {
    const r = await runCli(['--version'], {});
    assert.equal(r.result.code, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  for (const cmd of ['serve', 'token', 'status', 'refresh', 'set']) {
    it(`${cmd} --help describes the command and exits 0`, async () => {
      const r = await runCli([cmd, '--help'], {});
      assert.equal(r.result.code, 0);
      assert.match(r.stdout, new RegExp(`Usage: tokend ${cmd}`));
    });
  }

  it('an unknown command or option exits 2', async () => {
    assert.equal((await runCli(['frobnicate'], {})).result.code, 2);
    assert.equal((await runCli(['token', '--nope'], {})).result.code, 2);
  });

  it('invalid configuration: one line per problem, exit 2, nothing started', async () => {
    const dir = tempDir();
    const r = await runCli(['serve'], { TOKEND_STATE_FILE: `${dir}/t.json`, TOKEND_PROVIDER: 'acme', TOKEND_LISTEN: 'nowhere', TOKEND_LOG_LEVEL: 'chatty' });
    assert.equal(r.result.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 4, r.stderr);
    assert.ok(lines.every((l) => l.startsWith('tokend: TOKEND_')));
    assert.equal(r.stdout, '');
  });

  it('a non-loopback listen address without an API key is refused at start, exit 2', async () => {
    const r = await runCli(['serve'], { TOKEND_CLIENT_ID: 'x', TOKEND_LISTEN: '0.0.0.0:0', TOKEND_STATE_FILE: `${tempDir()}/t.json` });
    assert.equal(r.result.code, 2);
    assert.match(r.stderr, /TOKEND_LISTEN .*not a loopback address; set TOKEND_API_KEY/);
  });
});
