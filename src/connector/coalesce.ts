// Body bytes leave in big writes. A TLS socket hands out at most one 16 KiB
// record per chunk; the connector writes the user's upload to the backend
// through undici, and forwarding each record as its own write costs a syscall
// per 16 KiB on both sides. Joined, the backend spends ~0.2 s/GB less and the
// relay and connector the same (A/B bench runs, README, Performance).
// Chunks that arrive in the same event-loop turn are joined and written once,
// in the check phase of that turn, so nothing waits for more data: a small
// message still leaves in the turn it arrived. Back-pressure is the stream's
// own (bounded buffers).
import { Transform, type TransformCallback } from 'node:stream';

/** Joined writes are at most this large; a bigger pending batch is written at once. */
export const COALESCE_MAX = 256 * 1024;

export class Coalesce extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private scheduled: NodeJS.Immediate | undefined;

  constructor() {
    super({ readableHighWaterMark: COALESCE_MAX, writableHighWaterMark: COALESCE_MAX });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= COALESCE_MAX) this.flushPending();
    else this.scheduled ??= setImmediate(() => this.flushPending());
    done();
  }

  override _flush(done: TransformCallback): void {
    this.flushPending();
    done();
  }

  override _destroy(err: Error | null, done: (error?: Error | null) => void): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.pending = [];
    this.pendingBytes = 0;
    done(err);
  }

  private flushPending(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const n = this.pending.length;
    if (n === 0) return;
    const out = n === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.push(out);
  }
}
