/**
 * The exclusive lock on the state file, held for the owner's whole life.
 *
 * Two refreshers on one rotating refresh token destroy it, so: a second
 * daemon fails fast naming the owner; a lock found compromised stops
 * refreshing at once. After a crash the lock directory stays behind; it is
 * taken over at once only when the recorded owner's pid is gone on this host
 * (or is this very process, whose previous owner thread died) — never by
 * waiting out proper-lockfile's stale timeout, never from a live owner.
 * The file locked is the state file's real path, so every name of one file
 * leads to one lock.
 */
import { utimes, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import lockfile from 'proper-lockfile';
import type { OwnerRecord } from '../shared/contract.js';
import { TokendError } from '../shared/errors.js';
import { writePrivateFile } from '../shared/fs-safety.js';
import { describeOwner, ownerRecordPath, pidAlive, readOwnerRecord } from '../state-file/owner-record.js';

/** Every party must use the same `stale`, or a quick taker steals a live lock. */
const STALE_MS = 10_000;

export class StateLock {
  readonly #file: string;
  #release: (() => Promise<void>) | null = null;
  #record: OwnerRecord | null = null;
  #compromised = false;

  constructor(file: string) {
    this.#file = file;
  }

  get held(): boolean {
    return this.#release !== null && !this.#compromised;
  }

  async acquire(owner: { pid: number; instance: string; listen: string | null }, onCompromised: (err: Error) => void): Promise<void> {
    const options = {
      stale: STALE_MS,
      realpath: false,
      retries: 0,
      onCompromised: (err: Error) => {
        this.#compromised = true;
        onCompromised(err);
      },
    };
    try {
      this.#release = await lockfile.lock(this.#file, options);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ELOCKED')
        throw new TokendError('persist_failed', `cannot lock state file ${this.#file}: cannot create ${this.#file}.lock (${code ?? (err as Error).message})`, {
          cause: err,
        });
      const record = readOwnerRecord(this.#file);
      if (!this.#mayTakeOver(record, owner)) {
        const who = record ? describeOwner(record) : 'another process (no owner record)';
        throw new TokendError('state_locked', `state file ${this.#file} is owned by ${who}`, record ? { owner: record } : {});
      }
      // Mark the dead owner's lock stale so proper-lockfile itself replaces it:
      // if two restarts race, the loser's updater sees the change and reports compromise.
      await utimes(`${this.#file}.lock`, 0, 0).catch(() => undefined);
      try {
        this.#release = await lockfile.lock(this.#file, options);
      } catch (again) {
        const now = readOwnerRecord(this.#file);
        throw new TokendError('state_locked', `state file ${this.#file} is owned by ${now ? describeOwner(now) : 'another process'}`, {
          cause: again,
          ...(now ? { owner: now } : {}),
        });
      }
    }
    this.#record = { pid: owner.pid, host: hostname(), instance: owner.instance, listen: owner.listen, startedAt: new Date().toISOString() };
    await this.#writeRecord();
  }

  /**
   * A dead owner on this host. A record with our own pid is an earlier owner
   * thread of this daemon, or a previous life of a container's PID 1: either
   * way not a live process other than us.
   */
  #mayTakeOver(record: OwnerRecord | null, me: { pid: number }): boolean {
    if (record === null || record.host !== hostname()) return false;
    return record.pid === me.pid || !pidAlive(record.pid);
  }

  async setListen(listen: string): Promise<void> {
    if (!this.#record) return;
    this.#record = { ...this.#record, listen };
    await this.#writeRecord();
  }

  /** Written like the state file (random temp name, O_EXCL, O_NOFOLLOW, 0600, rename): nothing planted at either name is followed. */
  async #writeRecord(): Promise<void> {
    await writePrivateFile(ownerRecordPath(this.#file), `${JSON.stringify(this.#record)}\n`);
  }

  async release(): Promise<void> {
    const release = this.#release;
    this.#release = null;
    if (!release) return;
    const mine = readOwnerRecord(this.#file);
    if (mine && this.#record && mine.instance === this.#record.instance && mine.pid === this.#record.pid) {
      await unlink(ownerRecordPath(this.#file)).catch(() => undefined);
    }
    if (!this.#compromised) await release().catch(() => undefined);
  }
}
