import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { errorCodes } from '../../src/errors.ts';

it("the README's error table lists every code with its HTTP status and exit code", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Error codes'));
  const documented = new Map<string, { status: string; exit: number }>();
  for (const line of section.split('\n').slice(4)) {
    if (!line.startsWith('| `')) break;
    const [codes, status, exit] = line
      .split('|')
      .slice(1, 4)
      .map((c) => c.trim());
    assert.ok(codes !== undefined && status !== undefined, line);
    for (const code of codes.match(/`[a-z_]+`/g)!) documented.set(code.slice(1, -1), { status: status, exit: Number(exit) });
  }
  assert.deepEqual([...documented.keys()].sort(), Object.keys(errorCodes).sort());
  for (const [code, doc] of documented) {
    const spec = errorCodes[code as keyof typeof errorCodes];
    assert.equal(doc.exit, spec.exit, code);
    if (doc.status !== '—') assert.equal(Number(doc.status), spec.status, code);
  }
});
