// The sign-in throttle shared through the real Redis on 127.0.0.1:6379: it answers
// exactly as LoginThrottle on long random histories of failures, successes and
// waits; failures on one replica slow the others; counters expire once forgiven;
// and with Redis gone each replica falls back to its own counters, kept all along.
import t, { type Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { DEFAULT_RULES, LoginThrottle, SharedLoginThrottle, type ThrottleVerdict } from '../src/idp/throttle.js';
import { SharedLimits } from '../src/relay/edge/redis-limiter.js';
import { closedPort } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const REDIS = 'redis://127.0.0.1:6379/0';
const RUN = `proxyctl-test:${randomUUID()}:`;
const admin = new Redis(REDIS);

t.teardown(async () => {
  const keys = await admin.keys(`${RUN}*`);
  if (keys.length) await admin.del(...keys);
  await admin.quit();
});

/** One replica's Redis connection, with a key prefix of the test's own (shared when given). */
async function replica(t: Test, prefix = `${RUN}${randomUUID()}:`, url = REDIS): Promise<SharedLimits> {
  const limits = new SharedLimits({ url, log: pino({ level: 'silent' }), prefix, reconnectDelay: () => 20 });
  t.teardown(() => limits.close());
  if (url === REDIS) await waitFor(() => limits.shared, { what: 'connected' });
  return limits;
}

/** A deterministic generator, so a failing history can be replayed. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

t.test('the same verdicts as LoginThrottle over long random histories', async (t) => {
  const users = ['alice', 'bob', 'carol', 'no such user!', 'Alice'];
  const addresses = [
    '198.51.100.7',
    '198.51.100.8',
    '203.0.113.5',
    '2001:db8::1',
    '2001:db8::2',
    '::ffff:198.51.100.7',
  ];
  const long = [0, 0, 0, 1, 500, 999, 1000, 30_000, 5 * 60_000, 16 * 60_000];
  const short = [0, 0, 0, 1, 100, 250, 500, 999, 1000, 4000];
  const small = {
    pair: { free: 2, forgiveMs: 60_000, baseDelayMs: 1000, maxDelayMs: 20_000 },
    account: { free: 3, forgiveMs: 90_000, baseDelayMs: 1000, maxDelayMs: 30_000 },
    address: { free: 4, forgiveMs: 30_000, baseDelayMs: 500, maxDelayMs: 10_000 },
    network: { free: 6, forgiveMs: 20_000, baseDelayMs: 250, maxDelayMs: 5_000 },
  };
  for (const [name, rules, steps, seed] of [
    ['default rules', DEFAULT_RULES, long, 1],
    ['default rules, another history', DEFAULT_RULES, long, 7],
    ['small rules: waits and forgiveness come into play often', small, short, 42],
    ['small rules, another history', small, short, 2024],
  ] as const) {
    let now = 1_700_000_000_000;
    const clock = () => now;
    const local = new LoginThrottle({ rules, now: clock, knownForMs: 10 * 60_000 });
    const shared = new SharedLoginThrottle({
      rules,
      now: clock,
      knownForMs: 10 * 60_000,
      redis: await replica(t),
      scriptClock: clock,
    });
    const rand = prng(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    let checks = 0;
    let refused = 0;
    const differences: string[] = [];
    for (let i = 0; i < 600; i++) {
      now += pick(steps);
      const user = pick(users);
      const address = pick(addresses);
      const r = rand();
      if (r < 0.55) {
        await shared.failure(user, address);
        local.failure(user, address);
      } else if (r < 0.62) {
        await shared.success(user, address);
        local.success(user, address);
      } else {
        const expected: ThrottleVerdict = local.check(user, address);
        const got = await shared.check(user, address);
        checks++;
        if (!expected.allowed) refused++;
        if (JSON.stringify(got) !== JSON.stringify(expected))
          differences.push(`step ${i}: ${user} ${address}: ${JSON.stringify(got)} ≠ ${JSON.stringify(expected)}`);
      }
    }
    t.same(differences, [], `${name}: ${checks} checks, ${refused} refused, all alike`);
    t.ok(refused > 0 && refused < checks, `${name}: the history exercises both answers`);
  }
});

t.test('failures on one replica slow the others; a success is known to all', async (t) => {
  let now = 1_700_000_000_000;
  const clock = () => now;
  const prefix = `${RUN}${randomUUID()}:`;
  const a = new SharedLoginThrottle({ now: clock, scriptClock: clock, redis: await replica(t, prefix) });
  const b = new SharedLoginThrottle({ now: clock, scriptClock: clock, redis: await replica(t, prefix) });
  await b.success('alice', '192.0.2.10');
  const net = (i: number) => `203.0.${i}.9`;
  for (let i = 0; i < 6; i++) await (i % 2 ? a : b).failure('alice', net(i));
  t.same(
    await a.check('alice', net(50)),
    { allowed: false, retryAfterS: 2, scope: 'account' },
    'A counts B’s failures',
  );
  t.same(await b.check('alice', net(51)), { allowed: false, retryAfterS: 2, scope: 'account' }, 'and B counts A’s');
  t.same(await a.check('alice', '192.0.2.10'), { allowed: true }, 'where B saw alice sign in, A lets her in too');
  const perReplica = [new LoginThrottle({ now: clock }), new LoginThrottle({ now: clock })];
  for (let i = 0; i < 6; i++) perReplica[i % 2]!.failure('alice', net(i));
  t.same(
    perReplica[0]!.check('alice', net(50)),
    { allowed: true },
    'per-replica counters: 3 failures each, not slowed',
  );
  now += 2000;
  t.same(await a.check('alice', net(50)), { allowed: true }, 'the wait is over on both');
  t.same(await b.check('alice', net(50)), { allowed: true });
});

t.test('counters expire in Redis once forgiven; known sources after knownForMs', async (t) => {
  const limits = await replica(t);
  const rules = { ...DEFAULT_RULES, pair: { free: 1, forgiveMs: 150, baseDelayMs: 100, maxDelayMs: 100 } };
  const th = new SharedLoginThrottle({ rules, redis: limits, knownForMs: 300 });
  await th.failure('dave', '198.51.100.20');
  const pairKey = th.key('pair', 'dave 198.51.100.20');
  const ttl = await admin.pttl(pairKey);
  t.ok(ttl > 0 && ttl <= 150, `a pair counter lives until forgiven (${ttl} ms)`);
  t.ok((await admin.pttl(th.key('account', 'dave'))) > 14 * 60_000, 'the account counter: 15 minutes');
  const v = await th.check('dave', '198.51.100.20');
  t.match(v, { allowed: false, scope: 'pair' }, 'timed by Redis TIME by default');
  await waitFor(async () => (await admin.exists(pairKey)) === 0, { what: 'the pair counter to vanish' });
  await th.success('dave', '198.51.100.20');
  const known = th.key('known', 'dave');
  t.same(await admin.zrange(known, 0, -1), ['198.51.100.20']);
  await waitFor(async () => (await admin.exists(known)) === 0, { what: 'the known sources to vanish' });
});

t.test('known sources: the most recent knownPerAccount are kept', async (t) => {
  let now = 1_700_000_000_000;
  const clock = () => now;
  const th = new SharedLoginThrottle({ now: clock, scriptClock: clock, knownPerAccount: 2, redis: await replica(t) });
  for (const a of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) {
    now += 1000;
    await th.success('erin', a);
  }
  t.same(await admin.zrange(th.key('known', 'erin'), 0, -1), ['192.0.2.2', '192.0.2.3'], 'the oldest dropped');
  now += 1000;
  await th.success('erin', '192.0.2.2');
  t.same(await admin.zrange(th.key('known', 'erin'), 0, -1), ['192.0.2.3', '192.0.2.2'], 'a success again: the newest');
});

t.test('Redis gone: each replica falls back to its own counters, kept all along', async (t) => {
  const now = 1_700_000_000_000;
  const clock = () => now;
  const limits = await replica(t);
  const th = new SharedLoginThrottle({ now: clock, scriptClock: clock, redis: limits });
  const net = (i: number) => `203.0.${i}.9`;
  for (let i = 0; i < 6; i++) await th.failure('frank', net(i));
  await limits.close();
  t.same(
    await th.check('frank', net(60)),
    { allowed: false, retryAfterS: 2, scope: 'account' },
    'the local counters saw the same failures',
  );

  const down = await replica(t, `${RUN}${randomUUID()}:`, `redis://127.0.0.1:${await closedPort()}/0`);
  const alone = new SharedLoginThrottle({ now: clock, scriptClock: clock, redis: down });
  const started = performance.now();
  for (let i = 0; i < 6; i++) await alone.failure('gina', net(i));
  t.match(await alone.check('gina', net(60)), { allowed: false, scope: 'account' }, 'decided by this replica');
  t.ok(performance.now() - started < 500, 'without waiting for the dead Redis');
  await alone.success('gina', '192.0.2.50');
  t.same(await alone.check('gina', '192.0.2.50'), { allowed: true });
});
