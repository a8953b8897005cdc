// @ts-check
/**
 * The architecture as import rules: which folder may load what (see the
 * README's architecture map). A folder not named in a rule's list may be
 * imported.
 *
 *   shared/      leaves: errors, the owner's contract, logging, file safety
 *   state-file/  the state file's format and default paths (the client reads it)
 *   provider/    talking to the OAuth provider (the owner, the login)
 *   config/      the configuration, parsed once at the edge
 *   store/       the Postgres store: accounts' states, leases and fencing, the change feed (the owner's, later)
 *   owner/       the owner: a thread-agnostic state machine (owner.ts) and its thread entry (thread.ts)
 *   http/        the HTTP API, on the daemon's main thread
 *   daemon/      the daemon's main thread: start, stop, signals, the owner's handle, metrics
 *   login/       the authorization-code login and where its tokens go
 *   cli/         the `tokend` executable
 *   client/      the client library (`tokend/client`)
 *   dev/         `tokend dev`: a throwaway provider and daemon
 */

/** @param {string[]} folders @param {string} message @param {boolean} [allowTypeImports] */
const folders = (folders, message, allowTypeImports = false) => ({
  regex: `^\\.\\.?/(\\.\\./)*(${folders.join('|')})/`,
  message,
  allowTypeImports,
});
const undici = { name: 'undici', message: 'only the provider code, the client library and the dev login talk HTTP to the outside', allowTypeImports: true };
const ownerAsTypes = folders(['owner', 'provider'], 'the daemon main thread reaches the owner thread through shared/contract.ts (import type) only', true);

const pg = { name: 'pg', message: 'only store/ talks to PostgreSQL', allowTypeImports: true };
const valibot = { name: 'valibot', message: 'what the client library loads carries no schema library: check the few fields by hand' };

/** @param {string[]} files @param {object[]} patterns @param {boolean} [withUndici] @param {object[]} [paths] @param {boolean} [withPg] */
const rule = (files, patterns, withUndici = true, paths = [], withPg = true) => ({
  files,
  rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns, paths: [...(withUndici ? [undici] : []), ...(withPg ? [pg] : []), ...paths] }] },
});

const everythingBut = (/** @type {string[]} */ ...allowed) =>
  ['shared', 'state-file', 'provider', 'config', 'store', 'owner', 'http', 'daemon', 'login', 'cli', 'client', 'dev'].filter((f) => !allowed.includes(f));

export const boundaries = [
  rule(['src/shared/**/*.ts'], [folders(everythingBut('shared'), 'shared/ is the leaves: it imports nothing else of tokend')]),
  rule(
    ['src/state-file/**/*.ts'],
    [folders(everythingBut('shared', 'state-file'), 'state-file/ is what the client library may import: only shared/ below it')],
    true,
    [valibot],
  ),
  rule(['src/provider/**/*.ts'], [folders(everythingBut('shared', 'provider'), 'provider/ talks to the provider and knows nothing of the daemon')], false),
  rule(['src/config/**/*.ts'], [folders(everythingBut('shared', 'state-file', 'config'), 'config/ is parsed at the edge from shared/ pieces only')]),
  rule(
    ['src/store/**/*.ts'],
    [folders(everythingBut('shared', 'state-file', 'store'), 'store/ keeps states in PostgreSQL: it knows the state format and nothing of the daemon')],
    true,
    [],
    false,
  ),
  rule(
    ['src/owner/**/*.ts'],
    [
      folders(
        everythingBut('shared', 'state-file', 'provider', 'store', 'owner'),
        'the owner runs on its own thread: it knows nothing of the daemon, the HTTP side or the CLI',
      ),
    ],
    false,
  ),
  rule(
    ['src/http/**/*.ts'],
    [ownerAsTypes, folders(['cli', 'login', 'client', 'dev', 'store'], 'the HTTP side is served by the daemon: no CLI, login, client or store code')],
  ),
  rule(['src/daemon/**/*.ts'], [ownerAsTypes, folders(['cli', 'client', 'dev'], 'the daemon does not load the CLI or the client library')]),
  rule(
    ['src/login/**/*.ts'],
    [folders(['cli', 'daemon', 'http', 'dev'], 'the login hands tokens over through the client library or the owner, not the daemon')],
    false,
  ),
  rule(['src/cli/**/*.ts'], [ownerAsTypes, folders(['http'], 'the CLI reaches the daemon through daemon/ (serve) and the client library')]),
  rule(
    ['src/client/**/*.ts'],
    [
      folders(everythingBut('client', 'state-file', 'shared'), 'the client library imports only state-file/ and a few leaves of shared/'),
      {
        regex: '^\\.\\./shared/(?!(errors|fs-safety|proc-net)\\.js$)',
        message: 'the client library imports only state-file/ and shared/{errors,fs-safety,proc-net}',
      },
    ],
    false,
    [valibot],
  ),
];
