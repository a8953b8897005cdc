/**
 * The `tokend` commands (commander). Every command returns its exit code
 * (0 ok, 1 failure, 2 usage or config, 75 state owned by another daemon);
 * cli.ts exits with it, and is the only module that exits.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { exitCodeOf, isErrorCode, TokendError } from '../shared/errors.js';
import type { TokendClient } from '../client/index.js';
import { envNames, type Config, type OptionName, type RawOptions } from '../config/config.js';
import { configOrExit, daemonConfigOrExit, guardSignals, say, serve, type Runtime } from '../daemon/serve.js';
import type { LoginAccount } from '../login/deliver.js';
import { printStatus } from './status.js';
import { runReload } from './reload.js';
import { runTokenExec, readSetInput } from './client-commands.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const providerOptions: Array<[OptionName, string]> = [
  ['provider', 'monzo (default), oidc or custom'],
  ['issuer', 'OIDC issuer URL (endpoints from its discovery document)'],
  ['authUrl', 'authorization endpoint (overrides the preset)'],
  ['tokenUrl', 'token endpoint (overrides the preset)'],
  ['clientId', 'OAuth client id'],
  ['clientSecret', 'OAuth client secret (prefer the environment: argv is visible to other users)'],
  ['clientSecretFile', 'file holding the OAuth client secret'],
  ['authMethod', 'client_secret_post, client_secret_basic or none'],
  ['scope', 'scope to request at login'],
  ['redirectUri', 'redirect URI registered with the provider'],
];
const daemonOptions: Array<[OptionName, string]> = [
  ['stateFile', 'state file path'],
  ['listen', 'HOST:PORT or unix:/path (default 127.0.0.1:4242)'],
  ['apiKey', 'API key clients must send as Authorization: Bearer'],
  ['apiKeyFile', 'file holding the API key'],
  ['logLevel', 'fatal, error, warn, info, debug, trace or silent'],
  ['allowedOrigins', 'comma-separated browser origins allowed to call the API'],
  ['allowedHosts', 'comma-separated extra Host names accepted'],
  ['allowedUids', 'comma-separated uids that may connect over keyless loopback TCP besides this user and root'],
  ['maxConnections', 'most connections served at once (lowered to fit the open-file limit)'],
  ['maxEventClients', 'most /events streams at once (lowered to fit the open-file limit)'],
  ['wakeInterval', 'longest sleep between clock checks, ms'],
  ['upstreamTimeout', 'deadline for a token request, ms'],
  ['shutdownTimeout', 'how long shutdown waits for a refresh in flight, ms'],
];
const clientOptions: Array<[OptionName, string]> = [
  ['listen', 'where the daemon listens (default: TOKEND_LISTEN, the owner record, 127.0.0.1:4242)'],
  ['stateFile', 'state file whose owner record names the daemon'],
  ['apiKey', 'API key'],
];

/** `-a/--account NAME`: the account a command acts on (default: the daemon's default account). */
type AccountOption = { account?: string };
/** `--config PATH`: the TOML file naming the accounts. */
type ConfigOption = { config?: string };
const DEFAULT_CONFIG_HINT = '$XDG_CONFIG_HOME/tokend/config.toml';

function addAccountOption(cmd: Command, help = "the account to act on (default: the daemon's default account)"): Command {
  return cmd.option('-a, --account <name>', help);
}

function addOptions(cmd: Command, list: Array<[OptionName, string]>): Command {
  cmd.exitOverride().configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const [name, help] of list) {
    const flag = `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} <value>`;
    cmd.addOption(new Option(flag, `${help} [env ${envNames[name][0]}]`));
  }
  return cmd;
}

/** The client library (and undici) load only for the commands that talk to a daemon. */
async function client(opts: RawOptions & AccountOption): Promise<TokendClient> {
  const { TokendClient } = await import('../client/index.js');
  return new TokendClient({
    ...(opts.listen ? { url: opts.listen } : {}),
    ...(opts.account !== undefined ? { account: opts.account } : {}),
    ...(opts.stateFile ? { stateFile: opts.stateFile } : {}),
    ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
    onWarning: say,
  });
}

/** Map a client failure to its message and exit code. */
async function clientFailure(err: unknown): Promise<number> {
  if (err instanceof TokendError) {
    say(err.message);
    return exitCodeOf(err.code);
  }
  // The library is loaded on demand, never at start; a command that failed in it has loaded it already.
  const { TokendClientError } = await import('../client/index.js');
  if (err instanceof TokendClientError) {
    say(err.message);
    return isErrorCode(err.code) ? exitCodeOf(err.code) : 1;
  }
  say((err as Error).message);
  return 1;
}

/** What every command's action needs: where its exit code goes, and the process it runs in. */
interface CommandContext {
  readonly setExit: (code: number) => void;
  readonly runtime: Runtime;
}

/** An action of a command that talks to a daemon: it resolves with its exit code; a failure is said, with its own. */
const clientAction =
  <A extends unknown[]>(ctx: CommandContext, fn: (...args: A) => Promise<number>) =>
  async (...args: A): Promise<void> => {
    try {
      ctx.setExit(await fn(...args));
    } catch (err) {
      ctx.setExit(await clientFailure(err));
    }
  };

export function buildProgram(setExit: (code: number) => void, runtime: Runtime): Command {
  const ctx: CommandContext = { setExit, runtime };
  const program = new Command('tokend')
    .description("A local OAuth2 token daemon: keeps each account's tokens fresh and durable, and serves them to local programs.")
    .version(pkg.version, '-V, --version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  // `serve` is the default command; the others follow in the order `--help` lists them.
  program.addCommand(serveCommand(ctx), { isDefault: true });
  for (const command of [tokenCommand, statusCommand, refreshCommand, setCommand, reloadCommand, loginCommand, devCommand]) program.addCommand(command(ctx));
  return program;
}

function serveCommand(ctx: CommandContext): Command {
  const cmd = new Command('serve').description('run the daemon (the default command)');
  return addOptions(addOptions(cmd, providerOptions), daemonOptions)
    .option('--move-corrupt-aside', 'move a corrupt state file aside instead of refusing to start')
    .option('--config <path>', `config file naming the accounts (TOML) [env TOKEND_CONFIG; default ${DEFAULT_CONFIG_HINT} when it exists]`)
    .action(async (opts: RawOptions & ConfigOption) => ctx.setExit(await serve(opts, ctx.runtime)));
}

function tokenCommand(ctx: CommandContext): Command {
  const cmd = new Command('token')
    .description('print the current access token (for $(tokend token)), or run a command with it')
    .option('--exec', 'run the command after -- with the token in $TOKEND_ACCESS_TOKEN')
    .option('--env <name>', 'environment variable name for --exec', 'TOKEND_ACCESS_TOKEN')
    .argument('[command...]', 'command to run with --exec')
    .action(
      clientAction(ctx, async (command: string[], opts: RawOptions & AccountOption & { exec?: boolean; env: string }) => {
        const token = await (await client(opts)).getAccessToken();
        if (opts.exec) return runTokenExec(command, opts.env, token);
        process.stdout.write(`${token}\n`);
        return 0;
      }),
    );
  return addOptions(addAccountOption(cmd), clientOptions);
}

function statusCommand(ctx: CommandContext): Command {
  const cmd = new Command('status')
    .description("show every account's state, one line each, then the default account's (or --account's) in full; exit 1 unless ready")
    .option('--json', 'print GET /accounts as JSON')
    .action(
      clientAction(ctx, async (opts: RawOptions & AccountOption & { json?: boolean }) =>
        printStatus(await client(opts), { json: opts.json === true, account: opts.account ?? null }),
      ),
    );
  return addOptions(addAccountOption(cmd, 'the account shown in full (default: the default account)'), clientOptions);
}

function refreshCommand(ctx: CommandContext): Command {
  const cmd = new Command('refresh').description('refresh the tokens now and print the new expiry').action(
    clientAction(ctx, async (opts: RawOptions & AccountOption) => {
      const r = await (await client(opts)).refresh();
      process.stdout.write(`refreshed: expires at ${r.expires_at ?? 'unknown'} (state version ${r.version})\n`);
      return 0;
    }),
  );
  return addOptions(addAccountOption(cmd), clientOptions);
}

function setCommand(ctx: CommandContext): Command {
  const cmd = new Command('set')
    .description('hand the daemon tokens obtained elsewhere; reads JSON {access_token, refresh_token, expires_in} from stdin with --stdin')
    .option('--stdin', 'read the tokens as JSON from standard input (keeps them out of argv)')
    .option('--access-token <token>', 'access token')
    .option('--refresh-token <token>', 'refresh token')
    .option('--expires-in <seconds>', 'access token lifetime in seconds')
    .action(
      clientAction(ctx, async (opts: RawOptions & AccountOption & { stdin?: boolean; accessToken?: string; refreshToken?: string; expiresIn?: string }) => {
        const input = await readSetInput(opts);
        const r = await (await client(opts)).setTokens(input);
        process.stdout.write(`tokens set: expires at ${r.expires_at ?? 'unknown'} (state version ${r.version})\n`);
        return 0;
      }),
    );
  return addOptions(addAccountOption(cmd), clientOptions);
}

function reloadCommand(ctx: CommandContext): Command {
  const cmd = new Command('reload')
    .description(
      'make the daemon read its config file again: new accounts start, removed ones stop, changed ones restart; one line per account; an invalid file changes nothing (exit 2)',
    )
    .action(clientAction(ctx, async (opts: RawOptions) => runReload(await client(opts))));
  return addOptions(cmd, clientOptions);
}

type LoginOptions = RawOptions & AccountOption & ConfigOption & { browser: boolean; timeout: string; waitApproval: boolean };

function loginCommand(ctx: CommandContext): Command {
  const cmd = new Command('login')
    .description('authorize tokend with the provider (authorization-code flow) and store the tokens')
    .option('--no-browser', 'only print the URL; do not open a browser')
    .option('--timeout <seconds>', 'how long to wait for the callback', '300')
    .option('--no-wait-approval', 'Monzo: do not wait for the approval in the app')
    .option('--config <path>', `config file naming the accounts (TOML) [env TOKEND_CONFIG; default ${DEFAULT_CONFIG_HINT} when it exists]`)
    .action(async (opts: LoginOptions) => ctx.setExit(await login(opts)));
  return addOptions(addOptions(addAccountOption(cmd, 'the account to log in (default: the default account)'), providerOptions), [
    ...daemonOptions.filter(([n]) => n === 'stateFile' || n === 'listen' || n === 'apiKey'),
  ]);
}

async function login(opts: LoginOptions): Promise<number> {
  const to = await loginTarget(opts);
  if (to === null) return 2;
  const timeout = Number(opts.timeout);
  if (!Number.isInteger(timeout) || timeout <= 0) {
    say('--timeout must be a positive whole number of seconds');
    return 2;
  }
  try {
    const { runLogin } = await import('../login/command.js');
    return await runLogin(to, {
      browser: opts.browser,
      timeoutMs: timeout * 1000,
      waitForApproval: opts.waitApproval,
      listen: opts.listen ?? process.env['TOKEND_LISTEN'] ?? null,
    });
  } catch (err) {
    return await clientFailure(err);
  }
}

/**
 * The account a login is for: with no config file and no `--account`, the
 * environment's one account, exactly as before accounts; otherwise the named
 * (or default) account of the daemon's configuration. Null when it cannot be
 * had: every problem said.
 */
async function loginTarget(opts: LoginOptions): Promise<Config | LoginAccount | null> {
  const { configFilePath } = await import('../config/config-path.js');
  if (opts.account === undefined && configFilePath(opts, process.env) === null) return configOrExit(opts, true);
  const config = await daemonConfigOrExit(opts);
  if (config === null) return null;
  const name = opts.account ?? config.defaultAccount;
  const { fileAccount } = await import('../login/deliver.js');
  const account = fileAccount(config, name);
  if (account === undefined) say(`no account named "${name}" (the configured accounts: ${config.accounts.map((a) => a.name).join(', ')})`);
  return account ?? null;
}

type DevOptions = RawOptions & { fresh?: boolean; dir?: string; providerPort: string; tokenTtl: string };

function devCommand(ctx: CommandContext): Command {
  const cmd = new Command('dev')
    .description('zero-setup trial: a local OpenID provider, a login without a browser, and the daemon against it')
    .option('--fresh', 'forget the earlier dev session and start over')
    .option('--dir <path>', 'where the dev provider and state file live (default: a directory in the system temp dir)')
    .option('--provider-port <port>', 'port of the local OpenID provider', '4243')
    .option('--token-ttl <seconds>', 'access token lifetime', '30')
    .action(async (opts: DevOptions) => ctx.setExit(await dev(opts, ctx.runtime)));
  return addOptions(cmd, [
    ['listen', 'where the daemon listens (default 127.0.0.1:4242)'],
    ['logLevel', 'log level'],
  ]);
}

async function dev(opts: DevOptions, runtime: Runtime): Promise<number> {
  const [{ createLogger }, { StartError }, { devBanner, startDev }] = await Promise.all([
    import('../shared/log.js'),
    import('../daemon/daemon.js'),
    import('../dev/dev.js'),
  ]);
  const pretty = process.stderr.isTTY === true;
  const logLevel = opts.logLevel ?? process.env['TOKEND_LOG_LEVEL'] ?? 'info';
  const logging = createLogger(logLevel, pretty, 'tokend');
  const guard = guardSignals(logging, runtime.exit);
  const log = await logging;
  const ttl = Number(opts.tokenTtl);
  try {
    const session = await startDev(
      {
        dir: opts.dir ?? null,
        fresh: opts.fresh === true,
        listen: opts.listen ?? null,
        providerPort: Number(opts.providerPort),
        accessTokenTtlSec: ttl,
        logLevel,
      },
      log,
    );
    process.stdout.write(devBanner(session, ttl));
    guard.attach({ stop: (reason) => session.stop(reason), hurry: () => session.daemon.hurry() });
    return await session.daemon.done;
  } catch (err) {
    if (err instanceof StartError) {
      say(err.error.message);
      return err.exitCode;
    }
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      say(`the dev provider's port ${opts.providerPort} is in use; pass --provider-port`);
      return 1;
    }
    return await clientFailure(err);
  }
}

/** Run the command line; resolves with the exit code. */
export async function run(argv: string[], runtime: Runtime): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => (code = c), runtime);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    say((err as Error).message);
    return 1;
  }
  return code;
}
