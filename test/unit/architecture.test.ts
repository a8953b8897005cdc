/** The design, checked: who may call the provider, and what the daemon's main thread may load. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const files = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => join(SRC, f));
const imports = (file: string): Array<{ spec: string; typeOnly: boolean }> =>
  [...readFileSync(file, 'utf8').matchAll(/^import (type )?[^'"]*from '([^']+)'|import\('([^']+)'\)/gm)].map((m) => ({
    // One alternative or the other matched.
    spec: (m[2] ?? m[3])!,
    typeOnly: m[1] !== undefined,
  }));
const rel = (file: string): string => relative(SRC, file);

it('only oauth.ts talks to the provider from the daemon; undici is used nowhere else but the client library and the dev login', () => {
  const users = files
    .filter((f) => imports(f).some((i) => i.spec === 'undici' && !i.typeOnly))
    .map(rel)
    .sort();
  assert.deepEqual(users, ['client/index.ts', 'dev/headless-login.ts', 'state-worker/oauth.ts']);
});

it('the daemon main thread and the HTTP layer never load owner-thread code (the contract is imported as types only)', () => {
  const mainSide = files.filter((f) => /^(http\/|main\/(daemon|owner-handle|owner-thread|metrics|cli|commands|serve|config)\.ts)/.test(rel(f)));
  for (const f of mainSide) {
    for (const i of imports(f)) {
      assert.ok(!i.spec.includes('state-worker/') || i.typeOnly, `${rel(f)} loads ${i.spec}`);
      if (i.spec.endsWith('/contract.js')) assert.ok(i.typeOnly, `${rel(f)} imports the contract as a value`);
    }
  }
});

it('only cli.ts exits the process', () => {
  const code = (f: string): string => readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
  const exits = files.filter((f) => /process\.exit\(/.test(code(f))).map(rel);
  assert.deepEqual(exits, ['main/cli.ts']);
});
