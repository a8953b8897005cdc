#!/usr/bin/env node
/**
 * The `tokend` executable, and the only module that exits the process.
 *
 * Most of a daemon's start is its owner thread booting (a V8 isolate and
 * Node's bootstrap of its own): for `tokend serve`, the default command, it
 * starts booting first, on the other core, while the rest loads. Any other
 * command never starts it. `tokend` and `tokend serve` with no flags (the
 * container's command; config from the environment) skip the argument parser.
 * The preamble comes first: no signal may meet Node's defaults while the
 * rest loads (see signals.ts).
 */
import { daemon, plainServe, serving } from './preamble.js';
import { startOwnerThread } from '../daemon/owner-thread.js';
import { tuneForBursts } from '../daemon/idle-trim.js';

if (serving) tuneForBursts();
/**
 * A reader that goes away (`tokend token | head -c1`) is not an error worth a
 * stack trace: a command stops quietly (any other failure to write its output
 * is said once); a daemon serves on without its banner or log lines.
 */
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (daemon) return;
  if (err.code !== 'EPIPE') process.stderr.write(`tokend: cannot write to standard output (${err.code ?? err.message})\n`);
  process.exit(err.code === 'EPIPE' ? 0 : 1);
});
process.stderr.on('error', () => undefined);
const runtime = { exit: (code: number): never => process.exit(code), ownerThread: serving ? startOwnerThread() : null };

if (plainServe) {
  const { serveCommand } = await import('../daemon/serve.js');
  runtime.exit(await serveCommand({}, runtime));
} else {
  const { run } = await import('./program.js');
  runtime.exit(await run(process.argv, runtime));
}
