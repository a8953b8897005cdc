import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as v from 'valibot';
import { fromEnvironment } from '../../src/config/accounts.ts';
import { configFilePath, loadConfigFile } from '../../src/config/config-file.ts';
import { accountKeys, unavailableKeys } from '../../src/config/config-file-keys.ts';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import { KeyLines } from '../../src/config/toml-lines.ts';

const env = { XDG_STATE_HOME: '/var/st', HOME: '/home/u' };
let dir: string;
let n = 0;

/** A config file (mode 0600) with `text`, in a fresh directory of its own. */
function configFile(text: string): string {
  const sub = join(dir, `c${n++}`);
  mkdirSync(sub);
  const path = join(sub, 'config.toml');
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

function secretFile(path: string, content: string, mode = 0o600): string {
  writeFileSync(path, content);
  chmodSync(path, mode);
  return path;
}

const problemsOf = (fn: () => unknown): readonly string[] => {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-config-file-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('config file', () => {
  it('reads a file with several accounts into the daemon configuration', () => {
    const path = configFile(`# two accounts
listen = "127.0.0.1:4343"
log_level = "debug"
default_account = "work"
allowed_origins = ["https://app.example:8443"]
allowed_hosts = ["tokend.internal"]
allowed_uids = [1001]
max_connections = 64
wake_interval = "5s"

[accounts.work]
provider = "oidc"
issuer = "https://id.example.com"
client_id = "work-client"
client_secret_file = "work.secret"
token_auth_method = "client_secret_basic"
device_authorization_url = "https://id.example.com/device"
refresh_lead = "10m"
refresh_at_least = "12h"

[accounts.home]
client_id = "monzo-id"
client_secret_command = ["pass", "show", "monzo"]
`);
    secretFile(join(path, '..', 'work.secret'), 's3cret-value\n');
    const c = loadConfigFile(path, env);
    assert.deepEqual(c, {
      listen: { kind: 'tcp', host: '127.0.0.1', port: 4343 },
      apiKey: null,
      logLevel: 'debug',
      allowedOrigins: ['https://app.example:8443'],
      allowedHosts: ['tokend.internal'],
      allowedUids: [1001],
      maxConnections: 64,
      maxEventClients: 512,
      wakeIntervalMs: 5_000,
      upstreamTimeoutMs: 15_000,
      shutdownTimeoutMs: 10_000,
      moveCorruptAside: false,
      configFile: path,
      stateDir: '/var/st/tokend',
      defaultAccount: 'work',
      store: null,
      accounts: [
        {
          name: 'work',
          provider: {
            name: 'oidc',
            issuer: 'https://id.example.com',
            authUrl: null,
            tokenUrl: null,
            clientId: 'work-client',
            clientSecret: 's3cret-value',
            authMethod: 'client_secret_basic',
            scope: 'openid offline_access',
            redirectUri: 'http://localhost:8080/authorization-code',
          },
          stateFile: '/var/st/tokend/work.json',
          deviceAuthorizationUrl: 'https://id.example.com/device',
          clientSecretCommand: null,
          refreshLeadMs: 600_000,
          refreshAtLeastMs: 12 * 3_600_000,
          reauthorizeAfterMs: null,
          hooks: { onTokenChange: null, onReauthorizationRequired: null, onError: null },
        },
        {
          name: 'home',
          provider: {
            name: 'monzo',
            issuer: null,
            authUrl: 'https://auth.monzo.com/',
            tokenUrl: 'https://api.monzo.com/oauth2/token',
            clientId: 'monzo-id',
            clientSecret: null,
            authMethod: 'client_secret_post',
            scope: null,
            redirectUri: 'http://localhost:8080/authorization-code',
          },
          stateFile: '/var/st/tokend/home.json',
          deviceAuthorizationUrl: null,
          clientSecretCommand: ['pass', 'show', 'monzo'],
          refreshLeadMs: null,
          refreshAtLeastMs: null,
          reauthorizeAfterMs: null,
          hooks: { onTokenChange: null, onReauthorizationRequired: null, onError: null },
        },
      ],
    });
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.accounts) && Object.isFrozen(c.accounts[0]!.provider) && Object.isFrozen(c.accounts[0]!.hooks));
  });

  it('lists every problem, one line each, with the file, the line and the key, in line order', () => {
    const path = configFile(`listen = "here"
lisen = "127.0.0.1:1"

[accounts.work]
provider = "nope"
token_url = "ftp://x"
refresh_lead = "5 minutes"
client_secret_command = []

[accounts.home]
client_id = "h"
redirect_uri = "mailto:x"
`);
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [
        `${path}:1: listen: "here" is not HOST:PORT or unix:/path`,
        `${path}:2: lisen: unknown key (did you mean listen?)`,
        `${path}:4: accounts.work.client_id: required (the OAuth client id registered with the provider)`,
        `${path}:4: default_account: needed when there are several accounts (work, home)`,
        `${path}:5: accounts.work.provider: must be monzo, oidc or custom, not "nope"`,
        `${path}:6: accounts.work.token_url: "ftp://x" is not an http(s) URL`,
        `${path}:7: accounts.work.refresh_lead: "5 minutes" is not a duration such as "90s", "5m", "12h" or "90d"`,
        `${path}:8: accounts.work.client_secret_command[0]: needs the program as its first element`,
        `${path}:12: accounts.home.redirect_uri: "mailto:x" is not an http(s) URL`,
      ],
    );
  });

  it('refuses reauthorize_after and the hooks, one line each naming the key: tokend does not act on them yet', () => {
    const path = configFile(`on_error = ["logger"]

[accounts.work]
client_id = "w"
refresh_lead = "10m"
reauthorize_after = "90d"
on_token_change = ["notify-send", "token changed"]
on_reauthorization_required = ["/usr/local/bin/page-me"]
on_error = []
`);
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [
        `${path}:1: on_error: not available in this version of tokend`,
        `${path}:6: accounts.work.reauthorize_after: not available in this version of tokend`,
        `${path}:7: accounts.work.on_token_change: not available in this version of tokend`,
        `${path}:8: accounts.work.on_reauthorization_required: not available in this version of tokend`,
        `${path}:9: accounts.work.on_error: not available in this version of tokend`,
      ],
    );
  });

  it('still checks the values of the keys not available yet, ready for the day they are', () => {
    const problems = (schema: v.GenericSchema, value: unknown): string[] =>
      (v.safeParse(schema, value, { abortPipeEarly: true }).issues ?? []).map((i) => i.message);
    assert.deepEqual(v.parse(accountKeys.reauthorize_after, '90d'), 90 * 86_400_000);
    assert.deepEqual(problems(accountKeys.reauthorize_after, '30s'), ['must be from 1m to 3650d']);
    for (const key of ['on_token_change', 'on_reauthorization_required', 'on_error'] as const) {
      assert.deepEqual(v.parse(accountKeys[key], ['notify-send', 'x']), ['notify-send', 'x']);
      assert.deepEqual(problems(accountKeys[key], []), ['needs the program as its first element']);
    }
    assert.deepEqual(
      [...unavailableKeys].filter((k) => !(k in accountKeys)),
      [],
      'each one is an account key with its schema',
    );
  });

  it('places keys written dotted, quoted, in inline tables and after multi-line values', () => {
    const path = configFile(`[accounts]
work.client_id = "w"
work.token_url = "http://id.example.com/token"
"home" = { client_id = "h", scope = 5 }

[accounts.third]
client_id = "t"
client_secret_command = [
  "x", # [accounts.fake]
  "y",
]
note = """
refresh_lead = "nonsense"
"""
'refresh_lead' = "1x"
`);
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env, {}, { needsProvider: false })),
      [
        `${path}:1: default_account: needed when there are several accounts (work, home, third)`,
        `${path}:3: accounts.work.token_url: http://id.example.com/token is plain http to a host that is not this machine (secrets would cross the network in clear; use https)`,
        `${path}:4: accounts.home.scope: must be a string`,
        `${path}:12: accounts.third.note: unknown key`,
        `${path}:15: accounts.third.refresh_lead: "1x" is not a duration such as "90s", "5m", "12h" or "90d"`,
      ],
    );
  });

  it('reports a syntax error with its line', () => {
    const path = configFile('listen = "127.0.0.1:4242"\n[accounts.x]\nclient_id = \n');
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [`${path}:3: not valid TOML: invalid value (column 13)`],
    );
  });

  it('refuses an account name that is not lower-case letters, digits, _ and -', () => {
    for (const name of ['Work', '-x', '"a.b"', 'x'.repeat(64), '"with space"', '"é"']) {
      const path = configFile(`\n[accounts.${name}]\nclient_id = "x"\n`);
      const problems = problemsOf(() => loadConfigFile(path, env));
      assert.equal(problems.length, 1, `${name}: ${problems.join('\n')}`);
      assert.match(problems[0]!, /^.*config\.toml:2: accounts\..*: an account name is 1 to 63 lower-case letters/);
    }
    assert.equal(loadConfigFile(configFile(`[accounts.${'a'.repeat(63)}]\nclient_id = "x"\n`), env).accounts[0]!.name, 'a'.repeat(63));
  });

  it('refuses two accounts on one state file, and a file with no account', () => {
    const path = configFile(`default_account = "a"
[accounts.a]
client_id = "x"
state_file = "/var/st/tokend/b.json"
[accounts.b]
client_id = "y"
`);
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [`${path}:5: accounts.b.state_file: /var/st/tokend/b.json is also the state file of account a; each account needs its own`],
    );
    const empty = configFile('listen = "127.0.0.1:4242"\n');
    assert.deepEqual(
      problemsOf(() => loadConfigFile(empty, env)),
      [`${empty}:1: accounts: no account: add an [accounts.NAME] table`],
    );
  });

  it('takes the only account, or the one named default, as the default account, and checks a named one exists', () => {
    assert.equal(loadConfigFile(configFile('[accounts.solo]\nclient_id = "x"\n'), env).defaultAccount, 'solo');
    assert.equal(loadConfigFile(configFile('[accounts.a]\nclient_id = "x"\n[accounts.default]\nclient_id = "y"\n'), env).defaultAccount, 'default');
    const path = configFile('default_account = "c"\n[accounts.a]\nclient_id = "x"\n[accounts.b]\nclient_id = "y"\n');
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [`${path}:1: default_account: "c" is not an account of this file (a, b)`],
    );
  });

  it('refuses an inline secret without repeating it, and an unknown key with a suggestion', () => {
    const path = configFile('api_key = "k-very-secret-api-key"\n[accounts.a]\nclient_id = "x"\nclient_secret = "hunter2-hunter2"\nclient_secert_file = "f"\n');
    const problems = problemsOf(() => loadConfigFile(path, env));
    assert.equal(problems.length, 3, problems.join('\n'));
    assert.match(problems[0]!, /:1: api_key: an API key is not kept in the config file; .* api_key_file$/);
    assert.match(
      problems[1]!,
      /:4: accounts\.a\.client_secret: a client secret is not kept in the config file; .*client_secret_file, or use client_secret_command$/,
    );
    assert.match(problems[2]!, /:5: accounts\.a\.client_secert_file: unknown key \(did you mean client_secret_file\?\)$/);
    assert.ok(!problems.join('\n').includes('hunter2') && !problems.join('\n').includes('k-very-secret'));
  });

  it('reads secrets only from private files, and never repeats them', () => {
    const sub = join(dir, 'secrets');
    mkdirSync(sub);
    const key = secretFile(join(sub, 'api-key'), 'k'.repeat(32));
    const secret = secretFile(join(sub, 'client-secret'), 'the-client-secret\n');
    const ok = loadConfigFile(configFile(`api_key_file = "${key}"\n[accounts.a]\nclient_id = "x"\nclient_secret_file = "${secret}"\n`), env);
    assert.equal(ok.apiKey, 'k'.repeat(32));
    assert.equal(ok.accounts[0]!.provider.clientSecret, 'the-client-secret');

    const open = secretFile(join(sub, 'open-key'), 'o'.repeat(32), 0o644);
    const groupSecret = secretFile(join(sub, 'group-secret'), 'group-secret-value', 0o640);
    const short = secretFile(join(sub, 'short-key'), 'short-key');
    const path = configFile(
      `api_key_file = "${open}"\n[accounts.a]\nclient_id = "x"\nclient_secret_file = "${groupSecret}"\n[accounts.b]\nclient_id = "y"\nclient_secret_file = "${join(sub, 'missing')}"\n`,
    );
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [
        `${path}:1: api_key_file: ${open} may be read or written by other users (mode 0644); run: chmod 600 ${open}`,
        `${path}:2: default_account: needed when there are several accounts (a, b)`,
        `${path}:4: accounts.a.client_secret_file: ${groupSecret} may be read or written by other users (mode 0640); run: chmod 600 ${groupSecret}`,
        `${path}:7: accounts.b.client_secret_file: cannot read ${join(sub, 'missing')} (ENOENT)`,
      ],
    );
    const shortPath = configFile(`api_key_file = "${short}"\n[accounts.a]\nclient_id = "x"\n`);
    assert.deepEqual(
      problemsOf(() => loadConfigFile(shortPath, env)),
      [`${shortPath}:1: api_key_file: the key in it must be at least 16 visible ASCII characters, without spaces`],
    );
  });

  it('refuses a config file others may write: it names commands tokend runs', () => {
    const path = configFile('[accounts.a]\nclient_id = "x"\n');
    chmodSync(path, 0o666);
    const problems = problemsOf(() => loadConfigFile(path, env));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /config\.toml is writable by every user \(mode 0666\)/);
    assert.deepEqual(
      problemsOf(() => loadConfigFile(join(dir, 'nowhere.toml'), env)),
      [`${join(dir, 'nowhere.toml')}: cannot read the config file (ENOENT)`],
    );
  });

  it('resolves relative paths from the config file directory and ~/ from home', () => {
    const path = configFile(
      'state_dir = "state"\n[accounts.a]\nclient_id = "x"\n[accounts.b]\nclient_id = "y"\nstate_file = "../b.json"\n[accounts.c]\nclient_id = "z"\nstate_file = "~/c.json"\ndefault_account = "a"\n',
    );
    const problems = problemsOf(() => loadConfigFile(path, env));
    assert.deepEqual(problems, [
      `${path}:2: default_account: needed when there are several accounts (a, b, c)`,
      `${path}:10: accounts.c.default_account: unknown key here (default_account is a global key, set before the first [accounts.NAME] table)`,
    ]);
    const good = configFile(
      'state_dir = "state"\n[accounts.a]\nclient_id = "x"\n[accounts.b]\nclient_id = "y"\nstate_file = "../b.json"\n[accounts.default]\nclient_id = "z"\nstate_file = "~/c.json"\n',
    );
    const c = loadConfigFile(good, env);
    const base = join(good, '..');
    assert.equal(c.stateDir, join(base, 'state'));
    assert.deepEqual(
      c.accounts.map((a) => a.stateFile),
      [join(base, 'state', 'a.json'), join(dir, 'b.json'), join(process.env['HOME'] ?? '', 'c.json')].map(String),
    );
  });

  it('lets flags and the environment override the file global keys, naming them in problems; accounts come from the file only', () => {
    const path = configFile('listen = "127.0.0.1:4343"\nlog_level = "warn"\nmax_connections = 64\n[accounts.a]\nclient_id = "from-file"\n');
    const c = loadConfigFile(
      path,
      { ...env, TOKEND_LISTEN: '127.0.0.1:5000', TOKEND_LOG_LEVEL: 'trace', TOKEND_CLIENT_ID: 'from-env', TOKEND_STATE_FILE: '/x.json' },
      {
        listen: '127.0.0.1:6000',
        moveCorruptAside: true,
      },
    );
    assert.deepEqual(c.listen, { kind: 'tcp', host: '127.0.0.1', port: 6000 });
    assert.equal(c.logLevel, 'trace');
    assert.equal(c.maxConnections, 64);
    assert.equal(c.moveCorruptAside, true);
    assert.equal(c.accounts[0]!.provider.clientId, 'from-file');
    assert.equal(c.accounts[0]!.stateFile, '/var/st/tokend/a.json');

    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, { ...env, TOKEND_LOG_LEVEL: 'loud', TOKEND_MAX_CONNECTIONS: '1e3' }, { clientId: 'x' })),
      [
        'TOKEND_LOG_LEVEL (--log-level): must be one of fatal, error, warn, info, debug, trace, silent',
        'TOKEND_MAX_CONNECTIONS (--max-connections): must be an integer from 2 to 1000000, in plain decimal digits',
        `--client-id: set per account in ${path} when a config file is used`,
      ],
    );
  });

  it('refuses a non-loopback listen address without an API key', () => {
    const path = configFile('listen = "0.0.0.0:4242"\n[accounts.a]\nclient_id = "x"\n');
    assert.deepEqual(
      problemsOf(() => loadConfigFile(path, env)),
      [`${path}:1: listen: 0.0.0.0:4242 is not a loopback address; set api_key_file to listen on it`],
    );
    assert.equal(loadConfigFile(path, { ...env, TOKEND_API_KEY: 'k'.repeat(20) }).apiKey, 'k'.repeat(20));
  });

  it('finds the config file: --config, then TOKEND_CONFIG, then the default path when it exists', () => {
    const xdg = join(dir, 'xdg');
    assert.equal(configFilePath({ config: 'a.toml' }, { TOKEND_CONFIG: '/b.toml' }), join(process.cwd(), 'a.toml'));
    assert.equal(configFilePath({}, { TOKEND_CONFIG: '/b.toml', XDG_CONFIG_HOME: xdg }), '/b.toml');
    assert.equal(configFilePath({}, { XDG_CONFIG_HOME: xdg }), null);
    mkdirSync(join(xdg, 'tokend'), { recursive: true });
    writeFileSync(join(xdg, 'tokend', 'config.toml'), '');
    assert.equal(configFilePath({}, { XDG_CONFIG_HOME: xdg }), join(xdg, 'tokend', 'config.toml'));
  });

  it('gives the environment configuration as one account named default, exactly as before', () => {
    const before = loadConfig(
      { listen: '127.0.0.1:4444' },
      { TOKEND_CLIENT_ID: 'id', TOKEND_CLIENT_SECRET: 'sec', TOKEND_STATE_FILE: '/srv/t/tokens.json', TOKEND_ALLOWED_UIDS: '7' },
      { needsProvider: true },
    );
    const c = fromEnvironment(before);
    assert.equal(c.accounts.length, 1);
    const [account] = c.accounts;
    assert.equal(account!.name, 'default');
    assert.equal(c.defaultAccount, 'default');
    assert.equal(account!.provider, before.provider);
    assert.equal(account!.stateFile, '/srv/t/tokens.json');
    assert.equal(c.stateDir, '/srv/t');
    assert.equal(c.configFile, null);
    assert.equal(c.store, null);
    for (const [key, value] of Object.entries(before)) {
      if (key !== 'provider' && key !== 'stateFile') assert.deepEqual(c[key as keyof typeof c], value, key);
    }
    assert.ok(Object.isFrozen(c) && Object.isFrozen(account));
  });
});

describe('key lines', () => {
  it('does not take text inside strings or arrays for keys or tables', () => {
    const lines = new KeyLines(`a = "b = 1"\nm = '''\n[t]\nx = 1\n'''\nl = [\n  ["[u]"],\n]\n[t]\nx = 2\n`);
    assert.equal(lines.lineOf(['a']), 1);
    assert.equal(lines.lineOf(['t']), 9);
    assert.equal(lines.lineOf(['t', 'x']), 10);
    assert.equal(lines.lineOf(['t', 'nothing']), 9);
    assert.equal(lines.lineOf(['u']), 1);
    assert.equal(lines.lineOf(['l', 0]), 6);
  });
});
