/** Helpers of the client commands: `token --exec` and `set`. */
import { spawn } from 'node:child_process';
import { TokendError } from '../shared/errors.js';

/** Run `command` with the token in `envName`; its exit code is ours. Signals are passed on. */
export function runTokenExec(command: string[], envName: string, token: string): Promise<number> {
  const [file, ...args] = command;
  if (file === undefined) throw new TokendError('invalid_request', 'token --exec needs a command: tokend token --exec -- CMD [ARGS...]');
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envName)) throw new TokendError('invalid_request', `--env ${envName} is not a valid variable name`);
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit', env: { ...process.env, [envName]: token } });
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.once('error', (err) => reject(new TokendError('invalid_request', `cannot run ${file}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumber(signal) ?? 1) : 1)));
  });
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal];
}

/** The body of `POST /set-tokens` as given: an access token, and the rest as it came (the daemon checks it). */
export type SetInput = { readonly access_token: string } & Readonly<Record<string, unknown>>;

export async function readSetInput(opts: { stdin?: boolean; accessToken?: string; refreshToken?: string; expiresIn?: string }): Promise<SetInput> {
  let input: Record<string, unknown>;
  if (opts.stdin) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    input = parseSetJson(Buffer.concat(chunks));
  } else {
    input = {};
    if (opts.accessToken) input['access_token'] = opts.accessToken;
    if (opts.refreshToken) input['refresh_token'] = opts.refreshToken;
    if (opts.expiresIn !== undefined) {
      const n = Number(opts.expiresIn);
      if (!Number.isInteger(n) || n <= 0) throw new TokendError('invalid_request', '--expires-in must be a positive whole number of seconds');
      input['expires_in'] = n;
    }
  }
  const accessToken = input['access_token'];
  if (typeof accessToken !== 'string' || accessToken === '') {
    throw new TokendError('invalid_request', 'an access token is required (--access-token, or access_token with --stdin)');
  }
  return { ...input, access_token: accessToken };
}

const SET_SHAPE = '{"access_token": "...", "refresh_token": "...", "expires_in": SECONDS}';

/** Standard input of `tokend set --stdin`: one JSON object, or one clear error (exit 2). */
export function parseSetJson(bytes: Buffer): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new TokendError('invalid_json', 'standard input is not valid UTF-8');
  }
  if (text.trim() === '') throw new TokendError('invalid_json', `standard input is empty; expected a JSON object ${SET_SHAPE}`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TokendError('invalid_json', 'standard input is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TokendError(
      'invalid_json',
      `standard input must be a JSON object ${SET_SHAPE}, not ${value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`}`,
    );
  }
  return value as Record<string, unknown>;
}
