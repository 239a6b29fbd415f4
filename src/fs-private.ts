// Owner-only directories and files for secrets (the relay's data directory, the
// connector's state directory). Modes are set with chmod, never left to the umask,
// and a directory or file that already exists with looser modes is tightened.
import { chmodSync, closeSync, fchmodSync, fstatSync, mkdirSync, openSync, statSync } from 'node:fs';
import { ProxyctlError } from './errors.js';

const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;

/** POSIX only: elsewhere there are no mode bits to tighten (and no uid to compare). */
const euid = (): number | undefined => (typeof process.geteuid === 'function' ? process.geteuid() : undefined);

function refuse(message: string, cause?: unknown): ProxyctlError {
  return new ProxyctlError('ERR_STATE_INVALID', message, { cause });
}

/**
 * Creates `dir` (and parents) or takes an existing one, and leaves it 0700 and owned
 * by this process. A directory someone else owns is refused rather than trusted:
 * its owner could read or replace what we keep there.
 */
export function ensurePrivateDir(dir: string, what: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR });
  } catch (err) {
    throw refuse(`cannot create ${what} ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
  const uid = euid();
  if (uid === undefined) return;
  const st = statSync(dir);
  if (!st.isDirectory()) throw refuse(`${what} ${dir} is not a directory`);
  if (st.uid !== uid) {
    throw refuse(
      `${what} ${dir} belongs to uid ${st.uid}, not to the user proxyctl runs as (uid ${uid}); chown it or run proxyctl as its owner`,
    );
  }
  if ((st.mode & 0o777) === PRIVATE_DIR) return;
  try {
    chmodSync(dir, PRIVATE_DIR);
  } catch (err) {
    throw refuse(
      `cannot make ${what} ${dir} private (chmod 700: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      err,
    );
  }
}

/** Tightens an existing file to 0600 (group and others lose every bit); a missing file is fine. */
export function tightenPrivateFile(file: string): void {
  if (euid() === undefined) return;
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw refuse(
      `cannot read the mode of ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      err,
    );
  }
  if ((mode & 0o077) === 0) return;
  try {
    chmodSync(file, mode & PRIVATE_FILE);
  } catch (err) {
    throw refuse(
      `cannot make ${file} private (chmod 600: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      err,
    );
  }
}

/**
 * Creates `file` empty with mode 0600 if it is missing, or tightens it if it exists:
 * for files another library creates with the umask (SQLite opens its database 0644,
 * and its -wal and -shm files copy the database file's mode).
 */
export function createPrivateFile(file: string): void {
  let fd: number;
  try {
    fd = openSync(file, 'a', PRIVATE_FILE);
  } catch (err) {
    throw refuse(`cannot create ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
  try {
    const mode = fstatSync(fd).mode & 0o777;
    if (euid() !== undefined && (mode & 0o077) !== 0) fchmodSync(fd, mode & PRIVATE_FILE);
  } catch (err) {
    throw refuse(
      `cannot make ${file} private (chmod 600: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      err,
    );
  } finally {
    closeSync(fd);
  }
}
