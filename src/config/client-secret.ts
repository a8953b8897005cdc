/**
 * An account's client secret when `client_secret_command` gives it: run at
 * the account's start (and by a login), never at load, without a shell and
 * with a timeout. Only its standard output is read, trimmed; a failure is
 * told by the program's name and how it ended, never by what it printed.
 */
import { execFile } from 'node:child_process';
import type { AccountConfig, Argv } from './accounts.js';

export const SECRET_COMMAND_TIMEOUT_MS = 10_000;

export type SecretOutcome = { readonly value: string | null } | { readonly problem: string };

export function runSecretCommand(argv: Argv, timeoutMs = SECRET_COMMAND_TIMEOUT_MS): Promise<SecretOutcome> {
  const [file, ...args] = argv;
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 * 1024, encoding: 'utf8' }, (err, stdout) => {
      if (err) {
        const { code, signal } = err as { code?: unknown; signal?: unknown };
        let why: string;
        if (err.killed) why = `did not finish within ${timeoutMs / 1000} s`;
        else if (typeof code === 'number') why = `exited with code ${String(code)}`;
        // Ended by a signal someone else sent (an OOM kill, a user's kill): not "could not run".
        else if (typeof signal === 'string') why = `was ended by ${signal}`;
        else if (code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') why = 'printed more than 64 KiB';
        else why = `could not run (${typeof code === 'string' ? code : 'error'})`;
        return resolve({ problem: `client_secret_command ${file} ${why}` });
      }
      const value = stdout.trim();
      resolve(value === '' ? { problem: `client_secret_command ${file} printed nothing` } : { value });
    });
  });
}

/** The secret to start `account` with: the command's output when it has one, else what was read at load (null: none). */
export function clientSecretOf(account: Pick<AccountConfig, 'provider' | 'clientSecretCommand'>): Promise<SecretOutcome> {
  if (account.clientSecretCommand === null) return Promise.resolve({ value: account.provider.clientSecret });
  return runSecretCommand(account.clientSecretCommand);
}
