/**
 * The owner against a scripted provider (the only mock: the token request),
 * on a real state file and a real lock: which refresh token is kept, tried
 * and written when the provider refuses, rotates anyway, or is abandoned.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import type { OwnerEvent, OwnerOptions } from '../../src/shared/contract.ts';
import type { Log } from '../../src/shared/log.ts';
import { Owner, type TokenClient } from '../../src/owner/owner.ts';
import type { TokenOutcome, TokenResponse, UpstreamFailure } from '../../src/provider/oauth.ts';

type Answer = TokenResponse | UpstreamFailure | ((signal: AbortSignal | undefined) => Promise<TokenOutcome>);

/** A provider that answers from a script and records which refresh tokens it was shown. */
class ScriptedProvider implements TokenClient {
  readonly shown: string[] = [];
  readonly script: Answer[] = [];

  async refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenOutcome> {
    this.shown.push(refreshToken);
    const next = this.script.shift();
    if (next === undefined) throw new Error('unscripted refresh');
    if (typeof next === 'function') return next(signal);
    return 'kind' in next ? next : { kind: 'tokens', tokens: next };
  }

  async close(): Promise<void> {}
}

const pair = (access: string, refresh: string | null, warnings: string[] = []): TokenResponse => ({
  accessToken: access,
  refreshToken: refresh,
  tokenType: 'Bearer',
  scope: null,
  expiresInSec: 3600,
  account: {},
  warnings,
});
const refused = (): UpstreamFailure => ({
  kind: 'invalid_grant',
  message: 'provider refused the refresh token (invalid_grant)',
  status: 400,
  error: 'invalid_grant',
});
const malformed = (message: string, rotatedRefreshToken: string | null): UpstreamFailure => ({
  kind: 'bad_response',
  message,
  status: 200,
  error: null,
  retryAfterMs: null,
  maybeRedeemed: true,
  rotatedRefreshToken,
});
const rotatedButRefused = (rotated: string): UpstreamFailure => malformed('provider answered 200 without an access_token', rotated);
const serverError = (): UpstreamFailure => ({
  kind: 'transient',
  message: 'provider answered 500',
  status: 500,
  error: null,
  retryAfterMs: null,
  maybeRedeemed: false,
});

interface Lines {
  readonly warn: string[];
  readonly info: string[];
}

function recordingLog(lines: Lines): Log {
  const fn = (into: string[]) => (a: object | string, msg?: string) => into.push(typeof a === 'string' ? a : (msg ?? ''));
  return { error: fn(lines.warn), warn: fn(lines.warn), info: fn(lines.info), debug: () => undefined };
}

const owners: Owner[] = [];
afterEach(async () => {
  for (const o of owners.splice(0)) await o.close(0);
});

function setup(file: Record<string, unknown> | null, provider = new ScriptedProvider()) {
  const dir = mkdtempSync(join(tmpdir(), 'tokend-owner-'));
  const stateFile = join(dir, 'tokens.json');
  if (file) writeFileSync(stateFile, JSON.stringify(file), { mode: 0o600 });
  const opts: OwnerOptions = {
    stateFile,
    provider: { name: 'test', tokenUrl: 'http://127.0.0.1:9/token', issuer: null, clientId: 'c', clientSecret: null, authMethod: null },
    timeouts: { connectMs: 1000, headersMs: 1000, bodyMs: 1000, totalMs: 1000 },
    wakeIntervalMs: 60_000,
    owner: { pid: process.pid, instance: `test-${Math.random()}`, listen: null },
    moveCorruptAside: false,
    logLevel: 'debug',
    scheduleRefresh: false,
  };
  const lines: Lines = { warn: [], info: [] };
  const events: OwnerEvent[] = [];
  const owner = new Owner(
    opts,
    recordingLog(lines),
    (e) => events.push(e),
    async () => provider,
  );
  owners.push(owner);
  const onDisk = (): Record<string, unknown> => JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
  return { owner, provider, lines, onDisk, stateFile };
}

const valid = (refresh: string, extra: Record<string, unknown> = {}) => ({
  access_token: 'acc_0',
  refresh_token: refresh,
  expires_at: new Date(Date.now() + 3_600_000).toISOString(),
  obtained_at: new Date().toISOString(),
  ...extra,
});

describe('tokens set by hand', () => {
  it('without a refresh token keep the current one; a different one keeps the replaced one until redeemed', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    const kept = await owner.setTokens({ accessToken: 'acc_1', refreshToken: null, expiresInSec: 3600 });
    assert.ok(kept.ok);
    assert.equal(onDisk()['refresh_token'], 'ref_0');
    assert.equal(onDisk()['access_token'], 'acc_1');

    await owner.setTokens({ accessToken: 'acc_2', refreshToken: 'ref_1', expiresInSec: 3600 });
    assert.equal(onDisk()['refresh_token'], 'ref_1');
    assert.equal(onDisk()['replaced_refresh_token'], 'ref_0');
    const snap = owner.snapshot();
    assert.equal(typeof snap.token?.replacedRefreshFingerprint, 'string');
    assert.doesNotMatch(JSON.stringify(snap), /ref_0|ref_1/, 'only fingerprints of refresh tokens');

    provider.script.push(pair('acc_3', 'ref_2'));
    assert.ok((await owner.refresh('cli')).ok);
    assert.deepEqual(provider.shown, ['ref_1']);
    assert.equal(onDisk()['refresh_token'], 'ref_2');
    assert.equal(Object.hasOwn(onDisk(), 'replaced_refresh_token'), false, 'redeemed once: the replaced one is dropped');
  });

  it('set twice before any refresh: the replaced token kept is the one known to work, not the one set in between', async () => {
    const { owner, onDisk } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    await owner.setTokens({ accessToken: 'acc_1', refreshToken: 'ref_typo', expiresInSec: 3600 });
    await owner.setTokens({ accessToken: 'acc_2', refreshToken: 'ref_typo_again', expiresInSec: 3600 });
    assert.equal(onDisk()['refresh_token'], 'ref_typo_again');
    assert.equal(onDisk()['replaced_refresh_token'], 'ref_0');
  });

  it('a refused new refresh token: the replaced one is tried once before reauthorization_required', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_1', { replaced_refresh_token: 'ref_0' }));
    assert.ok((await owner.start()).ok);
    provider.script.push(refused(), pair('acc_1', 'ref_9'));
    const r = await owner.refresh('cli');
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(provider.shown, ['ref_1', 'ref_0']);
    assert.equal(onDisk()['refresh_token'], 'ref_9');
    assert.equal(onDisk()['access_token'], 'acc_1');
  });

  it('both refused: reauthorization_required after exactly two requests', async () => {
    const { owner, provider } = setup(valid('ref_1', { replaced_refresh_token: 'ref_0' }));
    assert.ok((await owner.start()).ok);
    provider.script.push(refused(), refused());
    const r = await owner.refresh('cli');
    assert.ok(!r.ok && r.error.code === 'reauthorization_required');
    assert.deepEqual(provider.shown, ['ref_1', 'ref_0']);
  });

  it('an answer that does not rotate, to the replaced token, keeps that token', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_1', { replaced_refresh_token: 'ref_0' }));
    assert.ok((await owner.start()).ok);
    provider.script.push(refused(), pair('acc_1', null));
    assert.ok((await owner.refresh('cli')).ok);
    assert.equal(onDisk()['refresh_token'], 'ref_0');
  });
});

describe('a refused answer that carried a new refresh token', () => {
  it('a success refused as malformed without a new refresh token keeps the intent open, so a later refusal is named as a possible lost rotation', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_1'));
    assert.ok((await owner.start()).ok);
    provider.script.push(malformed('provider answered 200 with an access_token that is not RFC 6750 token characters', null));
    assert.ok(!(await owner.refresh('cli')).ok);
    const intent = onDisk()['refresh_intent'] as Record<string, unknown> | null;
    assert.equal(typeof intent?.['refresh_token_fingerprint'], 'string', 'the intent stays open: the provider may have rotated');
    await new Promise((r) => setTimeout(r, 1_050)); // attempts start at least a second apart
    provider.script.push(refused());
    const r = await owner.refresh('cli');
    assert.ok(!r.ok && r.error.code === 'reauthorization_required');
    assert.match(r.error.message, /was interrupted before its answer was saved/);
  });

  it('keeps the new one (the redeemed one as replaced) and the access token, and retries', async () => {
    const { owner, provider, onDisk, lines } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    provider.script.push(rotatedButRefused('ref_1'));
    const r = await owner.refresh('cli');
    assert.ok(!r.ok && r.error.code === 'upstream_error', 'retried on the backoff schedule');
    assert.equal(onDisk()['refresh_token'], 'ref_1');
    assert.equal(onDisk()['replaced_refresh_token'], 'ref_0');
    assert.equal(onDisk()['access_token'], 'acc_0');
    assert.equal(onDisk()['refresh_intent'], null);
    assert.ok(lines.warn.some((l) => /carried a new refresh token/.test(l)));
    assert.doesNotMatch(lines.warn.join('\n'), /ref_\d/);
  });

  it('when the new one is not real after all, the redeemed one is tried and the login survives', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    provider.script.push(rotatedButRefused('ref_bogus'));
    await owner.refresh('cli');
    provider.script.push(refused(), pair('acc_1', 'ref_2'));
    assert.ok((await owner.refresh('cli')).ok);
    assert.deepEqual(provider.shown, ['ref_0', 'ref_bogus', 'ref_0']);
    assert.equal(onDisk()['refresh_token'], 'ref_2');
  });
});

describe('what the provider says, bounded', () => {
  it('logs each warning of the parser', async () => {
    const { owner, provider, lines } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    provider.script.push(pair('acc_1', 'ref_1', ['expires_in 0.001 is below 2 s: using 2 s']));
    assert.ok((await owner.refresh('cli')).ok);
    assert.ok(lines.warn.includes('expires_in 0.001 is below 2 s: using 2 s'));
  });

  it('an explicit refresh right after a successful one is answered from it', async () => {
    const { owner, provider, lines } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    provider.script.push(pair('acc_1', 'ref_1'));
    for (let i = 0; i < 20; i++) assert.ok((await owner.refresh('http')).ok);
    assert.equal(provider.shown.length, 1);
    assert.ok(lines.info.some((l) => /answered from it, the provider was not called/.test(l)));
  });

  it('a failure after that success: the next explicit refresh goes to the provider again', async () => {
    const { owner, provider } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    provider.script.push(pair('acc_1', 'ref_1'), serverError());
    assert.ok((await owner.refresh('http')).ok);
    assert.ok(!(await owner.refresh('timer')).ok);
    provider.script.push(pair('acc_2', 'ref_2'));
    assert.ok((await owner.refresh('http')).ok);
    assert.deepEqual(provider.shown, ['ref_0', 'ref_1', 'ref_1']);
  });

  it('attempts start at least a second apart, whatever triggers them', async () => {
    const { owner, provider } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    const starts: number[] = [];
    for (let i = 0; i < 3; i++) {
      provider.script.push(async () => {
        starts.push(Date.now());
        return serverError();
      });
    }
    for (let i = 0; i < 3; i++) await owner.refresh(i === 1 ? 'cli' : 'http');
    assert.equal(starts.length, 3);
    // Attempts are spaced from their start; each writes its intent (an fsync of varying length, hundreds of ms on a
    // busy disk) before the provider sees it. Unspaced, they would come milliseconds apart.
    for (let i = 1; i < 3; i++) assert.ok(starts[i]! - starts[i - 1]! >= 500, `attempt ${i} came ${starts[i]! - starts[i - 1]!} ms after the one before`);
    assert.ok(starts[2]! - starts[0]! >= 1_500, `three attempts within ${starts[2]! - starts[0]!} ms`);
  });
});

describe('shutdown during a refresh', () => {
  /** A provider that answers only when its signal is aborted (as undici then fails) or when told to. */
  function slowAnswer(): { answer: Answer; arrived: Promise<void>; release: () => void; aborted: () => boolean } {
    let release!: () => void;
    let arrive!: () => void;
    let wasAborted = false;
    const arrived = new Promise<void>((r) => (arrive = r));
    const go = new Promise<void>((r) => (release = r));
    const answer = (signal: AbortSignal | undefined): Promise<TokenOutcome> =>
      new Promise((resolve) => {
        arrive();
        signal?.addEventListener('abort', () => {
          wasAborted = true;
          resolve({ kind: 'transient', message: 'token request failed: aborted', status: null, error: 'aborted', retryAfterMs: null, maybeRedeemed: true });
        });
        void go.then(() => resolve({ kind: 'tokens', tokens: pair('acc_1', 'ref_1') }));
      });
    return { answer, arrived, release, aborted: () => wasAborted };
  }

  it('hurry() abandons the request in flight, so close() finishes; the intent stays open for the next start', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    const slow = slowAnswer();
    provider.script.push(slow.answer);
    const refreshing = owner.refresh('cli');
    await slow.arrived;
    const closing = owner.close(60_000);
    owner.hurry();
    assert.ok((await closing).ok);
    assert.ok(slow.aborted());
    assert.ok(!(await refreshing).ok);
    assert.equal(onDisk()['refresh_token'], 'ref_0');
    assert.notEqual(onDisk()['refresh_intent'], null, 'a possibly lost rotation is diagnosed at the next start');
  });

  it('an answer that has arrived is written before close() returns, though hurry() comes right after it arrived', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    const stop: { closing?: Promise<unknown> } = {};
    provider.script.push(async () => {
      // The answer has been read; the second stop request lands now, before it is written.
      stop.closing = owner.close(60_000);
      owner.hurry();
      return { kind: 'tokens', tokens: pair('acc_1', 'ref_1') };
    });
    assert.ok((await owner.refresh('cli')).ok);
    await stop.closing;
    assert.equal(onDisk()['refresh_token'], 'ref_1');
    assert.equal(onDisk()['refresh_intent'], null);
  });

  it('a refresh asked for after the stop began never reaches the provider', async () => {
    const { owner, provider, onDisk } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    owner.hurry();
    const r = await owner.refresh('cli');
    assert.ok(!r.ok && r.error.code === 'shutting_down');
    assert.deepEqual(provider.shown, []);
    assert.equal(onDisk()['refresh_intent'] ?? null, null);
  });

  it('when close() times out, the request is abandoned before the lock is released, and nothing is written after', async () => {
    const { owner, provider, onDisk, stateFile } = setup(valid('ref_0'));
    assert.ok((await owner.start()).ok);
    const slow = slowAnswer();
    provider.script.push(slow.answer);
    const refreshing = owner.refresh('cli');
    await slow.arrived;
    assert.ok((await owner.close(50)).ok);
    assert.ok(slow.aborted(), 'abandoned at the timeout');
    const after = readFileSync(stateFile, 'utf8');
    slow.release();
    await refreshing;
    assert.equal(readFileSync(stateFile, 'utf8'), after, 'no write without the lock');
    assert.equal(onDisk()['refresh_token'], 'ref_0');
  });
});
