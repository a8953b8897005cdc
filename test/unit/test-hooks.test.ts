/** The e2e tests' hooks in the owner thread stay out of a real daemon's way. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { OwnerApi, OwnerOptions, Result, Snapshot } from '../../src/shared/contract.ts';
import { withTestHooks } from '../../src/owner/test-hooks.ts';

const started: Result<Snapshot> = { ok: true, value: { seq: 1 } as unknown as Snapshot };
const api = { start: async () => started } as unknown as OwnerApi;

describe('test hooks', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokend-hooks-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('without TOKEND_TEST_HOOKS=1 the API is handed back untouched, whatever else is set', () => {
    const release = join(dir, 'never');
    assert.equal(withTestHooks(api, {}), api);
    assert.equal(withTestHooks(api, { TOKEND_TEST_HOLD_START: release, TOKEND_TEST_CRASH_OWNER: join(dir, 'crash') }), api);
    assert.equal(withTestHooks(api, { TOKEND_TEST_HOOKS: 'true', TOKEND_TEST_HOLD_START: release }), api);
  });

  it('TOKEND_TEST_HOLD_START holds the start until its file exists', async () => {
    const release = join(dir, 'release');
    const hooked = withTestHooks(api, { TOKEND_TEST_HOOKS: '1', TOKEND_TEST_HOLD_START: release });
    let answered = false;
    const start = hooked.start({} as OwnerOptions).then((r) => ((answered = true), r));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(answered, false);
    writeFileSync(release, '');
    assert.deepEqual(await start, started);
  });
});
