import assert from 'node:assert/strict';
import { it } from 'node:test';
import { deferredLog } from '../../src/shared/deferred-log.ts';
import type { Log } from '../../src/shared/log.ts';

it('a line logged before the logger has loaded is written once it has, in order; later lines go straight through', async () => {
  const lines: string[] = [];
  const record = (level: string) => (first: object | string, msg?: string) =>
    void lines.push(`${level} ${typeof first === 'string' ? first : `${JSON.stringify(first)} ${msg}`}`);
  const real: Log = { error: record('error'), warn: record('warn'), info: record('info'), debug: record('debug') };
  let load!: (log: Log) => void;
  const log = deferredLog(new Promise<Log>((resolve) => (load = resolve)));
  log.error({ code: 'x' }, 'first');
  log.info('second');
  assert.deepEqual(lines, [], 'nothing can be written before the logger exists');
  load(real);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(lines, ['error {"code":"x"} first', 'info second']);
  log.warn('third');
  assert.deepEqual(lines.at(-1), 'warn third', 'once loaded, a line is written at once');
});
