// Native memory back to the operating system after a connection storm (issue 22).
//
// What bench/storm.mjs measured (relay, cycles of thousands of idle TLS
// connections opened and closed): the live JS heap returns to its size, but the
// RSS climbs each cycle, all of it in glibc's main malloc arena (the brk heap):
// 57 -> 104 -> 147 -> 182 MiB over four cycles of 4,000 connections, even with a
// full GC before each reading. Two things hold it: the native side of a closed
// connection (OpenSSL and TLSWrap state, ~20 KiB, the TLS read buffers most of it)
// is freed only when V8 collects the socket's wrappers, which survive into the old
// generation and wait for a full collection; and glibc's free() gives pages back
// only from the top of the heap, so what is freed below a live allocation stays
// resident, and the next storm grows the heap past it. A full GC then
// malloc_trim(0) (which returns every free page in the arena) after each storm
// holds the brk heap at 17-19 MiB across cycles. MALLOC_ARENA_MAX does not apply
// (one arena: the event loop's thread) and trim thresholds move only the top.
//
// malloc_trim is called through koffi (an optional dependency with prebuilt
// binaries; no native code of ours). Without it, or on a libc other than glibc,
// there is nothing to do: musl and jemalloc return memory on their own.
import { createRequire } from 'node:module';
import v8 from 'node:v8';
import vm from 'node:vm';
import { systemClock, type Clock, type Timer } from './clock.js';
import { ProxyctlError } from './errors.js';

/** What a reclaim does: a full garbage collection, then the allocator's trim (true: memory was released). */
export interface ReclaimHooks {
  gc(): void;
  trim(): boolean;
}

export interface ReclaimTiming {
  /** Connections closed since the last reclaim before one is due. */
  afterCloses: number;
  /** A due reclaim waits for this long without a close (the storm is over)… */
  quietMs: number;
  /** …but no longer than this after it became due (a storm that never stops). */
  maxWaitMs: number;
  /** At least this long between two reclaims: a full GC is a pause. */
  minIntervalMs: number;
}

export const RECLAIM_TIMING: ReclaimTiming = {
  afterCloses: 1000,
  quietMs: 2000,
  maxWaitMs: 20_000,
  minIntervalMs: 30_000,
};

/**
 * PROXYCTL_MEMORY_RECLAIM: unset or `on` (the default timing), `off`, or a whole
 * number of closed connections that makes a storm (in place of 1,000).
 */
export function reclaimSetting(env: NodeJS.ProcessEnv = process.env): Partial<ReclaimTiming> | undefined {
  const v = env['PROXYCTL_MEMORY_RECLAIM']?.trim() ?? '';
  if (v === '' || v === 'on') return {};
  if (v === 'off') return undefined;
  if (/^[1-9]\d{0,8}$/.test(v)) return { afterCloses: Number(v) };
  throw new ProxyctlError(
    'ERR_CONFIG_INVALID',
    `PROXYCTL_MEMORY_RECLAIM: expected on, off or a whole number of closed connections (1 or more), found ${JSON.stringify(v)}`,
  );
}

/** True when this process runs on glibc (malloc_trim exists and is needed). */
export function onGlibc(): boolean {
  if (process.platform !== 'linux') return false;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return typeof report?.header?.glibcVersionRuntime === 'string';
}

interface Koffi {
  load(path: string): { func(signature: string): (...args: unknown[]) => unknown };
}

/** The real hooks: V8's full GC and glibc's malloc_trim(0); undefined when either is not available. */
export function nativeReclaimHooks(): ReclaimHooks | undefined {
  if (!onGlibc()) return undefined;
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch {
    return undefined; // the optional dependency is not installed
  }
  let trim: (pad: number) => unknown;
  try {
    trim = koffi.load('libc.so.6').func('int malloc_trim(size_t)');
  } catch {
    return undefined;
  }
  // A `gc` function without --expose-gc on the command line: the flag applies to contexts made after it.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  return { gc, trim: () => trim(0) === 1 };
}

export interface ReclaimResult {
  closed: number;
  released: boolean;
  ms: number;
  /** The process's resident set before and after, in bytes. */
  rssBefore: number;
  rssAfter: number;
}

/** Counts closed connections and runs the hooks once a storm of them is over. */
export class StormReclaimer {
  private closed = 0;
  private timer: Timer | undefined;
  private dueSince = 0;
  private lastRun = -Infinity;
  private stopped = false;
  readonly timing: ReclaimTiming;

  constructor(
    private readonly hooks: ReclaimHooks,
    private readonly onReclaim: (r: ReclaimResult) => void = () => {},
    private readonly clock: Clock = systemClock,
    timing: Partial<ReclaimTiming> = {},
  ) {
    this.timing = { ...RECLAIM_TIMING, ...timing };
  }

  /** Every connection the server accepts is counted when it closes. */
  attach(server: {
    on(event: 'connection', fn: (socket: { once(e: 'close', fn: () => void): unknown }) => void): unknown;
  }) {
    server.on('connection', (socket) => socket.once('close', () => this.noteClose()));
  }

  noteClose(): void {
    if (this.stopped) return;
    this.closed++;
    if (this.closed < this.timing.afterCloses) return;
    const now = this.clock.now();
    if (!this.timer) {
      this.dueSince = now;
      this.schedule(this.timing.quietMs);
    } else if (now - this.dueSince + this.timing.quietMs <= this.timing.maxWaitMs) {
      this.timer.refresh(); // still closing: wait for quiet
    }
  }

  private schedule(ms: number): void {
    this.timer = this.clock.setTimeout(() => this.run(), ms);
    this.timer.unref();
  }

  private run(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const wait = this.lastRun + this.timing.minIntervalMs - this.clock.now();
    if (wait > 0) return this.schedule(wait);
    const closed = this.closed;
    this.closed = 0;
    const rssBefore = process.memoryUsage.rss();
    const t0 = performance.now();
    this.hooks.gc();
    const released = this.hooks.trim();
    const ms = +(performance.now() - t0).toFixed(1);
    this.lastRun = this.clock.now();
    this.onReclaim({ closed, released, ms, rssBefore, rssAfter: process.memoryUsage.rss() });
  }

  close(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
