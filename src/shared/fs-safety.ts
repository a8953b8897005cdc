/**
 * Files and directories other users must not be able to touch.
 *
 * Every file tokend writes goes through `writePrivateFile*`: a temp file with
 * a random name beside the target, created with O_EXCL | O_NOFOLLOW (a planted
 * file or symlink makes the write fail instead of redirecting it), mode 0600,
 * fsynced, then renamed over the target (a symlink at the target is replaced,
 * never followed). Every directory tokend keeps secrets in is checked like
 * ssh's StrictModes: owned by this user (or root) and writable by no one else.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsc, fsyncSync, lstatSync, openSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

const myUid = (): number | null => (typeof process.getuid === 'function' ? process.getuid() : null);

function tempBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${randomBytes(8).toString('hex')}`);
}

/** Write `data` to `path` atomically and privately (see the module comment). */
export async function writePrivateFile(path: string, data: string): Promise<void> {
  const temp = tempBeside(path);
  try {
    const handle = await open(temp, CREATE_FLAGS, 0o600);
    try {
      await handle.writeFile(data, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/** The synchronous twin of `writePrivateFile`, for code that runs before an event loop matters. */
export function writePrivateFileSync(path: string, data: string): void {
  const temp = tempBeside(path);
  try {
    const fd = openSync(temp, CREATE_FLAGS, 0o600);
    try {
      const buf = Buffer.from(data, 'utf8');
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (err) {
    try {
      unlinkSync(temp);
    } catch {
      // never created
    }
    throw err;
  }
}

/** Why `st` (of `what`) is unsafe to keep secrets in or trust, or null when it is safe. */
export function ownershipProblem(st: Stats, what: string): string | null {
  const uid = myUid();
  if (uid !== null && st.uid !== uid && st.uid !== 0) return `${what} is owned by uid ${st.uid}, not by this user (uid ${uid}) or root`;
  if ((st.mode & 0o022) !== 0)
    return `${what} is writable by ${(st.mode & 0o002) !== 0 ? 'every user' : 'its group'} (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run: chmod go-w ${what}`;
  return null;
}

/**
 * Why the file `st` (of `what`) is not private enough to hold a secret, or
 * null: ssh's rule for a private key, a regular file owned by this user (or
 * root) that no one else may read or write.
 */
export function secretFileProblem(st: Stats, what: string): string | null {
  if (!st.isFile()) return `${what} is not a regular file`;
  const uid = myUid();
  if (uid !== null && st.uid !== uid && st.uid !== 0) return `${what} is owned by uid ${st.uid}, not by this user (uid ${uid}) or root`;
  if ((st.mode & 0o077) !== 0)
    return `${what} may be read or written by other users (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run: chmod 600 ${what}`;
  return null;
}

export interface DirCheck {
  /** A symlink in place of the directory is refused (a directory in a shared place such as /tmp). */
  readonly refuseSymlink?: boolean;
}

/**
 * Why the directory `path` is unsafe for secrets, or null when it is safe or
 * does not exist (the caller creates it 0700). Follows a symlink unless told
 * not to, and checks what it leads to.
 */
export function privateDirProblem(path: string, opts: DirCheck = {}): string | null {
  let st: Stats;
  try {
    st = opts.refuseSymlink ? lstatSync(path) : statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return `cannot inspect ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  if (st.isSymbolicLink()) return `${path} is a symbolic link; refusing to keep secrets behind it`;
  if (!st.isDirectory()) return `${path} is not a directory`;
  return ownershipProblem(st, path);
}

/** Whether a file (such as an owner record) may be trusted: owned by this user or root, writable by no one else, in a directory that is safe too. */
export function trustedFile(path: string): boolean {
  try {
    const st = lstatSync(path);
    if (!st.isFile() || ownershipProblem(st, path) !== null) return false;
    return privateDirProblem(dirname(path)) === null && ancestorsProblem(dirname(path)) === null;
  } catch {
    return false;
  }
}

/**
 * Why another user could replace an entry of `dir` (a socket, say) with their
 * own, or null: `dir` owned by someone else, writable by others without the
 * sticky bit, or an ancestor that lets them swap `dir` itself. A missing `dir`
 * is no problem here (whoever uses it finds it missing).
 */
export function replaceableProblem(dir: string, owners: ReadonlySet<number> = trustedOwners()): string | null {
  let st: Stats;
  try {
    st = statSync(dir);
  } catch {
    return null;
  }
  if (myUid() !== null && !owners.has(st.uid)) return `${dir} is owned by uid ${st.uid}, who could replace what is in it`;
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) return `${dir} is writable by other users without the sticky bit: they could replace what is in it`;
  return ancestorsProblem(dir, owners);
}

/** This user and root: who may own what tokend trusts. */
function trustedOwners(): ReadonlySet<number> {
  return new Set([myUid() ?? 0, 0]);
}

/**
 * Why a directory's ancestors let another user swap it for their own, or null.
 * Whoever may rename entries in an ancestor (its owner, or anyone when it is
 * writable without the sticky bit, as /tmp has) can replace the whole path.
 */
export function ancestorsProblem(dir: string, owners: ReadonlySet<number> = trustedOwners()): string | null {
  for (let cur = dirname(dir); ; cur = dirname(cur)) {
    let st: Stats;
    try {
      st = statSync(cur);
    } catch (err) {
      return `cannot inspect ${cur} (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    }
    if (myUid() !== null && !owners.has(st.uid)) return `${dir} lies inside ${cur}, which is owned by uid ${st.uid}: that user could replace it`;
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      return `${dir} lies inside ${cur}, which other users may write to without the sticky bit (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}): they could replace it; run: chmod go-w ${cur}`;
    }
    if (cur === dirname(cur)) return null;
  }
}
