#!/usr/bin/env node
/**
 * The `tokend` executable, and the only module that exits the process.
 *
 * Most of a daemon's start is its owner thread booting (a V8 isolate and
 * Node's bootstrap of its own): for `tokend serve`, the default command, it
 * starts booting first, on the other core, while the rest loads. Any other
 * command never starts it. `tokend` and `tokend serve` with no flags (the
 * container's command; config from the environment) skip the argument parser.
 */
import { setFlagsFromString } from 'node:v8';
import { startOwnerThread } from './owner-thread.js';

const args = process.argv.slice(2);
const first = args[0];
const plainServe = args.length === 0 || (args.length === 1 && first === 'serve');
const serving = plainServe || first === 'serve' || (first !== undefined && first.startsWith('--') && first !== '--help' && first !== '--version');
if (serving) {
  // V8's memory reducer collects and shrinks the heap once a process goes
  // idle; the next burst of requests then meets incremental marking and a
  // young generation grown again from its minimum. For a daemon that idles
  // between bursts that cost ~25% of GET /token's CPU per request in the
  // first seconds of a burst (npm run bench style A/B with idle gaps: 1.37x
  // a bare server with it, 1.09-1.15x without), for ~4 MB of idle RSS.
  setFlagsFromString('--no-memory-reducer');
}
const runtime = { exit: (code: number): never => process.exit(code), ownerThread: serving ? startOwnerThread() : null };

if (plainServe) {
  const { serveCommand } = await import('./serve.js');
  runtime.exit(await serveCommand({}, runtime));
} else {
  const { run } = await import('./commands.js');
  runtime.exit(await run(process.argv, runtime));
}
