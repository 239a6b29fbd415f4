// The embedded provider's sign-in throttle, from an attacker's side: guesses
// spread over many addresses, spraying from one address, a /24 or /64 full of
// addresses, a stranger trying to lock the real user out, spoofed and trusted
// X-Forwarded-For, and user names that do or do not exist. Time is a fake clock.
import t from 'tap';
import { DEFAULT_RULES, LoginThrottle } from '../src/idp/throttle.js';
import { IdpBrowser, startIdpServer, type IdpServer } from './helpers/embedded-idp.js';

const MAX_WAIT_S = DEFAULT_RULES.account.maxDelayMs / 1000;

t.test('LoginThrottle', async (t) => {
  let now = 1_700_000_000_000;
  const clock = () => now;
  const addr = (i: number) => `198.51.${100 + (i >> 8)}.${i & 255}`; // a different address each time
  const net = (i: number) => `203.0.${i}.9`; // a different /24 each time

  t.test('one account, many networks: growing delays, capped, never a lock', async (t) => {
    const th = new LoginThrottle({ now: clock });
    for (let i = 0; i < 5; i++) {
      t.same(th.check('alice', net(i)), { allowed: true }, `free failure ${i + 1}`);
      th.failure('alice', net(i));
    }
    const waits: number[] = [];
    for (let i = 5; i < 30; i++) {
      const v = th.check('alice', net(i));
      t.equal(v.allowed, false, `attempt ${i + 1} from a fresh network is slowed`);
      if (v.allowed) return;
      t.equal(v.scope, 'account');
      waits.push(v.retryAfterS);
      now += v.retryAfterS * 1000;
      t.same(th.check('alice', net(i)), { allowed: true }, 'allowed once the wait is over');
      th.failure('alice', net(i));
    }
    t.same(waits.slice(0, 10), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], 'doubling');
    t.ok(
      waits.every((w) => w <= MAX_WAIT_S),
      `never more than ${MAX_WAIT_S} s`,
    );
    t.same(
      waits.slice(-5),
      [MAX_WAIT_S, MAX_WAIT_S, MAX_WAIT_S, MAX_WAIT_S, MAX_WAIT_S],
      'capped: then about one guess per 10 minutes',
    );
    t.same(th.check('bob', net(99)), { allowed: true }, 'other accounts are not slowed');
  });

  t.test('attempts refused while waiting are not counted', async (t) => {
    const th = new LoginThrottle({ now: clock });
    for (let i = 0; i < 8; i++) {
      if (i > 0) now += 60_000;
      th.failure('alice', net(i));
    }
    const first = th.check('alice', net(50));
    t.equal(first.allowed, false);
    for (let i = 0; i < 1000; i++) th.check('alice', net(i));
    now += 1000;
    const later = th.check('alice', net(50));
    t.ok(
      !first.allowed && !later.allowed && later.retryAfterS === first.retryAfterS - 1,
      'hammering does not lengthen the wait',
    );
  });

  t.test('failures are forgiven over time', async (t) => {
    const th = new LoginThrottle({ now: clock });
    for (let i = 0; i < 5; i++) th.failure('alice', net(i));
    t.match(th.check('alice', net(9)), { allowed: false, retryAfterS: 1 });
    now += DEFAULT_RULES.account.forgiveMs; // one forgiven: back to four
    t.same(th.check('alice', net(9)), { allowed: true });
    th.failure('alice', net(9));
    t.match(
      th.check('alice', net(10)),
      { allowed: false, retryAfterS: 1 },
      'the fifth again costs the first delay, not the second',
    );
    now += 6 * DEFAULT_RULES.account.forgiveMs;
    t.same(th.check('alice', net(10)), { allowed: true });
    th.failure('zed', '192.0.2.1');
    t.same(th.sizes, { pair: 1, account: 1, address: 1, network: 1, known: 0 }, 'fully forgiven entries are swept');
  });

  t.test('spraying from one address is slowed', async (t) => {
    const th = new LoginThrottle({ now: clock });
    const free = DEFAULT_RULES.address.free;
    for (let i = 0; i < free; i++) {
      t.equal(th.check(`user${i}`, '192.0.2.10').allowed, true);
      th.failure(`user${i}`, '192.0.2.10');
    }
    t.match(
      th.check('someone-new', '192.0.2.10'),
      { allowed: false, scope: 'address', retryAfterS: 1 },
      `after ${free} names`,
    );
    t.same(th.check('someone-new', '192.0.2.11'), { allowed: true }, 'a neighbour is not slowed by one address');
  });

  t.test('a /24 or a /64 full of addresses is slowed as one', async (t) => {
    for (const [inside, other, outside] of [
      [(i: number) => `192.0.2.${i}`, '192.0.2.250', '192.0.3.1'],
      [(i: number) => `2001:db8:1:2:${i.toString(16)}::1`, '2001:db8:1:2:ffff::9', '2001:db8:1:3::1'],
    ] as const) {
      const th = new LoginThrottle({ now: clock });
      for (let i = 0; i < DEFAULT_RULES.network.free; i++) th.failure(`user${i}`, inside(i)); // one failure per address and name
      t.match(th.check('someone-new', other), { allowed: false, scope: 'network' }, `${other}: its network is slowed`);
      t.same(th.check('someone-new', outside), { allowed: true }, `${outside}: the next network is not`);
    }
  });

  t.test('user names that cannot exist share one account key', async (t) => {
    const th = new LoginThrottle({ now: clock });
    const junk = ['', ' ', 'a b', 'x'.repeat(65), '../etc', 'émile', 'bob\n', '-x', 'A'];
    for (let i = 0; i < 6; i++) th.failure(junk[i]!, net(i));
    t.match(th.check(junk[8]!, net(40)), { allowed: false, scope: 'account' });
    t.same(th.check('carol', net(41)), { allowed: true });
    for (let i = 0; i < 5000; i++) th.failure(`${'z'.repeat(1000)}${i}`, addr(i));
    t.equal(th.sizes.account, 1, 'junk names do not grow the account table');
  });

  t.test('a stranger cannot keep the real user out', async (t) => {
    const th = new LoginThrottle({ now: clock });
    th.success('alice', '198.51.100.7'); // her usual address
    th.success('alice', '2001:db8:aa:bb::1'); // her IPv6 /64
    for (let i = 0; i < 40; i++) {
      const v = th.check('alice', net(i));
      if (!v.allowed) now += v.retryAfterS * 1000;
      th.failure('alice', net(i));
    }
    t.same(th.check('alice', '198.51.100.7'), { allowed: true }, 'from an address she signed in from: no wait');
    t.same(th.check('alice', '2001:db8:aa:bb:1234::5'), { allowed: true }, 'from her /64 (privacy address): no wait');
    const elsewhere = th.check('alice', '192.0.2.200');
    t.ok(
      !elsewhere.allowed && elsewhere.retryAfterS <= MAX_WAIT_S,
      `from a new address: a wait of at most ${MAX_WAIT_S} s`,
    );

    // Whoever shares her address is still held, by the pair rule.
    for (let i = 0; i < 5; i++) th.failure('alice', '198.51.100.7');
    t.match(
      th.check('alice', '198.51.100.7'),
      { allowed: false, scope: 'pair' },
      'guessing from her address is slowed too',
    );
    now += 1000;
    t.same(th.check('alice', '198.51.100.7'), { allowed: true });

    now += 31 * 24 * 3600_000;
    for (let i = 0; i < 6; i++) th.failure('alice', net(200 + i));
    t.match(th.check('alice', '2001:db8:aa:bb::1'), { allowed: false }, 'known sources expire after 30 days');
  });

  t.test('a success clears its pair, not what strangers did', async (t) => {
    const th = new LoginThrottle({ now: clock });
    for (let i = 0; i < 2; i++) th.failure('alice', '198.51.100.7');
    for (let i = 0; i < 2; i++) th.failure('alice', net(i));
    th.success('alice', '198.51.100.7');
    t.equal(th.check('alice', net(20)).allowed, true);
    th.failure('alice', net(20));
    t.match(th.check('alice', net(21)), { allowed: false, scope: 'account' }, 'the account kept its count');
    t.same(th.check('alice', '198.51.100.7'), { allowed: true }, 'her address is known now');
  });

  t.test('memory is bounded', async (t) => {
    const th = new LoginThrottle({ maxEntries: 100, now: clock });
    for (let i = 0; i < 6; i++) th.failure('victim', '192.0.2.1');
    for (let i = 0; i < 2000; i++) {
      th.failure(`flood${i}`, addr(i));
      th.success(`flood${i}`, addr(i + 1));
    }
    const sizes = th.sizes;
    t.ok(
      Object.values(sizes).every((n) => n <= 100),
      `every table at most 100 (${JSON.stringify(sizes)})`,
    );
    t.equal(th.check('victim', '192.0.2.99').allowed, false, 'an account that must wait is not the first evicted');

    const big = new LoginThrottle({ now: clock });
    for (let i = 0; i < 20_050; i++) big.failure(`user${i}`, addr(i));
    t.ok(
      Object.values(big.sizes).every((n) => n <= 20_000),
      'default cap of 20 000 per table',
    );
    const one = new LoginThrottle({ knownPerAccount: 2, now: clock });
    for (let i = 0; i < 10; i++) one.success('alice', addr(i));
    for (let i = 0; i < 6; i++) one.failure('alice', net(i));
    t.same(one.check('alice', addr(9)), { allowed: true }, 'the latest sources stay known');
    t.equal(one.check('alice', addr(0)).allowed, false, 'the oldest are forgotten');
  });
});

/** Signs in as `username` at the provider from `from` (X-Forwarded-For, via the trusted proxy 127.0.0.1). */
async function attempt(s: IdpServer, username: string, password: string, from?: string) {
  return new IdpBrowser(s).login(username, password, from);
}

t.test('over HTTPS, behind a trusted proxy', async (t) => {
  let now = Date.now();
  const s = await startIdpServer(t, { now: () => now, limits: 'trustedProxies: [127.0.0.1]' });
  await s.addUser('alice', 'alice password 1');
  await s.addUser('bob', 'bob password 1');
  await s.addUser('carol', 'carol password 1');

  await t.test('guesses at one account from many networks are slowed; the user is not locked out', async (t) => {
    for (let i = 0; i < 5; i++)
      t.equal((await attempt(s, 'alice', 'wrong', `203.0.${i}.1`)).status, 401, `guess ${i + 1}`);
    const slowed = await attempt(s, 'alice', 'wrong', '203.0.77.1');
    t.equal(slowed.status, 429, 'the sixth, from yet another network, must wait');
    t.equal(slowed.headers['retry-after'], '1');
    t.match(slowed.headers['content-type'], /text\/html/);
    t.match(slowed.body, /<form/, 'the page still lets the user try again');
    const rightButEarly = await attempt(s, 'alice', 'alice password 1', '198.51.100.50');
    t.equal(rightButEarly.status, 429, 'the wait holds even for the right password from an unknown address');
    now += 1000;
    const user = new IdpBrowser(s);
    const ok = await user.login('alice', 'alice password 1', '198.51.100.50');
    t.equal(ok.status, 303, 'one second later the real user signs in: no 15-minute lock');
    t.match((await user.toCallback(ok)).searchParams.get('code'), /./);
  });

  await t.test('a stranger cannot keep the real user out of her usual address', async (t) => {
    // Twelve wrong passwords from twelve addresses, each as soon as the wait allows.
    for (let i = 0; i < 12; i++) {
      let r = await attempt(s, 'alice', 'wrong', `192.0.2.${i + 1}`);
      if (r.status === 429) {
        const wait = Number(r.headers['retry-after']);
        t.ok(wait >= 1 && wait <= MAX_WAIT_S, `wait ${wait} s, never more than ${MAX_WAIT_S}`);
        now += wait * 1000;
        r = await attempt(s, 'alice', 'wrong', `192.0.2.${i + 1}`);
      }
      t.equal(r.status, 401, `guess ${i + 1} evaluated`);
    }
    const fromNew = await attempt(s, 'alice', 'alice password 1', '198.18.0.1');
    t.equal(fromNew.status, 429, 'from an address she never used she waits (a stranger can do that much)');
    t.ok(Number(fromNew.headers['retry-after']) <= MAX_WAIT_S);
    const fromKnown = await attempt(s, 'alice', 'alice password 1', '198.51.100.50');
    t.equal(fromKnown.status, 303, 'from the address she signed in from: in at once');
    now += Number(fromNew.headers['retry-after'] ?? NaN) * 1000;
    if (Number.isNaN(now)) throw new Error('no Retry-After');
    t.equal(
      (await attempt(s, 'alice', 'alice password 1', '198.18.0.1')).status,
      303,
      'and from the new one after the wait',
    );
  });

  await t.test(
    'spraying one password over many names from one address is slowed; the X-Forwarded-For client is counted, not the proxy',
    async (t) => {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) statuses.push((await attempt(s, `user${i}`, 'Summer2024!', '100.64.0.1')).status);
      t.same([...new Set(statuses)], [401]);
      const next = await attempt(s, 'bob', 'Summer2024!', '100.64.0.1');
      t.equal(next.status, 429, 'the sprayer must wait');
      t.equal(next.headers['retry-after'], '1');
      t.equal(
        (await attempt(s, 'bob', 'bob password 1', '100.65.0.1')).status,
        303,
        'another client behind the same proxy is not slowed',
      );
    },
  );

  await t.test('the answer is the same whether or not the user exists', async (t) => {
    for (let i = 0; i < 6; i++) {
      await attempt(s, 'carol', 'wrong', `10.${i}.0.1`);
      await attempt(s, 'nobody', 'wrong', `10.${i}.0.1`);
    }
    const [real, ghost] = [await attempt(s, 'carol', 'x', '10.99.0.1'), await attempt(s, 'nobody', 'x', '10.99.0.1')];
    t.equal(real.status, 429);
    t.equal(ghost.status, real.status);
    t.equal(ghost.headers['retry-after'], real.headers['retry-after']);
    // Only the interaction id and the name typed in may differ.
    const strip = (body: string) =>
      body.replace(/\/interaction\/[\w-]+/g, '').replace(/(id="username"[^>]*value=")[^"]*"/, '$1"');
    t.equal(strip(ghost.body), strip(real.body), 'same page');
    const [wrong, unknown] = [
      await attempt(s, 'bob', 'wrong', '10.200.0.1'),
      await attempt(s, 'nobody2', 'wrong', '10.200.0.1'),
    ];
    t.equal(wrong.status, 401);
    t.equal(unknown.status, 401);
    t.equal(strip(unknown.body), strip(wrong.body), 'same refusal for a wrong password and an unknown name');
  });

  await t.test('spellings of one name count as one account', async (t) => {
    await s.addUser('dave', 'dave password 1');
    const spellings = ['dave', 'DAVE', ' Dave', 'dave ', 'DaVe'];
    for (const [i, name] of spellings.entries())
      t.equal((await attempt(s, name, 'wrong', `172.16.${i}.1`)).status, 401);
    t.equal((await attempt(s, 'dave', 'dave password 1', '172.16.99.1')).status, 429);
  });

  await t.test("a forged X-Forwarded-For entry left of the proxy's own is not the client", async (t) => {
    for (let i = 0; i < 20; i++) await attempt(s, `erin${i}`, 'wrong', `${i}.${i}.${i}.${i}, 100.80.0.1`);
    t.equal(
      (await attempt(s, 'erin-x', 'wrong', '9.9.9.9, 100.80.0.1')).status,
      429,
      'the rightmost untrusted entry is the client',
    );
  });
});

t.test('over HTTPS, no trusted proxy: X-Forwarded-For is ignored, the socket address counts', async (t) => {
  const s = await startIdpServer(t, { now: () => 1_700_000_000_000 });
  for (let i = 0; i < 20; i++) t.equal((await attempt(s, `user${i}`, 'wrong', `203.0.${i}.1`)).status, 401);
  t.equal(
    (await attempt(s, 'user99', 'wrong', '198.51.100.1')).status,
    429,
    'a forged X-Forwarded-For does not escape the throttle',
  );
  const neighbour = await new IdpBrowser(s, s.clientFrom('127.0.0.2')).login('user99', 'wrong');
  t.equal(neighbour.status, 401, 'another socket address is counted on its own');
});
