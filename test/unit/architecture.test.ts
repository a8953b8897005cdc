/** The design, checked where lint cannot: which module may end the process. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const files = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => join(SRC, f));
const rel = (file: string): string => relative(SRC, file);

// Which folder may import what (the owner thread's code, undici) is checked by lint: eslint.boundaries.mjs.

it('only cli.ts exits the process', () => {
  const code = (f: string): string => readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
  const exits = files.filter((f) => /process\.exit\(/.test(code(f))).map(rel);
  assert.deepEqual(exits, ['main/cli.ts']);
});
