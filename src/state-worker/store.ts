/**
 * The state file on disk: `load()` and `save(state)`, nothing else.
 *
 * Every save writes a temp file in the same directory (0600), fsyncs it,
 * renames it over the file and fsyncs the directory, so a reader sees the old
 * file or the new one, never half of either, and a crash at any point leaves
 * one of them whole. A corrupt file is never overwritten: `load()` refuses it
 * (or moves it aside when asked), because it may hold the only copy of a
 * refresh token.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TokendError } from '../errors.js';
import { decodeState, emptyState, encodeState, foreignKeys, type RawFile, type StoredState } from './codec.js';

export interface LoadResult {
  readonly state: StoredState;
  /** Set when a corrupt file was moved aside to this path. */
  readonly movedAsideTo: string | null;
}

export class StateStore {
  readonly path: string;
  readonly #dir: string;
  readonly #tempPrefix: string;
  #foreign: RawFile = {};
  #savedVersion = -1;

  constructor(path: string) {
    this.path = path;
    this.#dir = dirname(path);
    this.#tempPrefix = `.${basename(path)}.tmp-`;
  }

  /** Create the directory (0700) if missing. */
  async prepare(): Promise<void> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Remove temp files a crash left behind. Only with the lock held: before
   * it, the temp file could be a live owner's write in progress.
   */
  async removeStrayTemps(): Promise<void> {
    for (const name of await readdir(this.#dir)) {
      if (name.startsWith(this.#tempPrefix)) await unlink(join(this.#dir, name)).catch(() => undefined);
    }
  }

  async load(moveCorruptAside = false): Promise<LoadResult> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.#foreign = {};
        return { state: emptyState, movedAsideTo: null };
      }
      throw new TokendError('state_corrupt', `cannot read state file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const { state, raw } = decodeState(text, this.path);
      this.#foreign = foreignKeys(raw);
      this.#savedVersion = state.version;
      return { state, movedAsideTo: null };
    } catch (err) {
      if (!moveCorruptAside) throw err;
      const aside = `${this.path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(this.path, aside);
      await this.#syncDir();
      this.#foreign = {};
      return { state: emptyState, movedAsideTo: aside };
    }
  }

  /** Read the file again without adopting it: for a second look before giving up a token. */
  async peek(): Promise<StoredState | null> {
    try {
      return decodeState(await readFile(this.path, 'utf8'), this.path).state;
    } catch {
      return null;
    }
  }

  /**
   * Persist `state` durably. A state no newer than the last one saved is
   * refused: a write can only make the file newer.
   */
  async save(state: StoredState): Promise<void> {
    if (state.version <= this.#savedVersion) {
      throw new TokendError('internal_error', `refusing to write state version ${state.version} over version ${this.#savedVersion}`);
    }
    await this.#refreshForeignKeys();
    const body = encodeState(state, this.#foreign);
    const temp = join(this.#dir, `${this.#tempPrefix}${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      const handle = await open(temp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
      try {
        await handle.writeFile(body, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.path);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      throw new TokendError('persist_failed', `cannot write state file ${this.path} (${code})`, { cause: err });
    }
    this.#savedVersion = state.version;
    await this.#syncDir().catch(() => undefined);
  }

  /** Other tools may add keys while we run: carry their latest values through. */
  async #refreshForeignKeys(): Promise<void> {
    try {
      const raw: unknown = JSON.parse(await readFile(this.path, 'utf8'));
      if (raw && typeof raw === 'object' && !Array.isArray(raw)) this.#foreign = foreignKeys(raw as RawFile);
    } catch {
      // Missing or unreadable now: keep the foreign keys read last time.
    }
  }

  async #syncDir(): Promise<void> {
    const dir = await open(this.#dir, fsc.O_RDONLY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
