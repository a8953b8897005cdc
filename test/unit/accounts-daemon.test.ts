/**
 * Several accounts on one owner thread, as the daemon's main side holds
 * them: each its own owner, file and lock; a failed account beside working
 * ones; one account's refused login or hung provider never touching
 * another; a reload that starts, stops and restarts only what changed.
 *
 * The owner thread's entry (`attach`) runs in this process (a worker cannot
 * start from a .ts file on Node 20): each account still gets its own pair of
 * ports and its own Owner, exactly as on the thread. The provider is the
 * Monzo-shaped stub on loopback, one per account.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Piscina } from 'piscina';
import type { AttachTask, Snapshot } from '../../src/shared/contract.ts';
import type { ErrorData } from '../../src/shared/errors.ts';
import type { Logger } from '../../src/shared/log.ts';
import type { AccountConfig } from '../../src/config/accounts.ts';
import { Accounts, type Started } from '../../src/daemon/accounts.ts';
import { startVerdict } from '../../src/daemon/daemon.ts';
import type { OwnerThread } from '../../src/daemon/owner-thread.ts';
import attach from '../../src/owner/thread.ts';
import { MonzoStub } from '../fixtures/monzo-stub.ts';
import { stubAccount } from '../fixtures/accounts.ts';

const quiet = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined, fatal: () => undefined };
const log = { ...quiet, child: () => ({ ...quiet, child: () => quiet }) } as unknown as Logger;

/** The owner thread's entry, run here: one attach per account, as piscina runs it on the thread. */
const thread: OwnerThread = {
  pool: { threads: [], run: async (task: AttachTask) => attach(task), destroy: async () => undefined } as unknown as Piscina,
  onError: () => undefined,
};

const dir = mkdtempSync(join(tmpdir(), 'tokend-accounts-'));
let files = 0;
const stateFile = (): string => join(dir, `account-${++files}.json`);
const MIN = 60_000;

function account(name: string, stub: MonzoStub, file = stateFile(), clientId = stub.clientId): AccountConfig {
  return stubAccount(name, stub, file, clientId);
}

const open: Accounts[] = [];
function accounts(upstreamTimeoutMs = 2_000): { accounts: Accounts; published: Array<{ account: string; status: string }> } {
  const published: Array<{ account: string; status: string }> = [];
  const a = new Accounts({
    thread,
    settings: { upstreamTimeoutMs, wakeIntervalMs: 1_000, moveCorruptAside: false, logLevel: 'warn' },
    logging: Promise.resolve(log),
    namedLogs: true,
    events: {
      onSnapshot: (name: string, s: Snapshot) => void published.push({ account: name, status: s.status }),
      onEvent: () => undefined,
      onRestart: () => undefined,
      onFatal: (e: ErrorData) => assert.fail(`unexpected fatal: ${e.message}`),
    },
  });
  open.push(a);
  return { accounts: a, published };
}

const status = (a: Accounts, name: string): string => a.backends.get(name)!.snapshot().status;
const tokens = (pair: { access_token: string; refresh_token: string }) => ({
  accessToken: pair.access_token,
  refreshToken: pair.refresh_token,
  expiresInSec: 3600,
});

describe('accounts on one owner thread', () => {
  const one = new MonzoStub();
  const two = new MonzoStub();
  before(async () => {
    await one.start();
    await two.start();
  });
  afterEach(async () => {
    for (const a of open.splice(0)) await a.closeAll(0);
  });
  after(async () => {
    await one.close();
    await two.close();
  });

  it('several accounts run side by side, each with its own state file and lock, all released at the stop', async () => {
    const { accounts: a } = accounts();
    const [work, home] = [account('work', one), account('home', two)];
    const started = await a.startAll([work, home]);
    assert.deepEqual(
      started.map((s) => s.result.ok),
      [true, true],
    );
    assert.deepEqual([...a.backends.keys()], ['work', 'home']);
    const set = await a.backends.get('work')!.setTokens(tokens(one.login()));
    assert.ok(set.ok);
    assert.equal(status(a, 'work'), 'ok');
    assert.equal(status(a, 'home'), 'waiting_for_login');
    assert.match(readFileSync(work.stateFile, 'utf8'), new RegExp(one.live!.access_token));
    assert.equal(existsSync(home.stateFile) && readFileSync(home.stateFile, 'utf8').includes(one.live!.access_token), false);
    assert.ok(existsSync(`${work.stateFile}.lock`) && existsSync(`${home.stateFile}.lock`));
    const closed = await a.closeAll(1_000);
    assert.deepEqual(
      closed.map((c) => [c.account, c.result.ok]),
      [
        ['work', true],
        ['home', true],
      ],
    );
    assert.ok(!existsSync(`${work.stateFile}.lock`) && !existsSync(`${home.stateFile}.lock`));
  });

  it('a corrupt state file fails its account only: the file is left untouched, the others serve', async () => {
    const { accounts: a, published } = accounts();
    const broken = account('broken', two);
    const corrupt = '{"access_token": "half a fi';
    writeFileSync(broken.stateFile, corrupt, { mode: 0o600 });
    const started = await a.startAll([account('work', one), broken]);
    assert.equal(startVerdict(started, true), null, 'a config file daemon serves the accounts that started');
    assert.match(startVerdict(started, false)?.message ?? '', /state file/, 'configured by the environment, the one account is the daemon');
    const failed = a.backends.get('broken')!.snapshot();
    assert.equal(failed.status, 'failed');
    assert.match(failed.reason ?? '', /state file/);
    assert.equal(failed.stateFile, broken.stateFile);
    assert.ok(published.some((p) => p.account === 'broken' && p.status === 'failed'));
    assert.equal(readFileSync(broken.stateFile, 'utf8'), corrupt);
    assert.ok(!existsSync(`${broken.stateFile}.lock`));
    const refused = await a.backends.get('broken')!.refresh('http');
    assert.equal(refused.ok ? null : refused.error.code, 'not_ready');
    assert.ok((await a.backends.get('work')!.setTokens(tokens(one.login()))).ok);
    assert.equal(status(a, 'work'), 'ok');
  });

  it("one account's refused login and another's hung provider never delay or stop a third's refresh", async () => {
    const three = await new MonzoStub().start();
    try {
      // The hung request outlives the test: the stop abandons it.
      const { accounts: a } = accounts(60_000);
      await a.startAll([account('refused', one), account('hung', two), account('fine', three)]);
      const backend = (name: string) => a.backends.get(name)!;
      assert.ok((await backend('refused').setTokens({ accessToken: 'acc_old', refreshToken: 'ref_never_issued', expiresInSec: 3600 })).ok);
      assert.ok((await backend('hung').setTokens(tokens(two.login()))).ok);
      assert.ok((await backend('fine').setTokens(tokens(three.login()))).ok);
      two.faults.push({ kind: 'hang' });
      const hung = backend('hung').refresh('http');
      await two.nextRequest();
      assert.equal(backend('hung').snapshot().refresh.inFlight, true);
      const refused = await backend('refused').refresh('http');
      assert.equal(refused.ok ? null : refused.error.code, 'reauthorization_required');
      const fine = await backend('fine').refresh('http');
      assert.ok(fine.ok, 'the third account refreshed while another waited on its provider');
      assert.equal(fine.value.token?.accessToken, three.live!.access_token);
      assert.equal(backend('hung').snapshot().refresh.inFlight, true);
      assert.equal(status(a, 'refused'), 'reauthorization_required');
      assert.equal(status(a, 'fine'), 'ok');
      await a.closeAll(0);
      assert.equal((await hung).ok, false, 'the stop abandoned the hung request');
    } finally {
      await three.close();
    }
  });

  it("each account's refresh_lead and refresh_at_least decide its own next refresh, and a reload that changes them applies them", async () => {
    const { accounts: a } = accounts();
    const plain = account('plain', one);
    const lead = { ...account('lead', one), refreshLeadMs: 20 * MIN };
    const often = { ...account('often', one), refreshAtLeastMs: 15 * MIN };
    await a.startAll([plain, lead, often]);
    /** When the next refresh is due, from when the token was obtained; jitter moves it up to 30 s earlier. */
    const nextIn = (name: string): number => {
      const s = a.backends.get(name)!.snapshot();
      return s.refresh.nextAtMs! - s.token!.obtainedAtMs!;
    };
    const within30s = (name: string, dueMs: number): void => {
      const got = nextIn(name);
      assert.ok(got <= dueMs && got >= dueMs - 30_000, `${name}: next refresh ${got} ms after obtained, expected ${dueMs} less at most 30 s`);
    };
    for (const name of ['plain', 'lead', 'often']) assert.ok((await a.backends.get(name)!.setTokens(tokens(one.login()))).ok);
    within30s('plain', 48 * MIN); // 80% of the hour: the default
    within30s('lead', 40 * MIN);
    within30s('often', 15 * MIN);

    const summary = await a.reload([plain, { ...lead, refreshLeadMs: 30 * MIN }, often], 1_000);
    assert.deepEqual(summary.restarted, ['lead']);
    within30s('lead', 30 * MIN);
  });

  it('a reload starts new accounts, stops removed ones (lock released), restarts changed and failed ones, and leaves the rest', async () => {
    const { accounts: a } = accounts();
    const keep = account('keep', one);
    const gone = account('gone', two);
    const fixed = account('fixed', two);
    writeFileSync(fixed.stateFile, 'not json', { mode: 0o600 });
    await a.startAll([keep, gone, fixed]);
    assert.equal(status(a, 'fixed'), 'failed');
    assert.ok((await a.backends.get('keep')!.setTokens(tokens(one.login()))).ok);
    const keepBackend = a.backends.get('keep');
    const before = a.slot('keep');

    unlinkSync(fixed.stateFile);
    const added = account('added', two);
    const summary = await a.reload([added, keep, fixed], 1_000);
    assert.deepEqual(summary, { added: ['added'], removed: ['gone'], restarted: ['fixed'], failed: [] });
    assert.deepEqual([...a.backends.keys()], ['added', 'keep', 'fixed']);
    assert.equal(a.slot('keep'), before, 'an unchanged account is left running as it was');
    assert.equal(a.backends.get('keep'), keepBackend);
    assert.equal(status(a, 'keep'), 'ok');
    assert.equal(status(a, 'fixed'), 'waiting_for_login');
    assert.ok(!existsSync(`${gone.stateFile}.lock`), "a removed account's lock is released");
    assert.equal(a.backends.get('gone'), undefined);

    const changed = { ...keep, provider: { ...keep.provider, scope: 'more' } };
    const again = await a.reload([added, changed, fixed], 1_000);
    assert.deepEqual(again.restarted, ['keep']);
    assert.notEqual(a.slot('keep'), before);
    assert.equal(status(a, 'keep'), 'ok', 'a restarted account reloads its tokens from its file');
  });
});

describe('whether the daemon starts', () => {
  const config = account('x', new MonzoStub());
  const ok = (name: string): Started => ({ config: { ...config, name }, result: { ok: true, value: null as never } });
  const failed = (name: string, code: ErrorData['code'], message: string): Started => ({
    config: { ...config, name },
    result: { ok: false, error: { code, message } },
  });

  it('a state file locked by another daemon stops the whole start (exit 75), naming the account', () => {
    const verdict = startVerdict([ok('a'), failed('b', 'state_locked', 'state file /s/b.json is owned by pid 7'), failed('c', 'state_corrupt', 'bad')], true);
    assert.deepEqual(verdict, { code: 'state_locked', message: 'account b: state file /s/b.json is owned by pid 7' });
  });

  it('with a config file, failed accounts are served beside the others; with none started, the start fails', () => {
    assert.equal(startVerdict([ok('a'), failed('b', 'state_corrupt', 'bad')], true), null);
    assert.deepEqual(startVerdict([failed('a', 'state_corrupt', 'bad'), failed('b', 'config_invalid', 'worse')], true), {
      code: 'state_corrupt',
      message: 'account a: bad',
    });
  });

  it('configured by the environment, the single account fails the start in the words of before', () => {
    assert.deepEqual(startVerdict([failed('default', 'state_corrupt', 'cannot read state file')], false), {
      code: 'state_corrupt',
      message: 'cannot read state file',
    });
  });
});
