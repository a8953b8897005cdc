/**
 * Every account survives the owner thread's death: the real thread (the
 * built `dist/owner/thread.js`, under piscina as the daemon runs it) crashes,
 * piscina replaces it, and each account attaches to the new one and reloads
 * its tokens from its own file. Skipped until `npm run build` has run (a
 * worker cannot start from a .ts file on Node 20).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Logger } from '../../src/shared/log.ts';
import type { AccountConfig } from '../../src/config/accounts.ts';
import { Accounts } from '../../src/daemon/accounts.ts';
import { destroyOwnerThread, type OwnerThread } from '../../src/daemon/owner-thread.ts';
import { MonzoStub } from '../fixtures/monzo-stub.ts';
import { stubAccount } from '../fixtures/accounts.ts';

const WORKER = fileURLToPath(new URL('../../dist/owner/thread.js', import.meta.url));
const built = existsSync(WORKER);

const quiet = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined, fatal: () => undefined };
const log = { ...quiet, child: () => ({ ...quiet, child: () => quiet }) } as unknown as Logger;

const dir = mkdtempSync(join(tmpdir(), 'tokend-accounts-thread-'));
const crashFile = join(dir, 'crash');

const account = (name: string, stub: MonzoStub): AccountConfig => stubAccount(name, stub, join(dir, `${name}.json`));

const stub = new MonzoStub();
let thread: OwnerThread | null = null;
before(async () => {
  await stub.start();
});
after(async () => {
  if (thread) await destroyOwnerThread(thread);
  await stub.close();
});

it(
  'when the owner thread dies, every account attaches to the new one and reloads from its own file',
  { skip: !built && 'run `npm run build` first' },
  async () => {
    const pool = new Piscina({
      filename: WORKER,
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      atomics: 'disabled',
      env: { ...process.env, TOKEND_TEST_HOOKS: '1', TOKEND_TEST_CRASH_OWNER: crashFile },
    });
    pool.on('error', () => undefined);
    thread = { pool, onError: () => undefined };
    const restarts: number[] = [];
    let restarted: () => void = () => undefined;
    const accounts = new Accounts({
      thread,
      settings: { upstreamTimeoutMs: 2_000, wakeIntervalMs: 1_000, moveCorruptAside: false, logLevel: 'warn' },
      logging: Promise.resolve(log),
      namedLogs: true,
      events: {
        onSnapshot: () => undefined,
        onEvent: () => undefined,
        onRestart: (threadId) => {
          restarts.push(threadId);
          restarted();
        },
        onFatal: (e) => assert.fail(`unexpected fatal: ${e.message}`),
      },
    });
    const started = await accounts.startAll([account('one', stub), account('two', stub)]);
    assert.ok(started.every((s) => s.result.ok));
    const set = async (name: string, access: string): Promise<void> => {
      const r = await accounts.backends.get(name)!.setTokens({ accessToken: access, refreshToken: `ref_${access}`, expiresInSec: 3600 });
      assert.ok(r.ok, r.ok ? '' : r.error.message);
    };
    await set('one', 'acc_one');
    await set('two', 'acc_two');

    const bothHeard = new Promise<void>((resolve) => (restarted = () => restarts.length === 2 && resolve()));
    writeFileSync(crashFile, 'throw');
    await bothHeard;
    assert.equal(restarts[0], restarts[1], 'one death, heard by each account');

    // Each account is attached again once a call reaches its new owner.
    const deadline = Date.now() + 20_000;
    for (const name of ['one', 'two']) {
      for (;;) {
        const r = await accounts.backends.get(name)!.ensureFresh();
        if (r.ok) break;
        assert.ok(Date.now() < deadline, `account ${name} did not come back: ${r.error.message}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    assert.equal(accounts.backends.get('one')!.snapshot().token?.accessToken, 'acc_one');
    assert.equal(accounts.backends.get('two')!.snapshot().token?.accessToken, 'acc_two');
    assert.equal(accounts.backends.get('one')!.snapshot().lockHeld, true);
    await accounts.closeAll(1_000);
    assert.ok(!existsSync(join(dir, 'one.json.lock')) && !existsSync(join(dir, 'two.json.lock')));
  },
);
