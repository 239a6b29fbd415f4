// Abuse limits as units: the token bucket on an injected clock, which address
// is the client behind trusted proxies, the per-address connection cap on real
// sockets (plain TCP and TLS), and validation of the `limits:` config section.
import t, { type Test } from 'tap';
import {
  connect as netConnect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { once } from 'node:events';
import { LIMITS_DEFAULTS, buildLimits, parseBodyLimit, parseSize } from '../src/config/limits-config.js';
import { Validation } from '../src/config/schema.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { ConnectionCap, RateLimiter, TrustedProxies } from '../src/relay/edge/limits.js';
import { parseCidr } from '../src/net/address.js';
import { ensureServerCertificate } from '../src/relay/edge/server-cert.js';
import { tempDir } from './helpers/proc.js';
import { waitFor, within } from './helpers/wait.js';

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => void (now += ms), set: (ms: number) => void (now = ms) };
}

t.test('RateLimiter', async (t) => {
  t.test('a new key has the full burst, then is refused', async (t) => {
    const c = clock();
    const rl = new RateLimiter({ ratePerSec: 1, burst: 5, now: c.now });
    for (let i = 0; i < 5; i++) t.same(rl.take('a'), { ok: true }, `request ${i + 1} of the burst`);
    t.same(rl.take('a'), { ok: false, retryAfterS: 1 }, 'the 6th at the same instant is refused');
    t.same(rl.take('b'), { ok: true }, 'another key has its own bucket');
  });

  t.test('tokens come back at the configured rate, never above the burst', async (t) => {
    const c = clock();
    const rl = new RateLimiter({ ratePerSec: 10, burst: 10, now: c.now });
    for (let i = 0; i < 10; i++) rl.take('k');
    t.equal(rl.take('k').ok, false, 'drained');
    c.advance(99);
    t.equal(rl.take('k').ok, false, '99 ms at 10/s is not yet a token');
    c.advance(1);
    t.equal(rl.take('k').ok, true, '100 ms at 10/s is one token');
    t.equal(rl.take('k').ok, false, 'and only one');
    c.advance(60_000);
    let granted = 0;
    while (rl.take('k').ok) granted++;
    t.equal(granted, 10, 'a long quiet period refills to the burst and no further');
    // A refused request takes nothing: the next token arrives on schedule.
    for (let i = 0; i < 5; i++) rl.take('k');
    c.advance(100);
    t.equal(rl.take('k').ok, true, 'refusals did not push the next token back');
  });

  t.test('retryAfterS: whole seconds, rounded up, at least 1', async (t) => {
    const c = clock();
    const slow = new RateLimiter({ ratePerSec: 0.5, burst: 1, now: c.now });
    t.equal(slow.take('a').ok, true);
    t.same(slow.take('a'), { ok: false, retryAfterS: 2 }, 'one token per 2 s: wait 2 s');
    c.advance(1500);
    t.same(slow.take('a'), { ok: false, retryAfterS: 1 }, '0.5 s left rounds up to 1');
    c.advance(500);
    t.same(slow.take('a'), { ok: true }, 'granted exactly when retryAfter said');

    const fast = new RateLimiter({ ratePerSec: 50, burst: 1, now: c.now });
    fast.take('a');
    t.same(fast.take('a'), { ok: false, retryAfterS: 1 }, '20 ms is reported as 1 s, never 0');

    const third = new RateLimiter({ ratePerSec: 3, burst: 3, now: c.now });
    for (let i = 0; i < 3; i++) third.take('a');
    t.same(third.take('a', 3), { ok: false, retryAfterS: 1 }, '3 tokens at 3/s: exactly 1 s');
    c.advance(1);
    t.same(third.take('a', 3), { ok: false, retryAfterS: 1 }, 'just under 1 s rounds up to 1');

    const costly = new RateLimiter({ ratePerSec: 1, burst: 5, now: c.now });
    for (let i = 0; i < 5; i++) costly.take('a');
    t.same(costly.take('a', 3), { ok: false, retryAfterS: 3 }, 'cost 3 at 1/s from empty: 3 s');
    c.advance(2500);
    t.same(costly.take('a', 3), { ok: false, retryAfterS: 1 }, '0.5 token missing: 1 s');
    t.same(costly.take('a', 2), { ok: true }, 'a smaller cost fits now');
  });

  t.test('a clock that steps back neither refills nor throws', async (t) => {
    const c = clock();
    const rl = new RateLimiter({ ratePerSec: 1, burst: 1, now: c.now });
    rl.take('a');
    c.advance(-10_000);
    t.equal(rl.take('a').ok, false);
    c.advance(1000);
    t.equal(rl.take('a').ok, true, 'time counts again from the stepped-back reading');
  });

  t.test('maxKeys: the least recently used key is forgotten first', async (t) => {
    const c = clock();
    const rl = new RateLimiter({ ratePerSec: 1, burst: 1, now: c.now, maxKeys: 3 });
    for (const k of ['a', 'b', 'c']) t.equal(rl.take(k).ok, true, `${k} drained`);
    t.equal(rl.take('a').ok, false, 'a used again (refused), now the most recent');
    t.equal(rl.take('d').ok, true, 'd is new');
    t.equal(rl.size, 3, 'still 3 keys');
    t.equal(rl.take('b').ok, true, 'b (least recently used) was forgotten and starts full again');
    t.equal(rl.take('c').ok, true, 'bringing b back forgot c, then the least recently used');
    t.equal(rl.take('d').ok, false, 'd (used after a) is still remembered: drained');
    t.equal(rl.take('b').ok, false, 'b is remembered again: drained');
    t.equal(rl.size, 3);
  });

  t.test('memory stays bounded under many distinct keys', async (t) => {
    const rl = new RateLimiter({ ratePerSec: 1, burst: 1, now: () => 0 });
    // CPU time, not wall time: a busy machine (the suite runs files in parallel) must not fail it.
    const started = process.cpuUsage();
    for (let i = 0; i < 250_000; i++) rl.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    t.equal(rl.size, 100_000, 'the default cap of 100 000 keys holds');
    const used = process.cpuUsage(started);
    const ms = Math.round((used.user + used.system) / 1000);
    t.ok(ms < 2000, `constant work per call (${ms} ms of CPU for 250 000 calls)`);
  });

  t.test('invalid options and costs are programming errors', async (t) => {
    t.throws(() => new RateLimiter({ ratePerSec: 0, burst: 1 }), RangeError);
    t.throws(() => new RateLimiter({ ratePerSec: Number.NaN, burst: 1 }), RangeError);
    t.throws(() => new RateLimiter({ ratePerSec: 1, burst: 0 }), RangeError);
    t.throws(() => new RateLimiter({ ratePerSec: 1, burst: 1, maxKeys: 0 }), RangeError);
    const rl = new RateLimiter({ ratePerSec: 1, burst: 2 });
    t.throws(() => rl.take('a', 3), RangeError, 'a cost above the burst could never be granted');
    t.throws(() => rl.take('a', 0), RangeError);
    t.throws(() => rl.take('a', -1), RangeError);
  });
});

t.test('TrustedProxies', async (t) => {
  const tp = new TrustedProxies(['10.0.0.0/8', '2001:db8::/32', '192.0.2.10']);

  type Row = [peer: string, xff: string | undefined, client: string, trustedChain: string | undefined, msg?: string];
  const rows = (t: Test, proxies: TrustedProxies, cases: Row[]) => {
    for (const [peer, xff, client, trustedChain, msg] of cases)
      t.same(proxies.clientAddress(peer, xff), { client, trustedChain }, ...(msg ? [msg] : []));
  };

  t.test('an untrusted peer cannot name the client', async (t) => {
    rows(t, tp, [
      ['203.0.113.9', '198.51.100.7', '203.0.113.9', undefined],
      ['203.0.113.9', undefined, '203.0.113.9', undefined],
      ['192.0.2.11', '198.51.100.7', '192.0.2.11', undefined, 'a single address trusts only itself'],
    ]);
    rows(t, new TrustedProxies([]), [
      ['10.0.0.1', '198.51.100.7', '10.0.0.1', undefined, 'no trusted proxies: XFF never believed'],
    ]);
  });

  t.test('a trusted peer: the right-most untrusted entry is the client', async (t) => {
    rows(t, tp, [
      ['10.0.0.1', '198.51.100.7', '198.51.100.7', '198.51.100.7'],
      ['192.0.2.10', '198.51.100.7', '198.51.100.7', '198.51.100.7'],
      [
        '10.0.0.1',
        '6.6.6.6, 1.1.1.1, 198.51.100.7',
        '198.51.100.7',
        '198.51.100.7',
        'entries the client wrote itself (left of it) are dropped',
      ],
      ['10.0.0.1', '  198.51.100.7  ,', '198.51.100.7', '198.51.100.7', 'spaces and empty elements'],
      ['::ffff:10.0.0.1', '::ffff:198.51.100.7', '198.51.100.7', '198.51.100.7', 'IPv4-mapped on both sides'],
      ['10.0.0.1', '198.51.100.7:51234', '198.51.100.7', '198.51.100.7', 'IPv4 with a port'],
      ['10.0.0.1', '[2001:db9::7]:443', '2001:db9::7', '2001:db9::7', 'bracketed IPv6 with a port'],
      ['2001:db8::1', '2001:db9::7', '2001:db9::7', '2001:db9::7', 'IPv6 peer and client'],
    ]);
  });

  t.test('several trusted hops are skipped', async (t) => {
    rows(t, tp, [
      [
        '10.0.0.1',
        '6.6.6.6, 198.51.100.7, 2001:db8::5, 10.1.1.1',
        '198.51.100.7',
        '198.51.100.7, 2001:db8::5, 10.1.1.1',
      ],
      ['10.0.0.1', '10.9.9.9, 10.1.1.1', '10.9.9.9', '10.9.9.9, 10.1.1.1', 'every hop trusted: the furthest one'],
      [
        '10.0.0.1',
        '198.51.100.7, 10.1.1.1, 203.0.113.5, 10.2.2.2',
        '203.0.113.5',
        '203.0.113.5, 10.2.2.2',
        'an untrusted hop between trusted ones is where belief stops',
      ],
    ]);
  });

  t.test('garbage falls back to the socket address', async (t) => {
    const peer = { client: '10.0.0.1', trustedChain: undefined };
    for (const xff of [
      'not-an-ip',
      'unknown',
      '1.2.3.4 5.6.7.8',
      '999.1.1.1',
      '1.2.3',
      'fe80::1%eth0',
      '198.51.100.7, garbage',
      '198.51.100.7, 10.1.1.1;x',
      '',
      ' , ',
      '"198.51.100.7"',
      '[198.51.100.7',
      '01.2.3.4',
      '1.2.3.4:99999',
      'for=198.51.100.7',
      '\u0000',
    ]) {
      t.same(tp.clientAddress('10.0.0.1', xff), peer, JSON.stringify(xff));
    }
    t.same(
      tp.clientAddress('10.0.0.1', 'garbage, 198.51.100.7'),
      { client: '198.51.100.7', trustedChain: '198.51.100.7' },
      'garbage the client wrote left of itself is dropped, not a reason to lose its address',
    );
  });

  t.test('ranges are validated', async (t) => {
    t.throws(() => new TrustedProxies(['10.0.0.0/33']), RangeError);
    t.throws(() => new TrustedProxies(['proxy.example.com']), RangeError);
    t.same(
      parseCidr('::ffff:10.0.0.0/104'),
      { addr: '10.0.0.0', bits: 8, family: 'ipv4' },
      'IPv4-mapped range taken as IPv4',
    );
    t.same(parseCidr('2001:db8::1'), { addr: '2001:db8::1', bits: 128, family: 'ipv6' });
    t.equal(parseCidr('10.0.0.0/08'), undefined, 'leading zero in the prefix length');
  });
});

/** Opens a client socket; `closed` resolves with the milliseconds from dialling to close. */
async function open(
  port: number,
  host = '127.0.0.1',
  localAddress?: string,
): Promise<{ socket: Socket; closed: Promise<number> }> {
  const startedAt = performance.now();
  const socket = netConnect({ host, port, ...(localAddress ? { localAddress } : {}) });
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now() - startedAt)));
  await once(socket, 'connect');
  return { socket, closed };
}

/** The cap's count for an address reaching n (an accepted socket is counted when the server admits it). */
const counted = (cap: ConnectionCap, address: string, n: number) =>
  waitFor(() => cap.count(address) === n, { timeoutMs: 2000, what: `${n} socket(s) counted for ${address}` });

/**
 * Whether the server admitted the socket: it greets admitted sockets (see `greet`), and
 * closes refused ones at once. Resolves on whichever comes first, not after a time.
 */
function admitted(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    socket.once('data', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
}

/** Greets each socket the cap let through (a listener added after cap.attach runs after its decision). */
function greet(server: NetServer): void {
  server.on('connection', (s: Socket) => {
    if (!s.destroyed) s.write('admitted\n');
  });
}

async function listening(server: NetServer, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as { port: number }).port;
}

t.test('ConnectionCap on a TCP server', async (t) => {
  const refused: string[] = [];
  const cap = new ConnectionCap(2, (a) => refused.push(a));
  const server = createNetServer((s) => s.on('error', () => undefined));
  cap.attach(server);
  greet(server);
  const port = await listening(server, '127.0.0.1');
  const clients: Socket[] = [];
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await new Promise((r) => server.close(r));
  });

  const a = await open(port);
  const b = await open(port);
  clients.push(a.socket, b.socket);
  t.ok(await counted(cap, '127.0.0.1', 2), 'two sockets counted');

  const c = await open(port);
  clients.push(c.socket);
  const ms = await within(c.closed, 2000, 'the third socket to be closed');
  t.ok(ms >= 0 && ms < 1000, `the third socket was closed at once (${Math.round(ms)} ms)`);
  t.equal(c.socket.bytesRead, 0, 'unanswered');
  t.same(refused, ['127.0.0.1'], 'onRefused told the address');
  t.equal(cap.count('127.0.0.1'), 2, 'the refused socket is not counted');
  t.equal(cap.count('::ffff:127.0.0.1'), 2, 'IPv4-mapped spelling counts the same address');

  a.socket.destroy();
  t.ok(await counted(cap, '127.0.0.1', 1), 'a closed socket is no longer counted');
  const d = await open(port);
  clients.push(d.socket);
  t.ok(await admitted(d.socket), 'after one closed, a new socket is accepted');
  t.ok(await counted(cap, '127.0.0.1', 2));

  const other = await open(port, '127.0.0.1', '127.0.0.2');
  clients.push(other.socket);
  t.ok(await counted(cap, '127.0.0.2', 1), 'another address has its own budget');
  t.ok(await admitted(other.socket), 'and is accepted');
  t.same(refused, ['127.0.0.1'], 'neither was refused');

  for (const s of [b.socket, d.socket, other.socket]) s.destroy();
  t.ok(
    await waitFor(() => cap.count('127.0.0.1') === 0 && cap.count('127.0.0.2') === 0, { what: 'every count at 0' }),
    'every close decrements',
  );
  t.throws(() => new ConnectionCap(0), RangeError);
});

t.test('ConnectionCap on a dual-stack listener counts IPv4-mapped peers as IPv4', async (t) => {
  const cap = new ConnectionCap(1);
  const server = createNetServer((s) => s.on('error', () => undefined));
  cap.attach(server);
  let port: number;
  try {
    port = await listening(server, '::');
  } catch (err) {
    t.pass(`skipped: no IPv6 here: ${(err as Error).message}`, { skip: true });
    return;
  }
  t.teardown(() => new Promise((r) => server.close(r)));
  const a = await open(port, '127.0.0.1');
  t.teardown(() => a.socket.destroy());
  t.ok(await counted(cap, '127.0.0.1', 1), 'the ::ffff:127.0.0.1 peer is counted as 127.0.0.1');
  const b = await open(port, '127.0.0.1');
  const ms = await within(b.closed, 2000, 'the second socket to be closed');
  t.ok(ms >= 0 && ms < 1000, 'the second one is over the cap of 1');
});

t.test('ConnectionCap on a TLS server refuses before the handshake', async (t) => {
  const dir = tempDir(t);
  const ca = await loadOrCreateCa(dir);
  const cert = await ensureServerCertificate(dir, ca, 'test', ['localhost', '127.0.0.1']);
  let handshakes = 0;
  const server = createTlsServer({ key: cert.keyPem, cert: cert.certPem }, (s) => {
    s.on('error', () => undefined);
    s.write('hello\n');
  });
  server.on('tlsClientError', () => undefined);
  server.on('secureConnection', () => handshakes++);
  const cap = new ConnectionCap(1);
  cap.attach(server);
  const port = await listening(server, '127.0.0.1');
  const tlsClient = () => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost' });
    s.on('error', () => undefined);
    return s;
  };
  const first = tlsClient();
  t.teardown(() => {
    first.destroy();
    return new Promise((r) => server.close(r));
  });
  await once(first, 'secureConnect');
  t.equal(cap.count('127.0.0.1'), 1);
  const second = tlsClient();
  let secured = false;
  second.once('secureConnect', () => (secured = true));
  await within(new Promise((r) => second.once('close', r)), 2000, 'the second connection to be closed');
  t.ok(second.destroyed, 'the second connection was closed');
  t.notOk(secured, 'without a TLS handshake');
  t.equal(handshakes, 1, 'the server completed only the first handshake');
  first.destroy();
  t.ok(await counted(cap, '127.0.0.1', 0));
  const third = tlsClient();
  t.teardown(() => third.destroy());
  await once(third, 'secureConnect');
  t.pass('accepted again once the first closed');
});

function issues(raw: unknown) {
  const v = new Validation();
  const limits = buildLimits(v, raw);
  return { limits, issues: v.issues };
}

t.test('limits config: defaults', async (t) => {
  const { limits, issues: none } = issues(undefined);
  t.same(none, []);
  t.same(limits, {
    perIp: { ratePerSec: 300, burst: 600 },
    perApp: undefined,
    connectionsPerIp: 256,
    headersTimeoutMs: 10_000,
    idleTimeoutMs: 65_000,
    requestTimeoutMs: 0,
    bodyIdleTimeoutMs: 30_000,
    maxHeaderBytes: 32_768,
    maxHeaders: 100,
    trustedProxies: [],
    drainTimeoutMs: 30_000,
  });
  t.same(issues({}).limits, LIMITS_DEFAULTS, 'an empty mapping is the defaults');
});

t.test('limits config: values as written', async (t) => {
  const { limits, issues: none } = issues({
    perIp: { ratePerSec: 0.5 },
    perApp: { ratePerSec: 1000, burst: 5000 },
    connectionsPerIp: 16,
    headersTimeout: '2s',
    idleTimeout: '5s',
    requestTimeout: '10m',
    bodyIdleTimeout: '1500ms',
    maxHeaderBytes: '16KiB',
    maxHeaders: 50,
    trustedProxies: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.10', '::1'],
    drainTimeout: '45s',
  });
  t.same(none, []);
  t.same(limits, {
    perIp: { ratePerSec: 0.5, burst: 1 },
    perApp: { ratePerSec: 1000, burst: 5000 },
    connectionsPerIp: 16,
    headersTimeoutMs: 2000,
    idleTimeoutMs: 5000,
    requestTimeoutMs: 600_000,
    bodyIdleTimeoutMs: 1500,
    maxHeaderBytes: 16_384,
    maxHeaders: 50,
    trustedProxies: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.10', '::1'],
    drainTimeoutMs: 45_000,
  });
  t.equal(issues({ perIp: false }).limits.perIp, undefined, 'perIp: false turns the limit off');
  t.same(
    issues({ perIp: { ratePerSec: 20 } }).limits.perIp,
    { ratePerSec: 20, burst: 40 },
    'burst defaults to two seconds of rate',
  );
  t.equal(issues({ requestTimeout: 0 }).limits.requestTimeoutMs, 0, 'requestTimeout: 0');
  t.equal(issues({ requestTimeout: 'none' }).limits.requestTimeoutMs, 0, 'requestTimeout: none');
  t.equal(issues({ maxHeaderBytes: 65536 }).limits.maxHeaderBytes, 65536);
  t.equal(issues({}).limits.redis, undefined, 'no redis: buckets per replica');
  for (const [written, href] of [
    ['redis://127.0.0.1:6379/0', 'redis://127.0.0.1:6379/0'],
    ['redis://redis.internal', 'redis://redis.internal'],
    ['rediss://redis.internal:6380/3', 'rediss://redis.internal:6380/3'],
    ['redis://[::1]:6379/', 'redis://[::1]:6379/'],
  ]) {
    const got = issues({ redis: written });
    t.same(got.issues, [], `${written} accepted`);
    t.equal(got.limits.redis, href);
  }
});

t.test('limits config: every bad value is refused with its key path', async (t) => {
  const cases: [string, unknown, string][] = [
    ['not a mapping', 5, 'limits'],
    ['a list', ['perIp'], 'limits'],
    ['unknown key', { perIP: { ratePerSec: 1 } }, 'limits.perIP'],
    ['perIp a word', { perIp: 'fast' }, 'limits.perIp'],
    ['perIp true', { perIp: true }, 'limits.perIp'],
    ['perIp unknown key', { perIp: { ratePerSec: 5, rate: 1 } }, 'limits.perIp.rate'],
    ['rate zero', { perIp: { ratePerSec: 0 } }, 'limits.perIp.ratePerSec'],
    ['rate negative', { perIp: { ratePerSec: -1 } }, 'limits.perIp.ratePerSec'],
    ['rate as a string', { perIp: { ratePerSec: '50' } }, 'limits.perIp.ratePerSec'],
    ['rate missing', { perApp: { burst: 5 } }, 'limits.perApp.ratePerSec'],
    ['rate infinite', { perApp: { ratePerSec: Infinity } }, 'limits.perApp.ratePerSec'],
    ['burst zero', { perIp: { ratePerSec: 5, burst: 0 } }, 'limits.perIp.burst'],
    ['burst fractional', { perApp: { ratePerSec: 5, burst: 1.5 } }, 'limits.perApp.burst'],
    ['connections zero', { connectionsPerIp: 0 }, 'limits.connectionsPerIp'],
    ['connections fractional', { connectionsPerIp: 1.5 }, 'limits.connectionsPerIp'],
    ['connections as a string', { connectionsPerIp: '10' }, 'limits.connectionsPerIp'],
    ['headersTimeout without unit', { headersTimeout: '10' }, 'limits.headersTimeout'],
    ['headersTimeout a number', { headersTimeout: 10 }, 'limits.headersTimeout'],
    ['headersTimeout zero', { headersTimeout: '0s' }, 'limits.headersTimeout'],
    ['headersTimeout too short', { headersTimeout: '50ms' }, 'limits.headersTimeout'],
    ['headersTimeout above requestTimeout', { headersTimeout: '30s', requestTimeout: '10s' }, 'limits.headersTimeout'],
    ['idleTimeout a word', { idleTimeout: 'forever' }, 'limits.idleTimeout'],
    ['requestTimeout negative', { requestTimeout: '-1s' }, 'limits.requestTimeout'],
    ['requestTimeout never', { requestTimeout: 'never' }, 'limits.requestTimeout'],
    ['bodyIdleTimeout empty', { bodyIdleTimeout: '' }, 'limits.bodyIdleTimeout'],
    ['maxHeaderBytes too small', { maxHeaderBytes: 100 }, 'limits.maxHeaderBytes'],
    ['maxHeaderBytes too large', { maxHeaderBytes: '2MiB' }, 'limits.maxHeaderBytes'],
    ['maxHeaderBytes a word', { maxHeaderBytes: 'big' }, 'limits.maxHeaderBytes'],
    ['maxHeaders zero', { maxHeaders: 0 }, 'limits.maxHeaders'],
    ['maxHeaders huge', { maxHeaders: 20_000 }, 'limits.maxHeaders'],
    ['trustedProxies not a list', { trustedProxies: '10.0.0.0/8' }, 'limits.trustedProxies'],
    ['trustedProxies empty string', { trustedProxies: [''] }, 'limits.trustedProxies'],
    ['prefix too long', { trustedProxies: ['10.0.0.0/33'] }, 'limits.trustedProxies[0]'],
    ['IPv6 prefix too long', { trustedProxies: ['::1/129'] }, 'limits.trustedProxies[0]'],
    ['a host name', { trustedProxies: ['10.0.0.0/8', 'lb.example.com'] }, 'limits.trustedProxies[1]'],
    ['no prefix after slash', { trustedProxies: ['1.2.3.4/'] }, 'limits.trustedProxies[0]'],
    ['bad octet', { trustedProxies: ['10.0.0.256/32'] }, 'limits.trustedProxies[0]'],
    ['zone id', { trustedProxies: ['fe80::1%eth0/64'] }, 'limits.trustedProxies[0]'],
    ['redis not a URL', { redis: '127.0.0.1:6379' }, 'limits.redis'],
    ['redis over http', { redis: 'http://127.0.0.1:6379' }, 'limits.redis'],
    ['redis without a host', { redis: 'redis:///0' }, 'limits.redis'],
    ['redis with a password', { redis: 'redis://:secret@127.0.0.1:6379/0' }, 'limits.redis'],
    ['redis with a user', { redis: 'redis://proxy:secret@127.0.0.1:6379' }, 'limits.redis'],
    ['redis with a query', { redis: 'redis://127.0.0.1:6379/0?db=1' }, 'limits.redis'],
    ['redis with a path', { redis: 'redis://127.0.0.1:6379/limits' }, 'limits.redis'],
    ['redis with two databases', { redis: 'redis://127.0.0.1:6379/0/1' }, 'limits.redis'],
    ['redis a list', { redis: ['redis://127.0.0.1'] }, 'limits.redis'],
    ['redis true', { redis: true }, 'limits.redis'],
  ];
  for (const [name, raw, path] of cases) {
    const got = issues(raw).issues;
    t.equal(got.length, 1, `${name}: one issue (${JSON.stringify(got)})`);
    t.equal(got[0]?.path, path, `${name}: refused at ${path}`);
    t.ok(got[0]?.expected, `${name}: says what is expected`);
  }
  const several = issues({ perIp: { ratePerSec: 0 }, maxHeaders: -1, trustedProxies: ['x'] }).issues.map((i) => i.path);
  t.same(
    several,
    ['limits.perIp.ratePerSec', 'limits.maxHeaders', 'limits.trustedProxies[0]'],
    'every problem reported at once',
  );
  const found = issues({ connectionsPerIp: 'many' }).issues[0]!;
  t.equal(found.found, '"many"', 'found value quoted');
});

t.test('sizes and per-app maxBodyBytes', async (t) => {
  t.equal(parseSize('512'), 512);
  t.equal(parseSize('10MB'), 10_000_000);
  t.equal(parseSize('512KiB'), 524_288);
  t.equal(parseSize('1.5GiB'), 1.5 * 1024 ** 3);
  t.equal(parseSize('2 KB'), 2000);
  const ok: [unknown, number | undefined][] = [
    [undefined, undefined],
    [1, 1],
    [1048576, 1048576],
    ['10MB', 10_000_000],
    ['512KiB', 524_288],
    ['1GiB', 1024 ** 3],
    ['100B', 100],
  ];
  for (const [raw, want] of ok) {
    const v = new Validation();
    t.equal(parseBodyLimit(v, 'apps[0].maxBodyBytes', raw), want, JSON.stringify(raw));
    t.same(v.issues, []);
  }
  for (const raw of [
    0,
    -1,
    1.5,
    '0',
    '10mb',
    '10 megabytes',
    'lots',
    '',
    '1e6',
    '0.5B',
    '-5MB',
    true,
    null,
    [1],
    { n: 1 },
    Number.MAX_SAFE_INTEGER + 2,
  ]) {
    const v = new Validation();
    t.equal(parseBodyLimit(v, 'apps[0].maxBodyBytes', raw), undefined, `${JSON.stringify(raw)} refused`);
    t.equal(v.issues[0]?.path, 'apps[0].maxBodyBytes', `${JSON.stringify(raw)}: with its key path`);
  }
});
