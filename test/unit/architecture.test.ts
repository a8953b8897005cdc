/** The design, checked where lint cannot: which module may end the process. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const files = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => join(SRC, f));
const rel = (file: string): string => relative(SRC, file);

// Which folder may import what is lint (eslint.boundaries.mjs); these check that those rules bite.

it('only cli/main.ts exits the process', () => {
  const code = (f: string): string => readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
  const exits = files.filter((f) => /process\.exit\(/.test(code(f))).map(rel);
  assert.deepEqual(exits, ['cli/main.ts']);
});

describe('import boundaries (eslint.boundaries.mjs)', () => {
  const lint = async (file: string, source: string): Promise<string[]> => {
    const { ESLint } = await import('eslint');
    const tseslint = (await import('typescript-eslint')).default;
    const { boundaries } = await import('../../eslint.boundaries.mjs');
    const eslint = new ESLint({
      cwd: join(SRC, '..'),
      overrideConfigFile: true,
      overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser }, plugins: { '@typescript-eslint': tseslint.plugin } }, ...boundaries],
    });
    const [result] = await eslint.lintText(source, { filePath: join(SRC, file) });
    return (result?.messages ?? []).map((m) => m.message);
  };
  const refused: [string, string][] = [
    ['owner/owner.ts', "import { startDaemon } from '../daemon/daemon.js';"],
    ['owner/owner.ts', "import { routes } from '../http/routes.js';"],
    ['http/routes.ts', "import { Owner } from '../owner/owner.js';"],
    ['daemon/daemon.ts', "import { OAuthClient } from '../provider/oauth.js';"],
    ['daemon/daemon.ts', "import { request } from 'undici';"],
    ['client/index.ts', "import { loadConfig } from '../config/config.js';"],
    ['client/index.ts', "import { createLogger } from '../shared/log.js';"],
    ['state-file/codec.ts', "import { Owner } from '../owner/owner.js';"],
    ['shared/errors.ts', "import { DEFAULT_LISTEN } from '../state-file/paths.js';"],
    ['provider/oauth.ts', "import { backoffDelay } from '../owner/schedule.js';"],
    ['login/deliver.ts', "import { startDaemon } from '../daemon/daemon.js';"],
    ['state-file/codec.ts', "import * as v from 'valibot';"],
    ['store/postgres.ts', "import { startDaemon } from '../daemon/daemon.js';"],
    ['store/postgres.ts', "import { Owner } from '../owner/owner.js';"],
    ['http/routes.ts', "import { PostgresStore } from '../store/postgres.js';"],
    ['client/index.ts', "import { PostgresStore } from '../store/postgres.js';"],
    ['owner/owner.ts', "import pg from 'pg';"],
    ['client/index.ts', "import * as v from 'valibot';"],
  ];
  for (const [file, source] of refused) {
    it(`refuses in ${file}: ${source}`, async () => {
      const messages = await lint(file, source);
      assert.equal(messages.length, 1, `expected one boundary error, got ${JSON.stringify(messages)}`);
    });
  }
  const allowed: [string, string][] = [
    ['http/routes.ts', "import type { Owner } from '../owner/owner.js';"],
    ['client/index.ts', "import { decodeState } from '../state-file/codec.js';"],
    ['client/index.ts', "import { TokendError } from '../shared/errors.js';"],
    ['login/deliver.ts', "const { Owner } = await import('../owner/owner.js');"],
    ['owner/owner.ts', "import { OAuthClient } from '../provider/oauth.js';"],
    ['store/postgres.ts', "import { decodeState } from '../state-file/codec.js';"],
    ['store/postgres.ts', "import pg from 'pg';"],
    ['owner/owner.ts', "import { PostgresStore } from '../store/postgres.js';"],
  ];
  for (const [file, source] of allowed) {
    it(`allows in ${file}: ${source}`, async () => {
      assert.deepEqual(await lint(file, source), []);
    });
  }
});
