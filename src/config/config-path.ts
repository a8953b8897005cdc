/**
 * Whether a config file configures the daemon, and which: decided without
 * loading the file's parser, so a daemon configured by the environment
 * starts without it.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { defaultConfigFile } from '../state-file/paths.js';
import type { RawOptions } from './config.js';

export type FileFlags = RawOptions & { readonly config?: string | undefined };

/**
 * The config file to read: `--config`, else `TOKEND_CONFIG` (either must
 * exist: reading it reports it missing), else the default path when a file
 * is there; null: configure from the environment.
 */
export function configFilePath(flags: FileFlags, env: NodeJS.ProcessEnv): string | null {
  const named = flags.config || env['TOKEND_CONFIG'];
  if (named) return resolve(named);
  const fallback = defaultConfigFile(env);
  return existsSync(fallback) ? fallback : null;
}
