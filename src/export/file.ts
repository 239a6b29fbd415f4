// NDJSON file: one event a line, appended and flushed to disk (fdatasync) before a
// batch counts as delivered. Rotated by size: x.ndjson → x.ndjson.1 → … → x.ndjson.<keep>,
// the oldest deleted. Owner-only permissions: the lines carry user names and addresses.
import { promises as fs, type Stats } from 'node:fs';
import type { FileSinkConfig } from '../config/export-config.js';
import type { SecurityEvent } from '../store/types.js';
import { eventJson } from './format.js';
import { DeliveryError, type Sink } from './sink.js';

export class FileSink implements Sink {
  readonly maxInFlight = 1;
  private handle: fs.FileHandle | undefined;
  private size = 0;
  private closed = false;

  constructor(private readonly cfg: FileSinkConfig) {}

  async deliver(events: readonly SecurityEvent[]): Promise<void> {
    if (this.closed) throw new DeliveryError('closed', 'file sink closed');
    let text = '';
    for (const e of events) text += `${eventJson(e)}\n`;
    const bytes = Buffer.from(text);
    try {
      let fh = await this.open();
      if (this.size > 0 && this.size + bytes.length > this.cfg.maxSize) {
        await this.rotate();
        fh = await this.open();
      }
      await fh.write(bytes);
      this.size += bytes.length;
      await fh.datasync();
    } catch (err) {
      // Reopen next time: the file may have been moved or the disk filled.
      await this.handle?.close().catch(() => undefined);
      this.handle = undefined;
      throw new DeliveryError('io', `writing ${this.cfg.path} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const fh = this.handle;
    this.handle = undefined;
    await fh?.close().catch(() => undefined);
  }

  private async open(): Promise<fs.FileHandle> {
    if (this.handle) return this.handle;
    const fh = await fs.open(this.cfg.path, 'a', 0o600);
    const st: Stats = await fh.stat();
    this.size = st.size;
    this.handle = fh;
    return fh;
  }

  private async rotate(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
    const { path: base, keep } = this.cfg;
    if (keep === 0) {
      await fs.rm(base, { force: true });
      return;
    }
    await fs.rm(`${base}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) await renameIfExists(`${base}.${i}`, `${base}.${i + 1}`);
    await fs.rename(base, `${base}.1`);
  }
}

async function renameIfExists(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
