import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { findLeaks, freePort, http, Proc, tempDir } from '../fixtures/daemon.ts';

const outputs: string[] = [];
const seenTokens = new Set<string>();
after(() => {
  assert.deepEqual(findLeaks(outputs.join('\n'), [...seenTokens]), [], 'a token value appeared in the output of tokend dev');
});

async function startDev(dir: string, providerPort: number): Promise<{ p: Proc; address: string }> {
  const p = new Proc(['dev', '--dir', dir, '--provider-port', String(providerPort), '--token-ttl', '4'], { TOKEND_LISTEN: '127.0.0.1:0' });
  const serving = await p.waitForLog('tokend serving', 30_000);
  return { p, address: String(serving['listen']) };
}

describe('tokend dev', () => {
  it('logs in without a browser, refreshes by itself, and a restart keeps the session', async () => {
    const dir = tempDir();
    const providerPort = await freePort();
    const { p, address } = await startDev(dir, providerPort);
    await p.waitForLog('dev login complete');
    const first = await http(address, 'GET', '/token');
    assert.equal(first.status, 200, first.text);
    seenTokens.add(String(first.json['access_token']));
    await p.waitForLog('token refreshed', 20_000);
    const second = await http(address, 'GET', '/token');
    assert.notEqual(second.json['access_token'], first.json['access_token'], 'the access token changed by refresh');
    seenTokens.add(String(second.json['access_token']));
    assert.match(p.stdout, /curl -s http:\/\/127\.0\.0\.1:\d+\/token/);
    p.kill('SIGTERM');
    assert.equal((await p.exited).code, 0);
    outputs.push(p.output);

    const again = await startDev(dir, providerPort);
    await again.p.waitForLine(() => /resumed the earlier session/.test(again.p.stdout), 20_000);
    assert.ok(!again.p.stderr.includes('dev login complete'), 'no new login was needed');
    const third = await http(again.address, 'GET', '/token');
    assert.equal(third.status, 200, third.text);
    seenTokens.add(String(third.json['access_token']));
    const refreshed = await http(again.address, 'POST', '/refresh-tokens');
    assert.equal(refreshed.status, 200, 'the stored refresh token still works at the provider after the restart');
    seenTokens.add(String(refreshed.json['access_token']));
    again.p.kill('SIGTERM');
    assert.equal((await again.p.exited).code, 0);
    outputs.push(again.p.output);
  });
});
