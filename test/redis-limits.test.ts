// Rate limits shared by replicas through the real Redis on 127.0.0.1:6379: two
// SharedLimits (two replicas, two connections) enforce one combined rate; the
// buckets answer as RateLimiter's do; idle buckets expire; and with Redis refusing,
// gone mid-run or hanging, takes are decided per replica within the command timeout,
// the outage is logged once, and sharing resumes by itself. Keys carry a prefix per run.
import t, { type Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { RateLimiter, type RateLimit, type TakeResult } from '../src/relay/edge/limits.js';
import { SharedLimits, type SharedLimitsOptions } from '../src/relay/edge/redis-limiter.js';
import { closedPort } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const REDIS = 'redis://127.0.0.1:6379/0';
const RUN = `proxyctl-test:${randomUUID()}:`;
const admin = new Redis(REDIS, { lazyConnect: false });

t.teardown(async () => {
  const keys = await admin.keys(`${RUN}*`);
  if (keys.length) await admin.del(...keys);
  await admin.quit();
});

interface LogLine {
  level: string;
  msg: string;
}

/** A SharedLimits with its own key prefix and a captured log, closed at the end of the test. */
function shared(t: Test, opts: Partial<SharedLimitsOptions> = {}, prefix = `${RUN}${randomUUID()}:`) {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  const limits = new SharedLimits({ url: REDIS, log, prefix, ...opts });
  t.teardown(() => limits.close());
  const said = (msg: RegExp) => lines.filter((l) => msg.test(l.msg)).length;
  return { limits, lines, prefix, outages: () => said(/does not answer/), recoveries: () => said(/answers again/) };
}

const isPromise = (x: unknown): x is Promise<unknown> => x instanceof Promise;

/**
 * A TCP relay to Redis the test can stop (listener closed, connections cut: connection
 * refused), start again on the same port, or hang (bytes held back, nothing lost: a
 * network that stalls, as TCP would deliver it late).
 */
class RedisLink {
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  private hung = false;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(6379, '127.0.0.1');
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.pairs.delete(pair);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      if (this.hung) this.hold(pair);
    });
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  hang(on: boolean): void {
    this.hung = on;
    for (const pair of this.pairs) {
      if (on) this.hold(pair);
      else {
        pair[0].resume();
        pair[1].resume();
      }
    }
  }

  private hold([a, b]: [Socket, Socket]): void {
    a.pause();
    b.pause();
  }
}

async function link(t: Test): Promise<RedisLink> {
  const l = new RedisLink();
  await l.start();
  t.teardown(() => l.stop());
  return l;
}

/** A clock the test moves; the same reading for this replica and for the buckets in Redis. */
function manualTime(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}

t.test('two replicas share one bucket: one combined rate, where per-replica buckets allow twice it', async (t) => {
  const time = manualTime();
  const prefix = `${RUN}${randomUUID()}:`;
  const a = shared(t, { now: time.now, bucketClock: time.now }, prefix).limits;
  const b = shared(t, { now: time.now, bucketClock: time.now }, prefix).limits;
  await waitFor(() => a.shared && b.shared, { what: 'both replicas connected' });
  const rate = { ratePerSec: 1, burst: 5 };
  const replicas = [a.limiter('ip', rate), b.limiter('ip', rate)];
  let granted = 0;
  for (let i = 0; i < 10; i++) if ((await replicas[i % 2]!.take('203.0.113.7')).ok) granted++;
  t.equal(granted, 5, 'ten requests alternating between the replicas: the burst of 5 once, not twice');
  t.same(await replicas[0]!.take('203.0.113.7'), { ok: false, retryAfterS: 1 }, 'Retry-After from the shared bucket');
  t.same(await replicas[1]!.take('203.0.113.7'), { ok: false, retryAfterS: 1 });

  time.advance(2000);
  granted = 0;
  for (let i = 0; i < 6; i++) if ((await replicas[i % 2]!.take('203.0.113.7')).ok) granted++;
  t.equal(granted, 2, 'two seconds at 1/s: two more, between both replicas');
  t.equal((await replicas[1]!.take('198.51.100.1')).ok, true, 'another key has its own bucket');

  const perReplica = [new RateLimiter({ ...rate, now: time.now }), new RateLimiter({ ...rate, now: time.now })];
  granted = 0;
  for (let i = 0; i < 10; i++) if (perReplica[i % 2]!.take('203.0.113.7').ok) granted++;
  t.equal(granted, 10, 'per-replica buckets: the limit is per replica (2 replicas, 2× the burst)');
});

t.test('concurrent takes from two replicas: exactly the burst, never more', async (t) => {
  const prefix = `${RUN}${randomUUID()}:`;
  const a = shared(t, {}, prefix).limits;
  const b = shared(t, {}, prefix).limits;
  await waitFor(() => a.shared && b.shared, { what: 'both replicas connected' });
  const rate = { ratePerSec: 0.001, burst: 20 };
  const la = a.limiter('app', rate);
  const lb = b.limiter('app', rate);
  const results = await Promise.all(Array.from({ length: 60 }, async (_, i) => (i % 2 ? la : lb).take('wiki')));
  t.equal(results.filter((r) => r.ok).length, 20, '60 at once from two replicas: 20 granted');
  const ttl = await admin.pttl(`${prefix}app:wiki`);
  t.ok(ttl > 19_000_000 && ttl <= 20_000_000, `the drained bucket lives until it would be full (${ttl} ms)`);
});

type Step = [advanceMs: number, key: string, cost: number, expected: TakeResult];

/** The scenarios of RateLimiter's own tests, as tables both implementations must answer alike. */
const CONTRACT: [name: string, rate: { ratePerSec: number; burst: number }, steps: Step[]][] = [
  [
    'a new key has the full burst, then is refused',
    { ratePerSec: 1, burst: 5 },
    [
      ...Array.from({ length: 5 }, (): Step => [0, 'a', 1, { ok: true }]),
      [0, 'a', 1, { ok: false, retryAfterS: 1 }],
      [0, 'b', 1, { ok: true }],
    ],
  ],
  [
    'tokens come back at the rate, never above the burst',
    { ratePerSec: 10, burst: 10 },
    [
      ...Array.from({ length: 10 }, (): Step => [0, 'k', 1, { ok: true }]),
      [0, 'k', 1, { ok: false, retryAfterS: 1 }],
      [99, 'k', 1, { ok: false, retryAfterS: 1 }],
      [1, 'k', 1, { ok: true }],
      [0, 'k', 1, { ok: false, retryAfterS: 1 }],
      [60_000, 'k', 1, { ok: true }],
      ...Array.from({ length: 9 }, (): Step => [0, 'k', 1, { ok: true }]),
      [0, 'k', 1, { ok: false, retryAfterS: 1 }],
      [0, 'k', 1, { ok: false, retryAfterS: 1 }],
      [100, 'k', 1, { ok: true }],
    ],
  ],
  [
    'retryAfterS: whole seconds, rounded up, at least 1',
    { ratePerSec: 0.5, burst: 1 },
    [
      [0, 'a', 1, { ok: true }],
      [0, 'a', 1, { ok: false, retryAfterS: 2 }],
      [1500, 'a', 1, { ok: false, retryAfterS: 1 }],
      [500, 'a', 1, { ok: true }],
    ],
  ],
  [
    'costs above one',
    { ratePerSec: 1, burst: 5 },
    [
      ...Array.from({ length: 5 }, (): Step => [0, 'a', 1, { ok: true }]),
      [0, 'a', 3, { ok: false, retryAfterS: 3 }],
      [2500, 'a', 3, { ok: false, retryAfterS: 1 }],
      [0, 'a', 2, { ok: true }],
      [0, 'b', 5, { ok: true }],
      [0, 'b', 1, { ok: false, retryAfterS: 1 }],
    ],
  ],
  [
    'exactly one second for three tokens at 3/s',
    { ratePerSec: 3, burst: 3 },
    [
      [0, 'a', 3, { ok: true }],
      [0, 'a', 3, { ok: false, retryAfterS: 1 }],
      [1, 'a', 3, { ok: false, retryAfterS: 1 }],
      [999, 'a', 3, { ok: true }],
    ],
  ],
  [
    'a clock that steps back refills nothing, then counts from the new reading',
    { ratePerSec: 1, burst: 1 },
    [
      [0, 'a', 1, { ok: true }],
      [-10_000, 'a', 1, { ok: false, retryAfterS: 1 }],
      [1000, 'a', 1, { ok: true }],
    ],
  ],
  [
    'fractional rates: one every four seconds',
    { ratePerSec: 0.25, burst: 2 },
    [
      [0, 'x', 1, { ok: true }],
      [0, 'x', 1, { ok: true }],
      [0, 'x', 1, { ok: false, retryAfterS: 4 }],
      [3999, 'x', 1, { ok: false, retryAfterS: 1 }],
      [1, 'x', 1, { ok: true }],
      [8000, 'x', 2, { ok: true }],
    ],
  ],
];

t.test('the shared buckets answer exactly as RateLimiter does', async (t) => {
  const { limits } = shared(t);
  await waitFor(() => limits.shared, { what: 'connected' });
  for (const [name, rate, steps] of CONTRACT) {
    const time = manualTime();
    const local = new RateLimiter({ ...rate, now: time.now });
    // Each scenario its own limits, so the clock is the scenario's.
    const own = shared(t, { now: time.now, bucketClock: time.now });
    await waitFor(() => own.limits.shared, { what: 'connected' });
    const remote: RateLimit = own.limits.limiter(`contract-${randomUUID()}`, rate);
    const got: [TakeResult, TakeResult][] = [];
    for (const [ms, key, cost] of steps) {
      time.advance(ms);
      got.push([local.take(key, cost), await remote.take(key, cost)]);
    }
    t.same(
      got.map(([l]) => l),
      steps.map(([, , , e]) => e),
      `${name}: RateLimiter`,
    );
    t.same(
      got.map(([, r]) => r),
      steps.map(([, , , e]) => e),
      `${name}: shared through Redis`,
    );
  }
  const rl = limits.limiter('x', { ratePerSec: 1, burst: 2 });
  t.throws(() => rl.take('a', 3), RangeError, 'a cost above the burst is a programming error here too');
  t.throws(() => rl.take('a', 0), RangeError);
});

t.test('refusals the replica already knows of are answered without Redis', async (t) => {
  const time = manualTime();
  const { limits, prefix } = shared(t, { now: time.now, bucketClock: time.now });
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 1, burst: 2 });
  t.ok(isPromise(rl.take('a')), 'a take asks Redis');
  t.same(await rl.take('a'), { ok: true });
  const refused = rl.take('a');
  t.notOk(isPromise(refused), 'the bucket is known to be empty: refused at once');
  t.same(refused, { ok: false, retryAfterS: 1 });
  await admin.del(`${prefix}ip:a`);
  t.same(rl.take('a'), { ok: false, retryAfterS: 1 }, 'still refused at once within the refill time');
  time.advance(1000);
  const asked = rl.take('a');
  t.ok(isPromise(asked), 'once a token may be back, Redis is asked again');
  t.same(await asked, { ok: true }, 'and it answers (here: a full bucket, the key was deleted)');
});

t.test('buckets use the Redis clock by default and expire once they would be full', async (t) => {
  const { limits, prefix } = shared(t);
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 20, burst: 2 });
  t.same(await rl.take('a'), { ok: true });
  t.same(await rl.take('a'), { ok: true });
  t.same(await rl.take('a'), { ok: false, retryAfterS: 1 });
  const ttl = await admin.pttl(`${prefix}ip:a`);
  t.ok(ttl > 0 && ttl <= 100, `an empty bucket at 20/s and burst 2 expires within 100 ms (${ttl} ms)`);
  await waitFor(async () => (await admin.exists(`${prefix}ip:a`)) === 0, {
    what: 'the idle bucket to vanish',
    timeoutMs: 2000,
  });
  t.same(await rl.take('a'), { ok: true }, 'refilled by the Redis clock');
  const hash = await admin.hgetall(`${prefix}ip:a`);
  t.same(Object.keys(hash).sort(), ['at', 'tokens'], 'a bucket is two numbers');
  t.ok(Math.abs(Number(hash['at']) - Date.now()) < 5000, 'timed by Redis TIME (epoch milliseconds)');
});

t.test('a flushed script cache (Redis restarted) is refilled with the script', async (t) => {
  const { limits, prefix, outages } = shared(t);
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 1, burst: 3 });
  t.same(await rl.take('a'), { ok: true });
  await admin.script('FLUSH');
  t.same(await rl.take('a'), { ok: true }, 'NOSCRIPT: sent the script itself');
  t.equal(Math.floor(Number(await admin.hget(`${prefix}ip:a`, 'tokens'))), 1, 'both takes counted in Redis');
  t.equal(outages(), 0, 'not an outage');
});

t.test('Redis down at start: per-replica buckets at once, one log line, shared once Redis comes', async (t) => {
  const port = await closedPort();
  const l = new RedisLink();
  l.port = port;
  t.teardown(() => l.stop());
  const prefix = `${RUN}${randomUUID()}:`;
  const { limits, outages, recoveries } = shared(t, { url: l.url, reconnectDelay: () => 20 }, prefix);
  const rl = limits.limiter('ip', { ratePerSec: 0.001, burst: 2 });
  const first = rl.take('a');
  t.notOk(isPromise(first), 'decided at once, without waiting for Redis');
  t.same(first, { ok: true });
  t.same(rl.take('a'), { ok: true });
  t.same(rl.take('a'), { ok: false, retryAfterS: 1000 }, 'the per-replica bucket still limits');
  await waitFor(() => outages() === 1, { what: 'the outage logged' });
  await new Promise((resolve) => setTimeout(resolve, 200)); // ~10 more reconnect attempts
  t.equal(outages(), 1, 'logged once, not per reconnect attempt');
  t.notOk(limits.shared);

  await l.start();
  await waitFor(() => limits.shared, { what: 'shared again' });
  t.equal(recoveries(), 1, 'the recovery logged once');
  const taken = rl.take('b');
  t.ok(isPromise(taken), 'takes go to Redis again');
  t.same(await taken, { ok: true });
  t.equal(Math.floor(Number(await admin.hget(`${prefix}ip:b`, 'tokens'))), 1, 'and are counted there');
});

t.test('Redis gone mid-run: every take decided within the timeout, logged once, sharing resumes', async (t) => {
  const l = await link(t);
  const prefix = `${RUN}${randomUUID()}:`;
  const { limits, outages, recoveries } = shared(t, { url: l.url, reconnectDelay: () => 20 }, prefix);
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 0.001, burst: 100 });
  t.same(await rl.take('a'), { ok: true });

  await l.stop();
  let slowest = 0;
  for (let i = 0; i < 50; i++) {
    const started = performance.now();
    const r = await rl.take('a');
    slowest = Math.max(slowest, performance.now() - started);
    t.equal(r.ok, true, `take ${i} granted by the per-replica bucket`);
    await new Promise((resolve) => setTimeout(resolve, 4));
  }
  t.ok(slowest < 150, `no take waited on the dead Redis (slowest ${slowest.toFixed(1)} ms)`);
  await waitFor(() => outages() === 1, { what: 'the outage logged' });
  t.equal(outages(), 1, 'once for the whole outage');

  await l.start();
  await waitFor(() => limits.shared, { what: 'shared again' });
  t.same(await rl.take('a'), { ok: true });
  t.equal(Math.floor(Number(await admin.hget(`${prefix}ip:a`, 'tokens'))), 98, 'Redis counts again from where it was');
  t.equal(recoveries(), 1);
  t.equal(outages(), 1);
});

t.test('Redis hanging: a take waits at most the command timeout, then one probe per interval', async (t) => {
  const l = await link(t);
  const time = { now: 0 };
  const { limits, outages, recoveries } = shared(t, {
    url: l.url,
    commandTimeoutMs: 50,
    probeEveryMs: 1000,
    now: () => time.now,
  });
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 0.001, burst: 100 });
  t.same(await rl.take('a'), { ok: true });

  l.hang(true);
  const started = performance.now();
  const pending = rl.take('a');
  t.ok(isPromise(pending), 'the first take after the stall still asks Redis');
  t.same(await pending, { ok: true }, 'and is decided by the replica when Redis is late');
  const waited = performance.now() - started;
  t.ok(waited >= 45 && waited < 200, `waited about the command timeout (${waited.toFixed(1)} ms)`);
  t.equal(outages(), 1);
  const meanwhile = rl.take('a');
  t.notOk(isPromise(meanwhile), 'until the next probe, takes are decided at once');
  time.now += 1000;
  const probe = rl.take('a');
  t.ok(isPromise(probe), 'one take probes Redis after the interval');
  t.notOk(isPromise(rl.take('a')), 'and only one');
  await probe;
  t.equal(outages(), 1, 'still one log line');

  l.hang(false);
  time.now += 1000;
  // The held-back commands arrive late and in order; the next probe is answered.
  await waitFor(
    async () => {
      time.now += 1000;
      await rl.take('a');
      return limits.shared;
    },
    { what: 'shared again' },
  );
  t.equal(recoveries(), 1);
  t.ok(isPromise(rl.take('a')), 'takes go to Redis again');
});

t.test('close: idempotent, and takes after it are decided per replica', async (t) => {
  const { limits } = shared(t);
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 1, burst: 1 });
  await Promise.all([limits.close(), limits.close()]);
  await limits.close();
  const r = rl.take('a');
  t.notOk(isPromise(r));
  t.same(r, { ok: true });
});

t.test('takeNow: answers at once; over time the replicas together keep the shared rate', async (t) => {
  const time = manualTime();
  const prefix = `${RUN}${randomUUID()}:`;
  const a = shared(t, { now: time.now, bucketClock: time.now }, prefix).limits;
  const b = shared(t, { now: time.now, bucketClock: time.now }, prefix).limits;
  await waitFor(() => a.shared && b.shared, { what: 'both replicas connected' });
  const rate = { ratePerSec: 1, burst: 5 };
  const la = a.limiter('ip', rate);
  const lb = b.limiter('ip', rate);
  for (let i = 0; i < 5; i++) t.same(la.takeNow('k'), { ok: true }, `A: ${i + 1} of the burst, at once`);
  await la.settled();
  t.same(la.takeNow('k'), { ok: false, retryAfterS: 1 }, 'A heard the bucket is empty: refused at once');
  t.same(lb.takeNow('k'), { ok: true }, 'B had heard nothing yet: admitted');
  await lb.settled();
  t.equal(Number(await admin.hget(`${prefix}ip:k`, 'tokens')), -1, 'and debited: the bucket owes one token');
  t.same(lb.takeNow('k'), { ok: false, retryAfterS: 2 }, 'B now knows: the debt is repaid first');

  // Both replicas asked every 100 ms for 30 s: the shared rate, plus at most one stale admission each.
  let admitted = 0;
  for (let step = 0; step < 300; step++) {
    time.advance(100);
    for (const l of [la, lb]) {
      if (l.takeNow('k').ok) admitted++;
      await l.settled();
    }
  }
  t.ok(admitted >= 29 && admitted <= 32, `30 s at 1/s from a bucket in debt: ${admitted} admitted, not 60`);
  const immediate = la.immediate();
  t.notOk(isPromise(immediate.take('other')), 'immediate(): the same, for synchronous callers');
  await la.settled();
});

t.test('takeNow while Redis hangs or is gone: never more than the replica’s own bucket', async (t) => {
  const l = await link(t);
  const { limits } = shared(t, { url: l.url, reconnectDelay: () => 20 });
  await waitFor(() => limits.shared, { what: 'connected' });
  const rl = limits.limiter('ip', { ratePerSec: 0.001, burst: 3 });
  l.hang(true);
  const answers = Array.from({ length: 10 }, () => rl.takeNow('a'));
  t.equal(answers.filter((r) => r.ok).length, 3, 'the own bucket admits its burst and no more');
  t.same(answers[9], { ok: false, retryAfterS: 1000 });
  await rl.settled();
  t.notOk(limits.shared, 'the unanswered debits marked an outage');
  await l.stop();
  t.equal(rl.takeNow('a').ok, false, 'with Redis gone: still the own bucket');
  t.equal(rl.takeNow('b').ok, true, 'another key');
});
