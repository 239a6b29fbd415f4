// Crash-safe file replacement: write a temp file beside the target, fsync, rename.
// A reader sees the old file or the new one, never half of either.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, file);
  try {
    const dfd = openSync(path.dirname(file), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    // directory fsync is best effort (not supported everywhere)
  }
}
