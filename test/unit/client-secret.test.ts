/** client_secret_command: its output is the secret; every failure is said by the program's name and how it ended, never by what it printed. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { runSecretCommand } from '../../src/config/client-secret.ts';

const node = (code: string): [string, ...string[]] => [process.execPath, '-e', code];
const SECRET = 'sekrit-value-42';

it('the trimmed standard output is the secret', async () => {
  assert.deepEqual(await runSecretCommand(node(`process.stdout.write(' ${SECRET}\\n')`)), { value: SECRET });
});

for (const [name, argv, expected, timeoutMs] of [
  ['a failing exit code', node(`console.log('${SECRET}'); process.exit(3)`), /exited with code 3$/, undefined],
  ['printing nothing', node(''), /printed nothing$/, undefined],
  ['ending by a signal', node(`console.log('${SECRET}'); process.kill(process.pid, 'SIGKILL')`), /was ended by SIGKILL$/, undefined],
  ['too much output', node(`process.stdout.write('${SECRET}'.repeat(10000))`), /printed more than 64 KiB$/, undefined],
  ['hanging', node(`console.log('${SECRET}'); setTimeout(() => {}, 60000)`), /did not finish within 0.3 s$/, 300],
  ['a program that does not exist', ['/nonexistent/secret-tool'], /could not run \(ENOENT\)$/, undefined],
] as const) {
  it(`${name}: one line naming the program, never the output`, async () => {
    const r = await runSecretCommand(argv, timeoutMs);
    assert.ok('problem' in r, `expected a problem, got a value`);
    assert.match(r.problem, expected);
    assert.ok(r.problem.startsWith(`client_secret_command ${argv[0]} `));
    assert.doesNotMatch(r.problem, new RegExp(SECRET));
  });
}
