/**
 * The owner record beside the state file: who holds it (pid, host, listen
 * address). Clients find the daemon through it; a second daemon names the
 * owner from it; a restart after a crash takes the lock over at once when the
 * recorded pid is gone on this host.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { OwnerRecord } from './contract.js';

export const ownerRecordPath = (stateFile: string): string => `${stateFile}.owner.json`;

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
