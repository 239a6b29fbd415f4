// A clock the test moves by hand: timers fire in due order while advance() runs,
// and each timer is followed by a turn of the event loop so the promise
// chains and I/O callbacks it starts get to run before the next one fires.
import type { Clock, Timer } from '../../src/clock.js';

interface Pending {
  due: number;
  seq: number;
  fn: () => void;
  every: number | undefined;
  handle: ManualTimer;
}

class ManualTimer implements Timer {
  constructor(
    private readonly clock: ManualClock,
    readonly ms: number,
  ) {}
  refresh(): Timer {
    this.clock.reschedule(this);
    return this;
  }
  unref(): Timer {
    return this;
  }
}

/** A turn of the event loop: pending promise callbacks, then I/O and immediates. */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class ManualClock implements Clock {
  private time: number;
  private seq = 0;
  private readonly pending = new Map<ManualTimer, Pending>();

  constructor(start = Date.now()) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    return this.add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): Timer {
    return this.add(fn, ms, Math.max(1, ms));
  }

  clearTimeout(timer: Timer | undefined): void {
    if (timer) this.pending.delete(timer as ManualTimer);
  }

  clearInterval(timer: Timer | undefined): void {
    this.clearTimeout(timer);
  }

  /** Timers waiting to fire. */
  get timers(): number {
    return this.pending.size;
  }

  /** Moves time forward by ms, firing every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    await turn();
    for (;;) {
      const next = this.nextDue();
      if (!next || next.due > end) break;
      this.time = Math.max(this.time, next.due);
      if (next.every === undefined) this.pending.delete(next.handle);
      else Object.assign(next, { due: this.time + next.every, seq: this.seq++ });
      next.fn();
      await turn();
    }
    this.time = end;
  }

  /** @internal ManualTimer.refresh */
  reschedule(handle: ManualTimer): void {
    const p = this.pending.get(handle);
    if (p) Object.assign(p, { due: this.time + handle.ms, seq: this.seq++ });
  }

  private add(fn: () => void, ms: number, every: number | undefined): Timer {
    const handle = new ManualTimer(this, Math.max(0, ms));
    this.pending.set(handle, { due: this.time + handle.ms, seq: this.seq++, fn, every, handle });
    return handle;
  }

  private nextDue(): Pending | undefined {
    let best: Pending | undefined;
    for (const p of this.pending.values())
      if (!best || p.due < best.due || (p.due === best.due && p.seq < best.seq)) best = p;
    return best;
  }
}
