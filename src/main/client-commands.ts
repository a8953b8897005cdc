/** Helpers of the client commands: `token --exec` and `set`. */
import { spawn } from 'node:child_process';
import { TokendError } from '../errors.js';

/** Run `command` with the token in `envName`; its exit code is ours. Signals are passed on. */
export function runTokenExec(command: string[], envName: string, token: string): Promise<number> {
  if (command.length === 0) throw new TokendError('invalid_request', 'token --exec needs a command: tokend token --exec -- CMD [ARGS...]');
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(envName)) throw new TokendError('invalid_request', `--env ${envName} is not a valid variable name`);
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit', env: { ...process.env, [envName]: token } });
    const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.once('error', (err) => reject(new TokendError('invalid_request', `cannot run ${command[0]}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + (signalNumber(signal) ?? 1) : 1)));
  });
}

function signalNumber(signal: NodeJS.Signals): number | undefined {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal];
}

export interface SetInput {
  access_token: string;
  refresh_token?: string | null;
  expires_in?: number;
}

export async function readSetInput(opts: { stdin?: boolean; accessToken?: string; refreshToken?: string; expiresIn?: string }): Promise<SetInput> {
  let input: Record<string, unknown>;
  if (opts.stdin) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new TokendError('invalid_json', 'standard input is not valid JSON');
    }
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
  if (typeof input['access_token'] !== 'string' || input['access_token'] === '') {
    throw new TokendError('invalid_request', 'an access token is required (--access-token, or access_token with --stdin)');
  }
  return input as unknown as SetInput;
}
