#!/usr/bin/env node
/**
 * The `tokend` executable, and the only module that exits the process.
 *
 * Most of a daemon's start is its owner thread booting (a V8 isolate and
 * Node's bootstrap of its own): for `tokend serve`, the default command, it
 * starts booting first, on the other core, while the commands load and the
 * config is parsed. Any other command never starts it.
 */
import { startOwnerThread } from './owner-thread.js';

const first = process.argv[2];
const serving = first === undefined || first === 'serve' || (first.startsWith('--') && first !== '--help' && first !== '--version');
const ownerThread = serving ? startOwnerThread() : null;

const exit = (code: number): never => process.exit(code);
const { run } = await import('./commands.js');
exit(await run(process.argv, { exit, ownerThread }));
