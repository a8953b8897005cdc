/**
 * The state file on disk: `load()` and `save(state)`, nothing else.
 *
 * Every save writes a private temp file in the same directory (random name,
 * O_EXCL, O_NOFOLLOW, 0600), fsyncs it, renames it over the file and fsyncs
 * the directory, so a reader sees the old file or the new one, never half of
 * either, and a crash at any point leaves one of them whole. A corrupt file is
 * never overwritten: `load()` refuses it (or moves it aside when asked), and a
 * corrupt hand-edit found at write time is moved aside with a warning, because
 * it may hold the only copy of a refresh token.
 *
 * The file's real path is resolved once, before the lock is taken: a symlink
 * stays a symlink and its target gets the tokens, and two daemons naming one
 * file by two paths lock the same thing. Its directory must be private (like
 * ssh's StrictModes): whoever can write there can replace the file, forge the
 * owner record or plant the lock. Every read is bounded in size and nesting,
 * so no file can exhaust the heap or the stack of the owner thread.
 */
import { constants as fsc, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, realpath, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { TokendError } from '../shared/errors.js';
import { ancestorsProblem, ownershipProblem, privateDirProblem, writePrivateFile } from '../shared/fs-safety.js';
import type { Log } from '../shared/log.js';
import { decodeState, emptyState, encodeState, foreignKeys, parseStateObject, type RawFile, type StoredState } from '../state-file/codec.js';

/** A state file holds a few tokens; anything this large is not one. */
export const MAX_STATE_BYTES = 1024 * 1024;

export interface LoadResult {
  readonly state: StoredState;
  /** Set when a corrupt file was moved aside to this path. */
  readonly movedAsideTo: string | null;
}

export class StateStore {
  /** The configured path; the file itself is `path` once `prepare()` has run. */
  readonly configured: string;
  #path: string;
  #dir: string;
  readonly #log: Log;
  #foreign: RawFile = {};
  #savedVersion = -1;

  constructor(path: string, log: Log) {
    this.configured = path;
    this.#path = resolve(path);
    this.#dir = dirname(this.#path);
    this.#log = log;
  }

  /** The real path of the state file (after `prepare()`). */
  get path(): string {
    return this.#path;
  }

  /**
   * Create the directory (0700) if missing, resolve the file's real path and
   * refuse what is unsafe or not a state file, before anything is written.
   */
  async prepare(): Promise<void> {
    await mkdir(dirname(this.#path), { recursive: true, mode: 0o700 });
    this.#path = await realFile(this.#path);
    this.#dir = dirname(this.#path);
    const dirProblem = privateDirProblem(this.#dir) ?? ancestorsProblem(this.#dir);
    if (dirProblem) throw unsafe(`state directory ${this.#dir} is unsafe: ${dirProblem}`);
    const st = await lstat(this.#path).catch(() => null);
    if (st === null) return;
    const kind = notRegular(st);
    if (kind) throw unsafe(`state file ${this.#path} is ${kind}, not a regular file`);
    const fileProblem = ownershipProblem(st, this.#path);
    if (fileProblem) throw unsafe(`state file ${this.#path} is unsafe: ${fileProblem}`);
    if (st.nlink > 1) {
      throw unsafe(
        `state file ${this.#path} has ${st.nlink} hard links: every write replaces the file, so the other names would keep a spent refresh token and a daemon started on one of them would not see this lock; remove the other links`,
      );
    }
  }

  /**
   * Remove temp files a crash left behind. Only with the lock held: before
   * it, the temp file could be a live owner's write in progress.
   */
  async removeStrayTemps(): Promise<void> {
    // The state file's temp files, and the owner record's.
    const prefixes = [`.${basename(this.#path)}.tmp-`, `.${basename(this.#path)}.owner.json.tmp-`];
    for (const name of await readdir(this.#dir)) {
      if (prefixes.some((p) => name.startsWith(p))) await unlink(join(this.#dir, name)).catch(() => undefined);
    }
  }

  async load(moveCorruptAside = false): Promise<LoadResult> {
    const text = await this.#read();
    if (text === null) {
      this.#foreign = {};
      return { state: emptyState, movedAsideTo: null };
    }
    try {
      const { state, raw } = decodeState(text.within(this.#path), this.#path);
      this.#foreign = foreignKeys(raw);
      this.#savedVersion = state.version;
      return { state, movedAsideTo: null };
    } catch (err) {
      if (!moveCorruptAside) throw err;
      const aside = await this.#moveAside();
      this.#foreign = {};
      return { state: emptyState, movedAsideTo: aside };
    }
  }

  /** Read the file again without adopting it: for a second look before giving up a token. */
  async peek(): Promise<StoredState | null> {
    try {
      const text = await this.#read();
      return text === null ? null : decodeState(text.within(this.#path), this.#path).state;
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
    try {
      await writePrivateFile(this.#path, body);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      throw new TokendError('persist_failed', `cannot write state file ${this.#path} (${code})`, { cause: err });
    }
    this.#savedVersion = state.version;
    await this.#syncDir().catch(() => undefined);
  }

  /**
   * Other tools may add keys while we run: carry their latest values through.
   * A hand-edit that left no JSON object is moved aside (never overwritten
   * unseen); a file missing or unreadable now keeps the keys read last time.
   */
  async #refreshForeignKeys(): Promise<void> {
    let text: FileText | null;
    try {
      text = await this.#read();
    } catch {
      return;
    }
    if (text === null) return;
    try {
      this.#foreign = foreignKeys(parseStateObject(text.within(this.#path), this.#path));
    } catch (err) {
      const aside = await this.#moveAside();
      this.#log.warn(
        { movedAsideTo: aside, reason: (err as Error).message },
        'state file was changed into something that is not a state file: moved aside, writing the current state',
      );
    }
  }

  /**
   * The file's text, or null when it does not exist. Never follows a link
   * (the real path was resolved at start), never blocks on a FIFO, and reads
   * no more than the cap. A file it cannot read throws; a file too large is
   * content, refused (or moved aside) like any other corrupt content.
   */
  async #read(): Promise<FileText | null> {
    let handle;
    try {
      handle = await open(this.#path, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      if (code === 'ELOOP') throw unsafe(`state file ${this.#path} was replaced by a symbolic link`);
      throw new TokendError('state_corrupt', `cannot read state file ${this.#path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const st = await handle.stat();
      const kind = notRegular(st);
      if (kind) throw unsafe(`state file ${this.#path} is ${kind}, not a regular file`);
      if (st.size > MAX_STATE_BYTES) return new FileText(null);
      // Sized by the file (read at every save), grown once if the file grew since the stat.
      let buf = Buffer.allocUnsafe(st.size + 1);
      let length = 0;
      for (;;) {
        if (length === buf.length) {
          const bigger = Buffer.allocUnsafe(MAX_STATE_BYTES + 1);
          buf.copy(bigger, 0, 0, length);
          buf = bigger;
        }
        const { bytesRead } = await handle.read(buf, length, buf.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
        if (length > MAX_STATE_BYTES) return new FileText(null);
      }
      return new FileText(buf.toString('utf8', 0, length));
    } finally {
      await handle.close();
    }
  }

  async #moveAside(): Promise<string> {
    const aside = `${this.#path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.#path, aside);
    await this.#syncDir();
    return aside;
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

/**
 * The real path of a state file: through every symlink; for a file that does
 * not exist yet, its real directory and its name. A link to nothing is refused:
 * following it would create a file wherever it points.
 */
async function realFile(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw unsafe(`cannot resolve state file ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  const link = await lstat(path).catch(() => null);
  if (link?.isSymbolicLink())
    throw unsafe(`state file ${path} is a symbolic link to a file that does not exist; create the target or point TOKEND_STATE_FILE at it`);
  return join(await realpath(dirname(path)), basename(path));
}

function notRegular(st: Stats): string | null {
  if (st.isFile()) return null;
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'an unknown kind of file';
}

const unsafe = (message: string): TokendError => new TokendError('config_invalid', message);

/** What a read found: the text, or (null) more bytes than the cap. */
class FileText {
  constructor(readonly text: string | null) {}

  /** The text, or `state_corrupt` for a file over the cap. */
  within(path: string): string {
    if (this.text === null)
      throw new TokendError(
        'state_corrupt',
        `state file ${path} is larger than ${MAX_STATE_BYTES / 1024 / 1024} MiB: not a state file (or another tool stored too much in it)`,
      );
    return this.text;
  }
}
