/**
 * The owner record beside the state file: who holds it (pid, host, listen
 * address). Clients find the daemon through it; a second daemon names the
 * owner from it; a restart after a crash takes the lock over at once when the
 * recorded pid is gone on this host.
 */
import { lstatSync, readFileSync, realpathSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { OwnerRecord } from '../shared/contract.js';
import { ownershipProblem, privateDirProblem, trustedFile } from '../shared/fs-safety.js';

export const ownerRecordPath = (stateFile: string): string => `${stateFile}.owner.json`;

/**
 * The daemon locks and writes the state file's real path, and keeps its
 * owner record beside that: a client naming the file through a symlink must
 * look there too. The path as given when nothing can be resolved.
 */
export function realStateFile(stateFile: string): string {
  try {
    return realpathSync(stateFile);
  } catch {
    try {
      return join(realpathSync(dirname(stateFile)), basename(stateFile));
    } catch {
      return stateFile;
    }
  }
}

export function readOwnerRecord(stateFile: string): OwnerRecord | null {
  try {
    const raw = JSON.parse(readFileSync(ownerRecordPath(stateFile), 'utf8')) as Partial<OwnerRecord>;
    if (typeof raw.pid !== 'number' || typeof raw.host !== 'string') return null;
    return {
      pid: raw.pid,
      host: raw.host,
      instance: typeof raw.instance === 'string' ? raw.instance : '',
      listen: typeof raw.listen === 'string' ? raw.listen : null,
      startedAt: typeof raw.startedAt === 'string' ? raw.startedAt : '',
    };
  } catch {
    return null;
  }
}

/**
 * Why the owner record of `stateFile` must not be trusted, or null when it
 * may be (or there is none). A client trusts it only as a file another user
 * could not have written: otherwise that user could point `tokend token` at
 * their own listener, which would receive the API key and answer a token.
 */
export function ownerRecordProblem(stateFile: string): string | null {
  const path = ownerRecordPath(stateFile);
  if (trustedFile(path)) return null;
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch {
    return null;
  }
  if (!st.isFile()) return `${path} is not a regular file`;
  return ownershipProblem(st, path) ?? privateDirProblem(dirname(path)) ?? `${path} cannot be checked`;
}

/** The owner record of `stateFile` when it may be trusted (see ownerRecordProblem); `warn` hears why one is ignored. */
export function trustedOwnerRecord(stateFile: string, warn: (line: string) => void = () => undefined): OwnerRecord | null {
  const real = realStateFile(stateFile);
  const problem = ownerRecordProblem(real);
  if (problem === null) return readOwnerRecord(real);
  warn(`ignoring the owner record: ${problem}`);
  return null;
}

/** Whether a process with this pid exists on this host. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the record names a live daemon on this host (or one we cannot check). */
export function ownerIsLive(record: OwnerRecord): boolean {
  return record.host !== hostname() || pidAlive(record.pid);
}

export function describeOwner(record: OwnerRecord): string {
  const where = record.listen ? ` listening on ${record.listen}` : '';
  return `pid ${record.pid} on ${record.host}${where}`;
}
