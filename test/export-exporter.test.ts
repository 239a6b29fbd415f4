// The exporter's guarantees, with the store and the transport as small fakes: at least
// once (cursor saved only after delivery, resumed after failures), a new sink starts at
// the head, a bounded queue whose overflow is counted and read back from the store,
// one replica at a time per sink (lease), retries with backoff, close that flushes.
import t, { type Test } from 'tap';
import { Exporter, type ExporterOptions } from '../src/export/exporter.js';
import type { Sink } from '../src/export/sink.js';
import { DeliveryError } from '../src/export/sink.js';
import type { ExportSinkConfig } from '../src/config/export-config.js';
import type { SecurityEvent } from '../src/store/types.js';
import { silentLogger } from '../src/log.js';
import { ManualClock } from './helpers/clock.js';
import { waitFor } from './helpers/wait.js';
import { MemoryStore, signInEvent } from './helpers/rsyslog.js';

/** A transport that records what arrived and fails while `failing` is set. */
class FakeSink implements Sink {
  readonly got: SecurityEvent[] = [];
  failing = false;
  calls = 0;
  /** Holds each delivery until released (a slow receiver). */
  gate: Promise<void> | undefined;
  closed = false;
  constructor(readonly maxInFlight = 1) {}
  async deliver(events: readonly SecurityEvent[]): Promise<void> {
    this.calls++;
    if (this.gate) await this.gate;
    if (this.failing || this.closed) throw new DeliveryError('closed', 'receiver down');
    this.got.push(...events);
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  ids(): string[] {
    return this.got.map((e) => e.id);
  }
}

function sinkConfig(over: Partial<ExportSinkConfig> = {}): ExportSinkConfig {
  return {
    kind: 'file',
    name: 'file:/tmp/x',
    path: '/tmp/x',
    maxSize: 1e6,
    keep: 1,
    queueSize: 100,
    batchSize: 10,
    from: 'head',
    ...over,
  } as ExportSinkConfig;
}

function exporter(
  t: Test,
  mem: MemoryStore,
  sink: Sink,
  over: Partial<ExporterOptions> & { cfg?: Partial<ExportSinkConfig> } = {},
): Exporter {
  const { cfg, ...rest } = over;
  const x = new Exporter({
    store: mem.store,
    sinks: [sinkConfig(cfg)],
    log: silentLogger,
    pollMs: 20,
    retryBaseMs: 5,
    retryMaxMs: 50,
    createSink: () => sink,
    ...rest,
  });
  t.teardown(() => x.close());
  return x;
}

const ids = (events: SecurityEvent[]) => events.map((e) => e.id);
const unique = (list: string[]) => [...new Set(list)];

t.test('a new sink starts at the head; everything after arrives once, in order per log', async (t) => {
  const mem = new MemoryStore();
  for (let i = 0; i < 5; i++) mem.add();
  const sink = new FakeSink();
  const x = exporter(t, mem, sink);
  await x.start();
  await waitFor(() => mem.saved.get('file:/tmp/x'), { what: 'the starting cursor saved' });
  t.same(mem.saved.get('file:/tmp/x'), { signIn: 5, audit: 0, riskDetection: 0 }, 'starts at the head, saved at once');
  const sent: SecurityEvent[] = [];
  for (let i = 0; i < 40; i++) {
    const e = mem.add((['signIn', 'audit', 'riskDetection'] as const)[i % 3]);
    sent.push(e);
    x.publish(e);
  }
  await waitFor(() => sink.got.length >= 40, { what: '40 events delivered' });
  t.same(sink.ids(), ids(sent), 'each event once, in commit order');
  t.same(mem.saved.get('file:/tmp/x'), { signIn: 19, audit: 13, riskDetection: 13 });
  const [s] = x.stats();
  t.same(s, { sink: 'file:/tmp/x', queueDepth: 0, dropped: 0, delivered: 40, failures: 0, lagSeconds: 0 });
});

t.test('from: start replays the logs; a stored cursor wins over both', async (t) => {
  const mem = new MemoryStore();
  for (let i = 0; i < 7; i++) mem.add();
  const sink = new FakeSink();
  await exporter(t, mem, sink, { cfg: { from: 'start' } }).start();
  await waitFor(() => sink.got.length === 7, { what: 'the replay' });
  t.same(sink.ids(), ids(mem.log));
  const again = new FakeSink();
  const x2 = exporter(t, mem, again, { cfg: { from: 'start' }, owner: 'other' });
  mem.leases.clear();
  mem.add();
  await x2.start();
  x2.notify();
  await waitFor(() => again.got.length >= 1, { what: 'the next event' });
  t.same(again.ids(), ['signin-8'], 'resumes from the stored cursor, not from the start');
});

t.test('events recorded without publish (another process) arrive by notify and by the poll', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  const x = exporter(t, mem, sink, { pollMs: 30 });
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  mem.add();
  x.notify();
  await waitFor(() => sink.got.length === 1, { what: 'notify' });
  mem.add();
  await waitFor(() => sink.got.length === 2, { what: 'the poll' });
  t.same(sink.ids(), ['signin-1', 'signin-2']);
});

t.test('published events are taken from the queue without reading the store', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  const x = exporter(t, mem, sink, { pollMs: 60_000 });
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  await waitFor(() => mem.reads >= 1);
  const before = mem.reads;
  for (let i = 0; i < 25; i++) x.publish(mem.add());
  await waitFor(() => sink.got.length === 25);
  t.equal(mem.reads, before, 'no store read for events in hand');
  // A gap (an event committed but never published) is filled from the store.
  mem.add();
  const after = mem.add();
  x.publish(after);
  await waitFor(() => sink.got.length === 27, { what: 'the gap filled' });
  t.same(sink.ids().slice(-2), ['signin-26', 'signin-27'], 'in order across the gap');
  t.ok(mem.reads > before, 'the gap was read from the store');
});

t.test('a failing sink: retried with backoff, cursor held until delivered, nothing lost', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  const x = exporter(t, mem, sink);
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  sink.failing = true;
  for (let i = 0; i < 30; i++) x.publish(mem.add());
  await waitFor(() => x.stats()[0]!.failures >= 3, { what: 'three failed attempts' });
  t.same(mem.saved.get('file:/tmp/x'), { signIn: 0, audit: 0, riskDetection: 0 }, 'cursor not moved');
  t.ok(x.stats()[0]!.lagSeconds > 0, 'lag shows the undelivered events');
  sink.failing = false;
  await waitFor(() => unique(sink.ids()).length === 30, { what: 'all 30 after recovery' });
  t.same(unique(sink.ids()), ids(mem.log));
  await waitFor(() => mem.saved.get('file:/tmp/x')?.signIn === 30);
  t.equal(x.stats()[0]!.lagSeconds, 0);
});

t.test('retry delays grow exponentially with jitter, up to the maximum', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const mem = new MemoryStore();
  const sink = new FakeSink();
  sink.failing = true;
  const x = exporter(t, mem, sink, {
    clock,
    retryBaseMs: 100,
    retryMaxMs: 1000,
    random: () => 1,
    cfg: { from: 'start' },
  });
  mem.add();
  await x.start();
  await waitFor(() => sink.calls === 1);
  const callsAt: number[] = [];
  const start = clock.now();
  for (let step = 0; step < 80 && callsAt.length < 6; step++) {
    const before = sink.calls;
    await clock.advance(50);
    if (sink.calls > before) callsAt.push(clock.now() - start);
  }
  // random() = 1: the full ceiling each time: 100, 200, 400, 800, 1000, 1000 ms apart.
  const gaps = callsAt.map((at, i) => at - (i === 0 ? 0 : callsAt[i - 1]!));
  t.same(gaps, [100, 200, 400, 800, 1000, 1000]);
  sink.failing = false;
  await clock.advance(1000);
  await waitFor(() => sink.got.length === 1);
  t.equal(x.stats()[0]!.failures, 7);
});

t.test('a full queue counts drops, the request path does not wait, the store fills in', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  let release!: () => void;
  sink.gate = new Promise((r) => (release = r));
  const x = exporter(t, mem, sink, { cfg: { queueSize: 50, batchSize: 20 } });
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  for (let i = 0; i < 200; i++) x.publish(mem.add());
  const s = x.stats()[0]!;
  t.ok(s.dropped >= 130, `drops counted (${s.dropped})`);
  t.ok(s.queueDepth <= 50, `queue bounded (${s.queueDepth})`);
  // The request path's cost: a publish is a push or a counter.
  // Generous bound for a shared machine: a publish that waited on the sink would take milliseconds.
  const N = 100_000;
  const extra = Array.from({ length: N }, (_, i) => signInEvent(10_000 + i));
  const begin = process.hrtime.bigint();
  for (let i = 0; i < N; i++) x.publish(extra[i]!);
  const perCall = Number(process.hrtime.bigint() - begin) / N;
  t.ok(perCall < 20_000, `publish on a full queue: ${perCall.toFixed(0)} ns a call`);
  sink.gate = undefined;
  release();
  await waitFor(() => unique(sink.ids()).filter((id) => Number(id.slice(7)) <= 200).length === 200, {
    what: 'all 200 events, the dropped ones read from the store',
    timeoutMs: 10_000,
  });
  t.ok(x.stats()[0]!.dropped > 0);
});

t.test('one replica at a time: the lease, its release and its expiry', async (t) => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  const mem = new MemoryStore();
  const a = new FakeSink();
  const b = new FakeSink();
  const common = { clock, leaseMs: 3000, pollMs: 100, cfg: { from: 'start' as const } };
  const xa = exporter(t, mem, a, { ...common, owner: 'a' });
  const xb = exporter(t, mem, b, { ...common, owner: 'b' });
  await xa.start();
  await waitFor(() => mem.leases.get('file:/tmp/x')?.owner === 'a');
  await xb.start();
  for (let i = 0; i < 5; i++) mem.add();
  for (let i = 0; i < 20; i++) await clock.advance(100);
  t.equal(a.got.length, 5, 'the lease holder exports');
  t.equal(b.got.length, 0, 'the other replica waits');
  // a stops cleanly: b takes over at its next try.
  await xa.close();
  t.notOk(mem.leases.has('file:/tmp/x'), 'released on close');
  mem.add();
  for (let i = 0; i < 20 && b.got.length === 0; i++) await clock.advance(500);
  t.same(b.ids(), ['signin-6'], 'b continues from the saved cursor');
  // b dies (no release, no renewals): a third replica waits for the lease to expire.
  const c = new FakeSink();
  const stuck = mem.leases.get('file:/tmp/x')!;
  await xb.close();
  mem.leases.set('file:/tmp/x', stuck);
  const xc = exporter(t, mem, c, { ...common, owner: 'c' });
  await xc.start();
  mem.add();
  await clock.advance(500);
  t.equal(c.got.length, 0, 'not before the lease expires');
  for (let i = 0; i < 20 && c.got.length === 0; i++) await clock.advance(500);
  t.same(c.ids(), ['signin-7'], 'taken over after expiry');
});

t.test('a lease taken over meanwhile: the old holder stops saving and stands by', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  const x = exporter(t, mem, sink, { owner: 'a', leaseMs: 60 });
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  mem.leases.set('file:/tmp/x', { owner: 'z', until: Date.now() + 60_000 });
  for (let i = 0; i < 3; i++) x.publish(mem.add());
  await waitFor(() => sink.got.length === 3, { what: 'the batch sent' });
  await new Promise((r) => setImmediate(r));
  t.same(mem.saved.get('file:/tmp/x'), { signIn: 0, audit: 0, riskDetection: 0 }, 'no save without the lease');
  x.publish(mem.add());
  t.equal(x.stats()[0]!.queueDepth, 0, 'a replica without the lease queues nothing');
});

t.test('close flushes what is in hand, releases the lease, is idempotent', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  let release!: () => void;
  sink.gate = new Promise((r) => (release = r));
  const x = exporter(t, mem, sink, { owner: 'a' });
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  for (let i = 0; i < 15; i++) x.publish(mem.add());
  await waitFor(() => sink.calls === 1);
  const closing = x.close();
  t.equal(x.close(), closing, 'one close');
  sink.gate = undefined;
  release();
  await closing;
  t.equal(sink.got.length, 15, 'the queue was delivered before closing');
  t.same(mem.saved.get('file:/tmp/x'), { signIn: 15, audit: 0, riskDetection: 0 });
  t.notOk(mem.leases.has('file:/tmp/x'));
  t.ok(sink.closed);
  x.publish(mem.add());
  t.equal(x.stats()[0]!.queueDepth, 0, 'publish after close is a no-op');
});

t.test('close gives up at its deadline when the sink hangs', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  sink.gate = new Promise(() => undefined);
  const x = exporter(t, mem, sink, { closeTimeoutMs: 100, owner: 'a' });
  await x.start();
  await waitFor(() => mem.saved.size === 1);
  x.publish(mem.add());
  await waitFor(() => sink.calls === 1);
  const began = Date.now();
  await x.close();
  t.ok(Date.now() - began < 3000, 'closed at the deadline');
  t.same(
    mem.saved.get('file:/tmp/x'),
    { signIn: 0, audit: 0, riskDetection: 0 },
    'the undelivered event stays after the cursor',
  );
});

t.test('close without start, and with no sinks', async (t) => {
  const mem = new MemoryStore();
  const sink = new FakeSink();
  await exporter(t, mem, sink).close();
  t.ok(sink.closed);
  const none = new Exporter({ store: mem.store, sinks: [], log: silentLogger });
  await none.start();
  none.publish(mem.add());
  none.notify();
  t.same(none.stats(), []);
  await none.close();
});
