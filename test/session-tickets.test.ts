// The ticket-key schedule (src/relay/session-tickets.ts) on a real SQLite store and a manual
// clock: one random key per period, made once and shared; the next period's key loaded
// ahead so the switch at the boundary needs no store; past keys deleted after a short grace;
// a store that fails gives a key of the replica's own (never an old key past its period)
// until it answers again. And the configuration key that turns it on.
import t, { type Test } from 'tap';
import { openSqliteStore, type Store } from '../src/store/index.js';
import type { SecretRepo } from '../src/store/types.js';
import { generateMasterKey, parseMasterKey } from '../src/crypto/master-key.js';
import { isSealed } from '../src/crypto/secret-wrap.js';
import { SessionTickets, TICKET_SECRET_PREFIX } from '../src/relay/session-tickets.js';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { ProxyctlError } from '../src/errors.js';
import { ManualClock } from './helpers/clock.js';
import { capturingLogger } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const P = 10 * 60_000;

function storeFor(t: Test): Store {
  const store = openSqliteStore(tempDir(t, 'proxyctl-tickets-'));
  t.teardown(() => store.close());
  return store;
}

function replica(
  t: Test,
  store: Pick<Store, 'secrets'>,
  clock: ManualClock,
  wrap = parseMasterKey(generateMasterKey()),
) {
  const installed: Buffer[] = [];
  const log = capturingLogger();
  const tickets = new SessionTickets({
    store,
    wrap,
    periodMs: P,
    clock,
    log: log.log,
    install: (key) => installed.push(Buffer.from(key)),
  });
  t.teardown(() => tickets.close());
  return { tickets, installed, log };
}

/** The store's secrets, failing (failure injection) while `down` is set. */
function switchable(store: Store): Pick<Store, 'secrets'> & { down: boolean } {
  const s = store.secrets;
  const up = <T>(f: () => Promise<T>): Promise<T> =>
    sw.down ? Promise.reject(new ProxyctlError('ERR_STORE_UNAVAILABLE', 'connection refused')) : f();
  const secrets: SecretRepo = {
    get: (n) => up(() => s.get(n)),
    putIfAbsent: (n, v) => up(() => s.putIfAbsent(n, v)),
    put: (n, v, a) => up(() => s.put(n, v, a)),
    list: () => up(() => s.list()),
    remove: (n) => up(() => s.remove(n)),
  };
  const sw = { secrets, down: false };
  return sw;
}

const names = async (store: Store) =>
  (await store.secrets.list())
    .map((s) => s.name)
    .filter((n) => n.startsWith(TICKET_SECRET_PREFIX))
    .sort();

t.test('replicas share one key per period and switch at the boundary from memory', async (t) => {
  const store = storeFor(t);
  const start = 1_000_000 * P + 5_000;
  const clock = new ManualClock(start);
  const wrap = parseMasterKey(generateMasterKey());
  const a = replica(t, store, clock, wrap);
  const b = replica(t, store, clock, wrap);
  await Promise.all([a.tickets.start(), b.tickets.start()]);
  t.equal(a.installed.length, 1, 'a key is in force on a before it listens');
  t.equal(a.installed[0]!.length, 48, '48 bytes, as setTicketKeys takes');
  t.same(b.installed[0], a.installed[0], 'b put the same key in force');
  t.same(a.tickets.current, { period: 1_000_000, shared: true });
  t.same(await names(store), [`${TICKET_SECRET_PREFIX}${P}:1000000`, `${TICKET_SECRET_PREFIX}${P}:1000001`]);
  t.ok(
    (await store.secrets.list()).filter((s) => s.name.startsWith(TICKET_SECRET_PREFIX)).every((s) => isSealed(s.value)),
    'wrapped',
  );
  const next = await store.secrets.get(`${TICKET_SECRET_PREFIX}${P}:1000001`);

  // The store goes away just before the boundary: the switch does not need it.
  const flaky = switchable(store);
  const c = replica(t, flaky, clock, wrap);
  await c.tickets.start();
  flaky.down = true;
  await clock.advance(P - 5_000);
  t.equal(a.installed.length, 2, 'a switched at the boundary');
  t.same(c.installed.at(-1), a.installed[1], 'c switched to the same key with its store down');
  t.same(c.tickets.current, { period: 1_000_001, shared: true });
  t.ok(next && isSealed(next), 'the key had been published ahead');
  flaky.down = false;

  // Past the grace (a tenth of the period, at most a minute), the old key leaves the store.
  await clock.advance(60_000);
  await waitFor(async () => !(await names(store)).includes(`${TICKET_SECRET_PREFIX}${P}:1000000`));
  t.same(await names(store), [`${TICKET_SECRET_PREFIX}${P}:1000001`, `${TICKET_SECRET_PREFIX}${P}:1000002`]);
});

t.test('a store that does not answer: a key of its own, never the old one, then the shared one', async (t) => {
  const store = storeFor(t);
  const clock = new ManualClock(2_000_000 * P + 1_000);
  const wrap = parseMasterKey(generateMasterKey());
  const failing = switchable(store);
  failing.down = true;
  const r = replica(t, failing, clock, wrap);
  await r.tickets.start();
  t.equal(r.installed.length, 1, 'a key is in force all the same');
  t.same(r.tickets.current, { period: 2_000_000, shared: false }, 'one of its own');
  t.ok(
    r.log.lines.some((l) => l.msg === 'TLS ticket key not readable from the store; using a key of this replica'),
    'and says so',
  );
  failing.down = false;
  await clock.advance(30_000);
  t.same(r.tickets.current, { period: 2_000_000, shared: true }, 'retried within 30 s: the shared key');
  const shared = replica(t, store, clock, wrap);
  await shared.tickets.start();
  t.same(r.installed.at(-1), shared.installed[0], 'the same key as a replica that never lost the store');
  t.notSame(r.installed[0], r.installed.at(-1));
});

t.test('a stored key that is not a ticket key is not used', async (t) => {
  const store = storeFor(t);
  const clock = new ManualClock(3_000_000 * P + 1_000);
  // Hostile or damaged store rows: too short, and sealed with another master key.
  await store.secrets.putIfAbsent(`${TICKET_SECRET_PREFIX}${P}:3000000`, Buffer.alloc(16).toString('base64'));
  const other = parseMasterKey(generateMasterKey());
  const name = `${TICKET_SECRET_PREFIX}${P}:3000001`;
  await store.secrets.putIfAbsent(name, other.wrap(Buffer.alloc(48).toString('base64'), `secret:${name}`));
  const r = replica(t, store, clock);
  await r.tickets.start();
  t.same(r.tickets.current, { period: 3_000_000, shared: false }, 'a key of its own instead');
  t.notSame(r.installed[0], Buffer.alloc(48), 'a random one');
  t.equal(r.installed[0]!.length, 48);
  const warned = r.log.lines.filter((l) => l.msg === 'cannot load a TLS ticket key from the store');
  t.match(
    warned,
    [
      { period: 3_000_000, err: /16 bytes/ },
      { period: 3_000_001, err: /master key/ },
    ],
    'each named',
  );
  await clock.advance(P);
  t.same(r.tickets.current, { period: 3_000_001, shared: false }, 'the next period: again its own, a new one');
  t.notSame(r.installed.at(-1), r.installed[0]);
});

t.test('public.ticketRotation', async (t) => {
  const rotation = (v: string) =>
    parseRelayConfig(`public: { ticketRotation: ${v} }\n`, 'relay.yaml').public.ticketRotationMs;
  t.equal(parseRelayConfig('', 'relay.yaml').public.ticketRotationMs, 12 * 3_600_000, '12h by default');
  t.equal(rotation('30m'), 30 * 60_000);
  t.equal(rotation('off'), undefined, 'off: no tickets');
  t.equal(rotation('false'), undefined, 'false: the same');
  for (const bad of ['1m', '8d', '0', 'soon', '[]', '12']) {
    t.throws(() => rotation(bad), { code: 'ERR_CONFIG_INVALID' }, `${bad} is refused`);
    try {
      rotation(bad);
    } catch (err) {
      t.match((err as ProxyctlError).details, {
        issues: [{ path: 'public.ticketRotation', expected: /5m to 7d.*off/ }],
      });
    }
  }
});
