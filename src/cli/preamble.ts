/**
 * The first module the executable loads: which command this is, and the
 * signal table installed before any other module has loaded (see
 * signals.ts). A daemon command (`serve`, `dev`) holds stop signals from
 * here on until it can act on them; every command ignores the rest.
 */
import { installSignalTable } from '../daemon/signals.js';

const args = process.argv.slice(2);
const first = args[0];

/** `tokend` or `tokend serve` with no flags: started without the argument parser. */
export const plainServe = args.length === 0 || (args.length === 1 && first === 'serve');
/** `tokend serve` in any form: its owner thread starts booting at once. */
export const serving = plainServe || first === 'serve' || (first !== undefined && first.startsWith('--') && first !== '--help' && first !== '--version');

/** A daemon command: `serve` or `dev`. */
export const daemon = serving || first === 'dev';

installSignalTable(daemon);
