/**
 * Hooks for the end-to-end tests, and only for them: with TOKEND_TEST_HOOKS
 * unset (every real daemon), `withTestHooks` hands the owner's API back
 * untouched and nothing here runs.
 *
 * - TOKEND_TEST_HOLD_START=FILE: hold the owner's start until FILE exists, to
 *   watch a daemon whose owner is starting.
 * - TOKEND_TEST_CRASH_OWNER=FILE: crash the owner thread when FILE appears,
 *   as its content says: `throw` (an uncaught error in a timer), `oom` (out
 *   of memory). The file is removed first, so the next thread lives, unless it
 *   says `loop` (every thread crashes).
 */
import { existsSync, readFileSync, unlinkSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import type { OwnerApi } from '../shared/contract.js';

let crashArmed = false;

/** `api` itself unless TOKEND_TEST_HOOKS=1; then with the hooks the environment names. */
export function withTestHooks(api: OwnerApi, env: NodeJS.ProcessEnv = process.env): OwnerApi {
  if (env['TOKEND_TEST_HOOKS'] !== '1') return api;
  const crash = env['TOKEND_TEST_CRASH_OWNER'];
  // Once per thread: every account's attach passes here.
  if (crash !== undefined && !crashArmed) {
    crashArmed = true;
    crashWhenAsked(crash);
  }
  const hold = env['TOKEND_TEST_HOLD_START'];
  if (hold === undefined) return api;
  return {
    ...api,
    async start(options) {
      await untilExists(hold);
      return api.start(options);
    },
  };
}

/** Resolves once `path` exists. Its directory is watched, not the file (a file watch follows the inode, and this one does not exist yet). */
function untilExists(path: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const watcher = watch(dirname(path), () => {
      if (existsSync(path)) done();
    });
    const done = (): void => {
      watcher.close();
      resolve();
    };
    if (existsSync(path)) done();
  });
}

function crashWhenAsked(path: string): void {
  const fire = (): void => {
    let how: string;
    try {
      how = readFileSync(path, 'utf8').trim();
    } catch {
      return;
    }
    // Seen between its creation and its content: the next change says how.
    if (how === '') return;
    watcher.close();
    if (how !== 'loop') unlinkSync(path);
    const hog: unknown[] = [];
    setTimeout(() => {
      if (how === 'oom') for (;;) hog.push(new Array(1_000).fill({ hog: hog.length }));
      throw new Error(`test hook: owner thread crashed (${how})`);
    });
  };
  const watcher = watch(dirname(path), fire);
  fire();
}
