// The SIEM export: one worker per sink moves security events from the store to the
// sink, at least once. The store is the source of truth: each sink's cursor is saved
// only after a batch was delivered, and a worker that failed (or a relay that died)
// resumes from the saved cursor, so events may arrive twice (receivers drop them by
// their stable id) but never go missing. A lease in the store lets one replica at a
// time export a sink; another takes over when it expires.
//
// The request path only calls publish()/notify(): a push onto a bounded in-memory
// queue and a wake-up, never a wait. Events that do not fit are counted as dropped and
// read back from the store by cursor later.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock, type Timer } from '../clock.js';
import type { ExportSinkConfig } from '../config/export-config.js';
import type { Logger } from '../log.js';
import type { EventCursor, EventFeed, ExportCursorRepo, SecurityEvent } from '../store/types.js';
import { DeliveryError, createSink, type Sink } from './sink.js';

/** What the metrics report for each sink. */
export interface ExportSinkStats {
  sink: string;
  queueDepth: number;
  dropped: number;
  delivered: number;
  failures: number;
  lagSeconds: number;
}

export interface ExporterOptions {
  store: { readonly events: EventFeed; readonly exportCursors: ExportCursorRepo };
  sinks: readonly ExportSinkConfig[];
  log: Logger;
  clock?: Clock;
  /** Lease owner: the replica id; default host:pid:random. */
  owner?: string;
  /** How long a claimed lease lasts; renewed every third of it. Default 30 s. */
  leaseMs?: number;
  /** How often a worker looks at the store without being notified (other replicas' events). Default 1 s. */
  pollMs?: number;
  /** Retry delays: exponential from base to max, with jitter. Defaults 500 ms and 60 s. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** How long close() keeps delivering what is in hand. Default 5 s. */
  closeTimeoutMs?: number;
  random?: () => number;
  /** Tests inject failing transports here. */
  createSink?: (cfg: ExportSinkConfig, clock: Clock) => Sink;
}

export class Exporter {
  private readonly workers: Worker[];
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(options: ExporterOptions) {
    const clock = options.clock ?? systemClock;
    const settings: Settings = {
      store: options.store,
      log: options.log,
      clock,
      owner: options.owner ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      leaseMs: options.leaseMs ?? 30_000,
      pollMs: options.pollMs ?? 1000,
      retryBaseMs: options.retryBaseMs ?? 500,
      retryMaxMs: options.retryMaxMs ?? 60_000,
      closeTimeoutMs: options.closeTimeoutMs ?? 5000,
      random: options.random ?? Math.random,
    };
    const make = options.createSink ?? createSink;
    this.workers = options.sinks.map((cfg) => new Worker(cfg, make(cfg, clock), settings));
  }

  /**
   * Starts every sink's worker; idempotent. Resolves once each sink holds its lease and
   * cursor (or another replica holds them, or the store failed and the worker retries):
   * a relay awaits it before taking requests, so a new sink's starting head comes before
   * the first event it must export.
   */
  async start(): Promise<void> {
    if (this.started || this.closing) return;
    this.started = true;
    await Promise.all(this.workers.map((w) => w.start()));
  }

  /** A new event was committed to the store (request path: no wait, no I/O). */
  publish(event: SecurityEvent): void {
    for (let i = 0; i < this.workers.length; i++) this.workers[i]!.publish(event);
  }

  /** Something was committed to the store without the event in hand: workers look. */
  notify(): void {
    for (let i = 0; i < this.workers.length; i++) this.workers[i]!.notify();
  }

  stats(): ExportSinkStats[] {
    return this.workers.map((w) => w.stats());
  }

  /** Delivers what is in hand (up to closeTimeoutMs), releases the leases, closes the sinks. Idempotent. */
  close(): Promise<void> {
    this.closing ??= Promise.all(this.workers.map((w) => w.close())).then(() => undefined);
    return this.closing;
  }
}

interface Settings {
  store: ExporterOptions['store'];
  log: Logger;
  clock: Clock;
  owner: string;
  leaseMs: number;
  pollMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  closeTimeoutMs: number;
  random: () => number;
}

type Outcome = { ok: true } | { ok: false; error: unknown };

interface Flight {
  cursor: EventCursor;
  count: number;
  firstAt: number;
  done: Promise<Outcome>;
}

const ZERO: EventCursor = Object.freeze({ signIn: 0, audit: 0, riskDetection: 0 });

/** The record id behind a feed event (the cursor counts these per log). */
const seqOf = (e: SecurityEvent): number => e.data.id;

class Worker {
  private readonly name: string;
  private readonly log: Logger;
  private queue: SecurityEvent[] = [];
  private qHead = 0;
  private dropped = 0;
  private delivered = 0;
  private failures = 0;
  /** The store may hold events the queue does not (a notify, a drop, the poll, a full read). */
  private dirty = true;
  /** The store was asked about a gap at the queue's head and had nothing yet: wait for the poll. */
  private quietGap = false;
  /** When events went missing from the queue (drops) and are not yet read back. */
  private backlogAt: number | undefined;
  private leased = false;
  private saved: EventCursor = ZERO;
  private inFlight: Flight[] = [];
  private attempt = 0;
  private renewTimer: Timer | undefined;
  private loop: Promise<void> | undefined;
  private wakeFn: (() => void) | undefined;
  private stopFn: (() => void) | undefined;
  private stopping = false;
  private aborted = false;
  /** Settles at close's deadline: a delivery that never ends (a hung sink) stops being awaited. */
  private abort: (outcome: Outcome) => void = () => undefined;
  private readonly abortion = new Promise<Outcome>((resolve) => (this.abort = resolve));
  private closing: Promise<void> | undefined;

  constructor(
    private readonly cfg: ExportSinkConfig,
    private readonly sink: Sink,
    private readonly s: Settings,
  ) {
    this.name = cfg.name;
    this.log = s.log.child({ sink: cfg.name });
  }

  async start(): Promise<void> {
    try {
      await this.acquire();
    } catch (err) {
      this.log.warn({ err: errorText(err) }, 'export sink not ready yet (retrying)');
    }
    this.loop ??= this.run();
  }

  publish(e: SecurityEvent): void {
    // A replica without the lease leaves export to the one that has it (which reads the store).
    if (!this.leased || this.stopping) return;
    if (this.queue.length - this.qHead >= this.cfg.queueSize) {
      this.dropped++;
      this.dirty = true;
      this.backlogAt ??= e.at;
    } else {
      this.queue.push(e);
    }
    this.wakeFn?.();
  }

  notify(): void {
    this.dirty = true;
    this.wakeFn?.();
  }

  stats(): ExportSinkStats {
    const oldest = Math.min(
      this.inFlight[0]?.firstAt ?? Infinity,
      this.queue[this.qHead]?.at ?? Infinity,
      this.backlogAt ?? Infinity,
    );
    return {
      sink: this.name,
      queueDepth: this.queue.length - this.qHead,
      dropped: this.dropped,
      delivered: this.delivered,
      failures: this.failures,
      lagSeconds: oldest === Infinity ? 0 : Math.max(0, (this.s.clock.now() - oldest) / 1000),
    };
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.stopping = true;
    this.wakeFn?.();
    this.stopFn?.();
    const deadline = this.s.clock.setTimeout(() => {
      this.aborted = true;
      this.abort({ ok: false, error: new DeliveryError('closed', 'export stopped at the close deadline') });
      void this.sink.close();
    }, this.s.closeTimeoutMs);
    await this.loop;
    this.s.clock.clearTimeout(deadline);
    this.s.clock.clearInterval(this.renewTimer);
    await this.sink.close();
    if (this.leased) {
      this.leased = false;
      await this.s.store.exportCursors.release(this.name, this.s.owner).catch((err: unknown) => {
        this.log.warn({ err: errorText(err) }, 'export lease not released (it expires by itself)');
      });
    }
  }

  private finished(): boolean {
    if (!this.stopping) return false;
    return this.aborted || !this.leased || (this.inFlight.length === 0 && !this.contiguousHead(this.readCursor()));
  }

  private async run(): Promise<void> {
    while (!this.finished()) {
      try {
        if (!this.leased) {
          if (this.stopping) break;
          if (!(await this.acquire())) await this.sleep(this.s.leaseMs / 3);
          continue;
        }
        await this.pump();
      } catch (err) {
        await this.failed(err);
      }
    }
  }

  /** Takes the sink's lease and loads (or creates) its cursor. */
  private async acquire(): Promise<boolean> {
    const { clock, leaseMs, owner, store } = this.s;
    const now = clock.now();
    if (!(await store.exportCursors.claim(this.name, owner, now + leaseMs, now))) return false;
    let cursor = await store.exportCursors.load(this.name);
    if (!cursor) {
      cursor = this.cfg.from === 'start' ? { ...ZERO } : await store.events.head();
      // Saved at once: a restart before the first delivery must not start at a later head.
      await store.exportCursors.save(this.name, cursor, owner);
      this.log.info({ cursor, from: this.cfg.from }, 'export sink starts');
    }
    this.saved = cursor;
    this.inFlight = [];
    this.dirty = true;
    this.leased = true;
    this.renewTimer ??= clock.setInterval(() => this.renew(), Math.max(1, Math.floor(leaseMs / 3)));
    this.renewTimer.unref();
    return true;
  }

  private renew(): void {
    if (!this.leased) return;
    const now = this.s.clock.now();
    this.s.store.exportCursors.claim(this.name, this.s.owner, now + this.s.leaseMs, now).then(
      (ok) => {
        if (!ok && this.leased) this.lostLease();
      },
      (err: unknown) => this.log.warn({ err: errorText(err) }, 'export lease renewal failed'),
    );
  }

  private lostLease(): void {
    this.log.warn('export lease taken over by another replica');
    this.leased = false;
    this.inFlight = [];
    this.queue = [];
    this.qHead = 0;
    this.wakeFn?.();
  }

  private readCursor(): EventCursor {
    return this.inFlight[this.inFlight.length - 1]?.cursor ?? this.saved;
  }

  /** Starts batches until the pipeline is full or nothing is left, then settles the oldest. */
  private async pump(): Promise<void> {
    let cursor = this.readCursor();
    while (this.inFlight.length < this.sink.maxInFlight && this.leased && !this.aborted) {
      const batch = await this.next(cursor);
      if (!batch) break;
      cursor = batch.cursor;
      this.inFlight.push({
        cursor: batch.cursor,
        count: batch.events.length,
        firstAt: batch.events[0]!.at,
        done: this.sink.deliver(batch.events).then(
          (): Outcome => ({ ok: true }),
          (error: unknown): Outcome => ({ ok: false, error }),
        ),
      });
    }
    const head = this.inFlight[0];
    if (!head) {
      // Events published or a notify while the store was read: look again before sleeping.
      if (!this.stopping && !this.dirty && !this.contiguousHead(cursor)) await this.idle(this.s.pollMs);
      return;
    }
    const outcome = await Promise.race([head.done, this.abortion]);
    if (this.inFlight[0] !== head) return; // the lease was lost meanwhile
    if (!outcome.ok) throw outcome.error;
    this.inFlight.shift();
    if (!(await this.s.store.exportCursors.save(this.name, head.cursor, this.s.owner))) {
      if (this.leased) this.lostLease();
      return;
    }
    this.saved = head.cursor;
    this.delivered += head.count;
    if (this.attempt > 0) this.log.info({ after_failures: this.attempt }, 'export sink delivering again');
    this.attempt = 0;
  }

  /** The next batch after `after`: from the queue when it continues the cursor, else from the store. */
  private async next(after: EventCursor): Promise<{ events: SecurityEvent[]; cursor: EventCursor } | undefined> {
    const cursor = { ...after };
    const events: SecurityEvent[] = [];
    while (this.qHead < this.queue.length && events.length < this.cfg.batchSize) {
      const e = this.queue[this.qHead]!;
      const n = seqOf(e);
      if (n > cursor[e.kind] + 1) break; // a gap: the store has what is missing
      this.qHead++;
      if (n <= cursor[e.kind]) continue; // already read from the store
      cursor[e.kind] = n;
      events.push(e);
    }
    this.compact();
    if (events.length > 0) return { events, cursor };
    const gap = this.qHead < this.queue.length;
    if (this.stopping || !(this.dirty || (gap && !this.quietGap))) return undefined;
    this.dirty = false;
    const r = await this.s.store.events.read(after, this.cfg.batchSize, this.s.clock.now());
    const full = r.events.length >= this.cfg.batchSize;
    this.dirty = this.dirty || full;
    if (!full) this.backlogAt = undefined;
    this.quietGap = r.events.length === 0 && gap;
    return r.events.length > 0 ? { events: r.events, cursor: r.cursor } : undefined;
  }

  private contiguousHead(after: EventCursor): boolean {
    const e = this.queue[this.qHead];
    return e !== undefined && seqOf(e) <= after[e.kind] + 1;
  }

  private compact(): void {
    if (this.qHead === this.queue.length) {
      this.queue = [];
      this.qHead = 0;
    } else if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
  }

  private async failed(err: unknown): Promise<void> {
    this.failures++;
    this.attempt++;
    // Whatever was on its way is sent again from the saved cursor.
    this.inFlight = [];
    this.dirty = true;
    if (this.stopping) {
      this.aborted = true;
      return;
    }
    const ceiling = Math.min(this.s.retryMaxMs, this.s.retryBaseMs * 2 ** Math.min(this.attempt - 1, 30));
    const delay = Math.round(ceiling * (0.5 + this.s.random() * 0.5));
    this.log.warn(
      {
        err: errorText(err),
        reason: err instanceof DeliveryError ? err.reason : 'store',
        attempt: this.attempt,
        retry_ms: delay,
      },
      'export delivery failed',
    );
    await this.sleep(delay);
  }

  /** Waits up to ms, or until publish/notify/close. The poll marks the store worth reading. */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.s.clock.setTimeout(() => {
        this.wakeFn = undefined;
        this.dirty = true;
        this.quietGap = false;
        resolve();
      }, ms);
      this.wakeFn = () => {
        this.s.clock.clearTimeout(timer);
        this.wakeFn = undefined;
        resolve();
      };
    });
  }

  /** Waits ms, cut short only by close. */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = this.s.clock.setTimeout(() => {
        this.stopFn = undefined;
        resolve();
      }, ms);
      this.stopFn = () => {
        this.s.clock.clearTimeout(timer);
        this.stopFn = undefined;
        resolve();
      };
    });
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
