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
import { setFlagsFromString } from 'node:v8';
import { startOwnerThread } from '../daemon/owner-thread.js';

if (serving) {
  // V8's memory reducer collects and shrinks the heap once the process goes
  // idle, so the next burst of requests meets incremental marking and a young
  // generation growing again from its minimum. A daemon idles between bursts:
  // in A/B runs with idle gaps that cost GET /token 1.25-1.37x a bare server's
  // CPU per request, against 1.05-1.15x with the reducer off. What a burst
  // grew is handed back once the daemon has been idle for a while (idle-trim.ts).
  setFlagsFromString('--no-memory-reducer');
}
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
