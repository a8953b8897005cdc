import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, isApiKey, loadConfig, parseDecimal, parseListen } from '../../src/config/config.ts';

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
      assert.ok(
        problems.some((p) => p.startsWith(name)),
        name,
      );
    }
  });

  it('refuses a non-loopback address without an API key', () => {
    assert.match(problemsOf(() => loadConfig({}, { TOKEND_LISTEN: '0.0.0.0:4242' }, { needsProvider: false }))[0] ?? '', /not a loopback address/);
    const c = loadConfig({}, { TOKEND_LISTEN: '0.0.0.0:4242', TOKEND_API_KEY: 'k'.repeat(32) }, { needsProvider: false });
    assert.equal(c.apiKey, 'k'.repeat(32));
  });

  it('parses HOST:PORT, [v6]:PORT and unix:/path', () => {
    assert.deepEqual(parseListen('[::1]:80'), { kind: 'tcp', host: '::1', port: 80 });
    assert.deepEqual(parseListen('unix:/run/t.sock'), { kind: 'unix', path: '/run/t.sock' });
    assert.equal(typeof parseListen('1.2.3.4:70000'), 'string');
  });

  it('refuses an API key that is short, has spaces or is not visible ASCII, without repeating it', () => {
    const base = { TOKEND_CLIENT_ID: 'x' };
    for (const key of [' '.repeat(20), 'k'.repeat(15), `${'k'.repeat(16)} x`, `${'k'.repeat(16)}\t`, `${'k'.repeat(16)}é`, `${'k'.repeat(16)}\u0000`]) {
      const problems = problemsOf(() => loadConfig({}, { ...base, TOKEND_API_KEY: key }, serve));
      assert.equal(problems.length, 1, JSON.stringify(key));
      assert.match(problems[0]!, /^TOKEND_API_KEY \(--api-key\): must be at least 16 visible ASCII characters/);
      assert.ok(!problems[0]!.includes(key));
    }
    assert.equal(isApiKey('0123456789abcdef'), true);
    assert.equal(isApiKey('!~'.repeat(8)), true);
  });

  it('takes integer options only as plain decimal digits', () => {
    for (const bad of ['1e3', '0x3e8', ' 1000', '1000 ', '+1000', '1000.0', '1_000', '0b1111101000', '']) assert.equal(parseDecimal(bad), null, bad);
    assert.equal(parseDecimal('1000'), 1000);
    for (const bad of ['1e3', '0x3e8', ' 1000']) {
      const problems = problemsOf(() => loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_UPSTREAM_TIMEOUT_MS: bad }, serve));
      assert.equal(problems.length, 1, bad);
      assert.match(problems[0]!, /^TOKEND_UPSTREAM_TIMEOUT_MS \(--upstream-timeout\): must be an integer from 100 to 300000, in plain decimal digits$/);
    }
    assert.equal(loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_UPSTREAM_TIMEOUT_MS: '1000' }, serve).upstreamTimeoutMs, 1000);
  });

  it('listens only on an IP address or localhost: a host name is refused at validation', () => {
    for (const listen of ['no-such-host.invalid:4242', 'example.com:80', '127.1:4242']) {
      assert.match(
        problemsOf(() => loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_LISTEN: listen }, serve))[0] ?? '',
        /is not an IP address or localhost/,
        listen,
      );
    }
    assert.deepEqual(parseListen('localhost:1'), { kind: 'tcp', host: 'localhost', port: 1 });
    assert.deepEqual(parseListen('127.0.0.1:1'), { kind: 'tcp', host: '127.0.0.1', port: 1 });
  });

  it('refuses a token endpoint or issuer reached over plain http off this machine (the client secret would travel in clear)', () => {
    const env = { TOKEND_CLIENT_ID: 'id', TOKEND_PROVIDER: 'oidc', TOKEND_ISSUER: 'http://id.example.com', TOKEND_TOKEN_URL: 'http://10.0.0.5/token' };
    const problems = problemsOf(() => loadConfig({}, env, serve));
    assert.equal(problems.length, 2, problems.join('\n'));
    assert.match(problems[0]!, /^TOKEND_ISSUER .*plain http/);
    assert.match(problems[1]!, /^TOKEND_TOKEN_URL .*plain http/);
    const local = loadConfig({}, { ...env, TOKEND_ISSUER: 'http://127.0.0.1:4243', TOKEND_TOKEN_URL: 'http://localhost:9/token' }, serve);
    assert.equal(local.provider.tokenUrl, 'http://localhost:9/token');
  });

  it('reads the allowed uids as a comma-separated list of decimal user ids', () => {
    const c = loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_ALLOWED_UIDS: '1000, 1001' }, serve);
    assert.deepEqual(c.allowedUids, [1000, 1001]);
    assert.deepEqual(loadConfig({ allowedUids: '7' }, { TOKEND_CLIENT_ID: 'x', TOKEND_ALLOWED_UIDS: '1000' }, serve).allowedUids, [7]);
    const problems = problemsOf(() => loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_ALLOWED_UIDS: '1000,bob,-1,4294967295' }, serve));
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.ok(problems.every((p) => p.startsWith('TOKEND_ALLOWED_UIDS (--allowed-uids)')));
  });

  it('caps connections and event streams, configurable', () => {
    const c = loadConfig({}, { TOKEND_CLIENT_ID: 'x' }, serve);
    assert.ok(c.maxEventClients < c.maxConnections);
    const set = loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_MAX_CONNECTIONS: '50', TOKEND_MAX_EVENT_CLIENTS: '10' }, serve);
    assert.deepEqual([set.maxConnections, set.maxEventClients], [50, 10]);
    assert.equal(problemsOf(() => loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_MAX_CONNECTIONS: '0' }, serve)).length, 1);
  });

  it('allows only real origins: not null, not *, not a URL with a path', () => {
    const ok = loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_ALLOWED_ORIGINS: 'https://app.example, http://localhost:3000' }, serve);
    assert.deepEqual(ok.allowedOrigins, ['https://app.example', 'http://localhost:3000']);
    const problems = problemsOf(() => loadConfig({}, { TOKEND_CLIENT_ID: 'x', TOKEND_ALLOWED_ORIGINS: 'null,*,https://app.example/,file://x' }, serve));
    assert.equal(problems.length, 4, problems.join('\n'));
  });
});
