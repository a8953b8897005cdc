import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { errorCodes, exitCodeOf, httpStatusOf, isHttpErrorCode, type ErrorCode } from '../../src/shared/errors.ts';
import { answerStatus } from '../../src/http/reply.ts';
import type { Listen } from '../../src/config/config.ts';
import { listenFailure } from '../../src/daemon/daemon.ts';

const codes = Object.keys(errorCodes) as ErrorCode[];

it("the README's error table lists every code with its HTTP status (— for none) and exit code", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Error codes'));
  const documented = new Map<string, { status: string; exit: number }>();
  for (const line of section.split('\n').slice(4)) {
    if (!line.startsWith('| `')) break;
    const [names, status, exit] = line
      .split('|')
      .slice(1, 4)
      .map((c) => c.trim());
    assert.ok(names !== undefined && status !== undefined, line);
    for (const code of names.match(/`[a-z_]+`/g)!) documented.set(code.slice(1, -1), { status: status, exit: Number(exit) });
  }
  assert.deepEqual([...documented.keys()].sort(), [...codes].sort());
  for (const [code, doc] of documented) {
    const spec = errorCodes[code as ErrorCode];
    assert.equal(doc.exit, spec.exit, code);
    assert.equal(doc.status === '—' ? null : Number(doc.status), spec.status, code);
  }
});

describe('HTTP status', () => {
  it('a CLI-only code has none: httpStatusOf does not take it, and an answer that carries one anyway is a 500', () => {
    const cliOnly = codes.filter((c) => !isHttpErrorCode(c));
    assert.deepEqual(cliOnly.sort(), ['address_in_use', 'daemon_unreachable', 'listen_failed', 'login_failed', 'state_locked']);
    for (const code of cliOnly) assert.equal(answerStatus(code), 500, code);
    for (const code of codes.filter(isHttpErrorCode)) assert.equal(answerStatus(code), httpStatusOf(code), code);
    // Checked by the compiler (tsconfig.test.json), never run.
    const _typeCheck = (): number =>
      // @ts-expect-error state_locked has no HTTP status
      httpStatusOf('state_locked');
    void _typeCheck;
  });
});

describe('listen failures', () => {
  const tcp: Listen = { kind: 'tcp', host: '127.0.0.1', port: 4242 };
  const failure = (code: string | undefined, message = 'boom'): NodeJS.ErrnoException => Object.assign(new Error(message), code ? { code } : {});

  it("take their exit code from their error code's catalogue entry, the same as before", () => {
    const cases: Array<[string | undefined, ErrorCode, number, string]> = [
      ['EADDRINUSE', 'address_in_use', 1, 'address already in use'],
      ['EADDRNOTAVAIL', 'config_invalid', 2, 'the address is not available on this host'],
      ['EACCES', 'config_invalid', 2, 'permission denied (ports below 1024 need privileges)'],
      ['EPERM', 'config_invalid', 2, 'permission denied'],
      ['ENOENT', 'config_invalid', 2, 'no such directory'],
      ['EMFILE', 'listen_failed', 1, 'EMFILE'],
      [undefined, 'listen_failed', 1, 'boom'],
    ];
    for (const [errno, code, exit, why] of cases) {
      const e = listenFailure(tcp, failure(errno));
      assert.equal(e.error.code, code, String(errno));
      assert.equal(e.exitCode, exit, String(errno));
      assert.equal(e.exitCode, exitCodeOf(code));
      assert.equal(e.error.message, `cannot listen on 127.0.0.1:4242: ${why}`);
    }
    assert.equal(listenFailure({ kind: 'unix', path: '/run/t.sock' }, failure('EACCES')).error.message, 'cannot listen on unix:/run/t.sock: permission denied');
  });
});
