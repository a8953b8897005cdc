import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, parseListen } from '../../src/main/config.ts';

const serve = { needsProvider: true };
const problemsOf = (fn: () => unknown): readonly string[] => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.problems;
  }
  return [];
};

describe('configuration', () => {
  it('defaults to Monzo on 127.0.0.1:4242 with the XDG state path', () => {
    const c = loadConfig({}, { TOKEND_CLIENT_ID: 'id', XDG_STATE_HOME: '/var/st' }, serve);
    assert.equal(c.provider.tokenUrl, 'https://api.monzo.com/oauth2/token');
    assert.equal(c.provider.authMethod, 'client_secret_post');
    assert.deepEqual(c.listen, { kind: 'tcp', host: '127.0.0.1', port: 4242 });
    assert.equal(c.stateFile, '/var/st/tokend/tokens.json');
    assert.ok(Object.isFrozen(c));
  });

  it('reads the older names monzo_client_id, monzo_client_secret and store_path', () => {
    const c = loadConfig({}, { monzo_client_id: 'old', monzo_client_secret: 'sec', store_path: '/tmp/old.json' }, serve);
    assert.equal(c.provider.clientId, 'old');
    assert.equal(c.provider.clientSecret, 'sec');
    assert.equal(c.stateFile, '/tmp/old.json');
  });

  it('lets a flag win over the environment', () => {
    const c = loadConfig({ listen: '127.0.0.1:9' }, { TOKEND_LISTEN: '127.0.0.1:8', TOKEND_CLIENT_ID: 'x' }, serve);
    assert.deepEqual(c.listen, { kind: 'tcp', host: '127.0.0.1', port: 9 });
  });

  it('reports every problem, one line each, naming the option', () => {
    const problems = problemsOf(() =>
      loadConfig({}, { TOKEND_PROVIDER: 'nope', TOKEND_LISTEN: 'here', TOKEND_LOG_LEVEL: 'loud', TOKEND_TOKEN_URL: 'ftp://x' }, serve),
    );
    assert.equal(problems.length, 5, problems.join('\n'));
    for (const name of ['TOKEND_PROVIDER', 'TOKEND_LISTEN', 'TOKEND_LOG_LEVEL', 'TOKEND_TOKEN_URL', 'TOKEND_CLIENT_ID']) {
      assert.ok(problems.some((p) => p.startsWith(name)), name);
    }
  });

  it('refuses a non-loopback address without an API key', () => {
    assert.match(problemsOf(() => loadConfig({}, { TOKEND_LISTEN: '0.0.0.0:4242' }, { needsProvider: false }))[0]!, /not a loopback address/);
    const c = loadConfig({}, { TOKEND_LISTEN: '0.0.0.0:4242', TOKEND_API_KEY: 'k'.repeat(32) }, { needsProvider: false });
    assert.equal(c.apiKey, 'k'.repeat(32));
  });

  it('parses HOST:PORT, [v6]:PORT and unix:/path', () => {
    assert.deepEqual(parseListen('[::1]:80'), { kind: 'tcp', host: '::1', port: 80 });
    assert.deepEqual(parseListen('unix:/run/t.sock'), { kind: 'unix', path: '/run/t.sock' });
    assert.equal(typeof parseListen('1.2.3.4:70000'), 'string');
  });
});
