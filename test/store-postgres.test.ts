// What only the PostgreSQL store has (the shared contract runs in store.test.ts):
// migrations under an advisory lock, concurrent replicas, the LISTEN/NOTIFY change
// feed and its reconnection, and outages, made by cutting a TCP proxy that stands
// between a store and the real server.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import pg from 'pg';
import { openPostgresStore, storeExists, type Store, type StoreTopic } from '../src/store/index.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../src/store/postgres/migrations.js';
import type { PgSessionRepo } from '../src/store/postgres/sessions.js';
import { waitFor } from './helpers/wait.js';
import { PG_URL, freshSchema } from './helpers/postgres.js';

const PASSWORD = 's3cret-pw';
const HOUR = 3600_000;

const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 });
admin.on('error', () => undefined);
const up = await admin.connect().then(
  () => true,
  (err: unknown) => {
    const where = new URL(PG_URL);
    where.password = '';
    t.fail(
      `PostgreSQL is not reachable at ${where.href} (${(err as Error).message}); start it or set PROXYCTL_TEST_PG_URL`,
    );
    return false;
  },
);
if (up) t.teardown(() => admin.end());

/** A test that needs the server: without one, the failure above says why and nothing else runs. */
function pgTest(name: string, fn: (t: Test) => Promise<void>): void {
  if (up) void t.test(name, fn);
}

/** A schema name nobody uses, dropped with everything in it when the test ends. */
const schemaFor = (t: Test): string => freshSchema(t, admin);

async function opened(t: Test, url: string, schema: string): Promise<Store> {
  const s = await openPostgresStore({ url, schema });
  t.teardown(() => s.close());
  return s;
}

/** PG_URL with another port, a password (never to appear in a message) and more query parameters. */
function urlWith(port: number | undefined, params: Record<string, string> = {}): string {
  const u = new URL(PG_URL);
  if (port !== undefined) {
    u.hostname = '127.0.0.1';
    u.port = String(port);
  }
  u.password = PASSWORD;
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

/** Records what a store's change feed reports. */
function watch(s: Store): { seen: (ReadonlySet<StoreTopic> | 'all')[]; saw: (topic: StoreTopic | 'all') => boolean } {
  const seen: (ReadonlySet<StoreTopic> | 'all')[] = [];
  s.onChange((topics) => seen.push(topics));
  return {
    seen,
    saw: (topic) => seen.some((x) => (topic === 'all' ? x === 'all' : x === 'all' || x.has(topic))),
  };
}

/** A TCP proxy in front of PostgreSQL that a test can cut (every connection dropped, the port closed) and restore. */
async function tcpProxy(t: Test): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void> }> {
  const target = new URL(PG_URL);
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const start = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(Number(target.port || 5432), target.hostname);
        for (const sock of [client, upstream]) {
          sockets.add(sock);
          sock.on('error', () => undefined);
          sock.on('close', () => {
            sockets.delete(sock);
            client.destroy();
            upstream.destroy();
          });
        }
        client.pipe(upstream).pipe(client);
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as AddressInfo).port;
        server = s;
        resolve();
      });
    });
  const cut = async () => {
    const s = server;
    server = undefined;
    for (const sock of sockets) sock.destroy();
    if (s) await new Promise((resolve) => s.close(resolve));
  };
  await start();
  t.teardown(cut);
  return { port, cut, restore: start };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

const connector = (id: string, name: string, serial: string) => ({
  id,
  name,
  group: 'default',
  actor: 'test',
  serial,
  issuedAt: 1_000,
  notAfter: Date.now() + 24 * HOUR,
});

const unavailable = { code: 'ERR_STORE_UNAVAILABLE', status: 503, message: /the store \(PostgreSQL\) is unreachable/ };

pgTest('replicas starting together on a new schema migrate it once', async (t) => {
  const schema = schemaFor(t);
  t.equal(await storeExists({ kind: 'postgres', url: PG_URL, schema }), false, 'no store before the first open');
  const stores = await Promise.all(Array.from({ length: 5 }, () => opened(t, PG_URL, schema)));
  t.equal(stores.length, 5, 'all five open');
  const { rows } = await admin.query<{ version: number; n: string }>(
    `SELECT version, count(*) AS n FROM ${schema}.schema_migrations GROUP BY version ORDER BY version`,
  );
  t.same(
    rows.map((r) => [r.version, Number(r.n)]),
    Array.from({ length: SCHEMA_VERSION }, (_, i) => [i + 1, 1]),
    'each migration applied once',
  );
  t.equal(await storeExists({ kind: 'postgres', url: PG_URL, schema }), true);
  const values = await Promise.all(stores.map((s, i) => s.secrets.putIfAbsent('ca', `value-${i}`)));
  t.equal(new Set(values).size, 1, 'and they agree on a first-writer-wins secret');
});

pgTest('a schema-2 store keeps its connectors, none deleted, and gains managed objects', async (t) => {
  const schema = schemaFor(t);
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.query(`SET search_path TO ${schema}`);
  try {
    await admin.query(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`);
    for (const [i, m] of MIGRATIONS.slice(0, 2).entries()) {
      await admin.query(m);
      await admin.query(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)`, [i + 1]);
    }
    await admin.query(`INSERT INTO connectors (id, name, group_name, created_at, created_by, revoked_at)
      VALUES ('c-old', 'edge', 'default', 1000, 'admin', 2000)`);
  } finally {
    await admin.query(`SET search_path TO DEFAULT`);
  }
  const s = await opened(t, PG_URL, schema);
  t.match(await s.connectors.list(), [{ id: 'c-old', revokedAt: 2_000 }], 'listed: not deleted');
  t.match(await s.connectors.delete('edge', 'admin', 3_000), { id: 'c-old' });
  t.same(await s.connectors.list(), []);
  const audit = { actor: 'admin', action: 'app.create', details: {} };
  t.match(await s.objects.put('app', 'wiki', { host: 'w' }, audit, 0, 4_000), { version: 1 });
  const { rows } = await admin.query<{ v: number }>(`SELECT max(version) AS v FROM ${schema}.schema_migrations`);
  t.equal(rows[0]!.v, SCHEMA_VERSION);
});

pgTest('two replicas creating or replacing one object at once: exactly one wins', async (t) => {
  const schema = schemaFor(t);
  const a = await opened(t, PG_URL, schema);
  const b = await opened(t, PG_URL, schema);
  const audit = (actor: string) => ({ actor, action: 'app.create', details: {} });
  for (let i = 0; i < 10; i++) {
    const name = `app-${i}`;
    const created = await Promise.allSettled([
      a.objects.put('app', name, { by: 'a' }, audit('a'), 0, 1_000),
      b.objects.put('app', name, { by: 'b' }, audit('b'), 0, 1_000),
    ]);
    t.equal(created.filter((r) => r.status === 'fulfilled').length, 1, `round ${i}: one creation`);
    t.match(
      created.find((r) => r.status === 'rejected')?.reason,
      { code: 'ERR_CONFLICT', status: 409 },
      `round ${i}: the other refused`,
    );
    const replaced = await Promise.allSettled([
      a.objects.put('app', name, { by: 'a2' }, audit('a'), 1, 2_000),
      b.objects.put('app', name, { by: 'b2' }, audit('b'), 1, 2_000),
    ]);
    t.equal(replaced.filter((r) => r.status === 'fulfilled').length, 1, `round ${i}: one replacement of version 1`);
    t.match((await a.objects.get('app', name))?.version, 2);
  }
  t.equal((await b.audit.list(1_000)).length, 20, 'one audit row per change made');
});

pgTest('a schema from a newer proxyctl is refused, untouched', async (t) => {
  const schema = schemaFor(t);
  await (await openPostgresStore({ url: PG_URL, schema })).close();
  await admin.query(`INSERT INTO ${schema}.schema_migrations (version, applied_at) VALUES ($1, 0)`, [
    SCHEMA_VERSION + 1,
  ]);
  const tables = `SELECT count(*) AS n FROM pg_tables WHERE schemaname = '${schema}'`;
  const before = (await admin.query<{ n: string }>(tables)).rows[0]!.n;
  await t.rejects(openPostgresStore({ url: PG_URL, schema }), { code: 'ERR_STORE', message: /newer than this/ });
  const versions = await admin.query<{ v: number }>(`SELECT max(version) AS v FROM ${schema}.schema_migrations`);
  t.equal(versions.rows[0]!.v, SCHEMA_VERSION + 1, 'its version stays');
  t.equal((await admin.query<{ n: string }>(tables)).rows[0]!.n, before, 'and so do its tables');
});

pgTest('schema names are checked before anything is sent', async (t) => {
  for (const schema of ['Proxyctl', 'a-b', '1abc', 'pg_catalog', 'x'.repeat(64), 'a"; DROP TABLE x; --']) {
    await t.rejects(openPostgresStore({ url: PG_URL, schema }), { code: 'ERR_STORE' }, schema);
  }
  await t.rejects(openPostgresStore({ url: 'not a url', schema: 'proxyctl' }), { code: 'ERR_STORE' });
});

pgTest('two replicas registering one name at once: exactly one wins', async (t) => {
  const schema = schemaFor(t);
  const a = await opened(t, PG_URL, schema);
  const b = await opened(t, PG_URL, schema);
  for (let i = 0; i < 10; i++) {
    const results = await Promise.allSettled([
      a.connectors.register(connector(`a-${i}`, `edge-${i}`, `A${i}`)),
      b.connectors.register(connector(`b-${i}`, `EDGE-${i}`, `B${i}`)),
    ]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    t.equal(won.length, 1, `round ${i}: one registration`);
    t.match(lost[0]?.reason, { code: 'ERR_CONNECTOR_NAME_TAKEN', status: 409 }, `round ${i}: the other refused`);
  }
  t.equal((await a.connectors.list()).length, 10);
  t.equal((await b.audit.list()).filter((e) => e.action === 'connector.register').length, 10, 'one audit row each');
});

pgTest('a change on one replica reaches another within a second (NOTIFY)', async (t) => {
  const schema = schemaFor(t);
  const a = await opened(t, PG_URL, schema);
  const b = await opened(t, PG_URL, schema);
  let arrived: ((at: number) => void) | undefined;
  a.onChange((topics) => {
    if (topics === 'all' || topics.has('connectors')) arrived?.(performance.now());
  });
  const gen = a.generation;
  const fromCall: number[] = [];
  const fromCommit: number[] = [];
  for (let i = 0; i < 20; i++) {
    const delivered = new Promise<number>((resolve) => (arrived = resolve));
    const called = performance.now();
    await b.connectors.register(connector(`c-${i}`, `n-${i}`, `S${i}`));
    const committed = performance.now();
    const at = await delivered;
    fromCall.push(at - called);
    fromCommit.push(at - committed);
  }
  const stats = (xs: number[]) => {
    const sorted = [...xs].sort((x, y) => x - y);
    return { median: sorted[sorted.length >> 1]!, max: sorted[sorted.length - 1]! };
  };
  const call = stats(fromCall);
  const commit = stats(fromCommit);
  t.comment(
    `register on b -> 'connectors' on a, 20 runs: from the call median ${call.median.toFixed(1)} ms, max ${call.max.toFixed(1)} ms; ` +
      `from the commit median ${commit.median.toFixed(1)} ms, max ${commit.max.toFixed(1)} ms`,
  );
  t.ok(call.max < 1000, `every change arrived within 1 s (max ${call.max.toFixed(1)} ms)`);
  t.ok(a.generation >= gen + 20, 'each moved the generation');
  t.match(await a.connectors.get('c-19'), { name: 'n-19' }, 'and reads see it');

  const heard: unknown[] = [];
  const stop = a.onChange((topics) => heard.push(topics));
  stop();
  const other = watch(a);
  await b.users.put(
    {
      username: 'bob',
      passwordHash: 'h',
      email: null,
      name: null,
      groups: [],
      roles: [],
      totpSecret: null,
      createdAt: 1,
    },
    'test',
    'user.add',
  );
  await waitFor(() => other.saw('users'), { what: 'users' });
  t.same(heard, [], 'an unsubscribed listener hears nothing');
});

pgTest('the change feed reconnects after its connection is killed, reporting all', async (t) => {
  const schema = schemaFor(t);
  const a = await opened(t, PG_URL, schema);
  const b = await opened(t, PG_URL, schema);
  const feed = watch(a);
  const listenPid = async () =>
    (
      await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = 'proxyctl-listen' AND query LIKE $1`,
        [`%proxyctl_${schema}%`],
      )
    ).rows.map((r) => r.pid);
  const pids = await listenPid();
  t.equal(pids.length, 2, 'both stores listen, found by their application name');
  await admin.query(`SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid`, [pids]);
  await waitFor(() => feed.saw('all'), { what: "'all' after the reconnection" });
  t.ok(a.reachable(), 'reachable again');
  const again = await waitFor(
    async () => {
      const p = await listenPid();
      return p.length === 2 ? p : undefined;
    },
    { what: 'two listening connections' },
  );
  t.notOk(
    again!.some((p) => pids.includes(p)),
    'on new connections',
  );
  const before = feed.seen.length;
  await b.keys.add({ kid: 'k1', purpose: 'session', material: 'm' }, 'test');
  await waitFor(() => feed.seen.slice(before).some((x) => x !== 'all' && x.has('keys')), { what: 'keys' });
  t.pass('later changes are reported as before');
});

pgTest('an unreachable database: ERR_STORE_UNAVAILABLE, password never shown', async (t) => {
  const url = urlWith(await closedPort());
  const err = await openPostgresStore({ url, schema: 'proxyctl' }).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.match(err, unavailable, 'opening fails with 503');
  t.notMatch(`${err?.message} ${JSON.stringify(err)}`, PASSWORD, 'without the password');
  await t.rejects(storeExists({ kind: 'postgres', url, schema: 'proxyctl' }), unavailable);
});

pgTest('a connection killed mid-statement: 503, then the next call works', async (t) => {
  const schema = schemaFor(t);
  const app = `pxt-${randomBytes(4).toString('hex')}`;
  const s = await opened(t, urlWith(undefined, { application_name: app }), schema);
  await s.secrets.put('ca', 'one', 'test');
  // Hold the table so the store's statement waits; then end that backend.
  const locker = new pg.Client(PG_URL);
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query(`BEGIN; LOCK TABLE ${schema}.secrets IN ACCESS EXCLUSIVE MODE`);
  // The failure is caught at once: it may come while the terminate below is still being awaited.
  const put = s.secrets.put('ca', 'two', 'test').then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  const waiting = await waitFor(
    async () => {
      const r = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
        [app],
      );
      return r.rows[0];
    },
    { what: 'the statement to wait for the lock' },
  );
  await admin.query(`SELECT pg_terminate_backend($1)`, [waiting!.pid]);
  const err = await put;
  t.match(err, unavailable, 'the change fails as unavailable');
  t.notMatch(err?.message ?? '', PASSWORD);
  t.notOk(s.reachable(), 'not reachable after a connection error');
  await locker.query('ROLLBACK');
  t.equal(await s.secrets.get('ca'), 'one', 'nothing half done');
  await s.secrets.put('ca', 'three', 'test');
  t.equal(await s.secrets.get('ca'), 'three', 'a fresh connection serves the next call');
  t.ok(s.reachable(), 'reachable again');
});

pgTest('an outage: signed-in users keep working from memory, then recovery', async (t) => {
  const schema = schemaFor(t);
  const proxy = await tcpProxy(t);
  const direct = await opened(t, PG_URL, schema);
  const s = await opened(t, urlWith(proxy.port), schema);
  const feed = watch(s);
  const now = Date.now();
  const session = (sid: string) => ({
    sid,
    app: 'wiki',
    subject: 'alice',
    createdAt: now,
    expiresAt: now + HOUR,
    clientIp: null,
  });

  // Before: what this replica created or read, and what others changed that it heard of.
  await s.sessions.create(session('s-mine'));
  for (const sid of ['s-seen', 's-revoked', 's-unseen', 's-late']) await direct.sessions.create(session(sid));
  t.ok(await s.sessions.isActive('s-seen'));
  t.ok(await s.sessions.isActive('s-revoked'));
  t.ok(await s.sessions.isActive('s-late'));
  await direct.sessions.revoke('s-revoked');
  await direct.sessions.endProviderSession('p-ended', now, now + HOUR);
  await direct.connectors.register(connector('c-1', 'edge', 'S1'));
  await direct.keys.add({ kid: 'k1', purpose: 'session', material: 'm1' }, 'test');
  await waitFor(() => feed.saw('sessions') && feed.saw('connectors') && feed.saw('keys'), { what: 'the topics' });
  await (s.sessions as PgSessionRepo).refresh(); // the re-read the 'sessions' topic started
  t.match(await s.connectors.getCertificate('S1'), { connectorId: 'c-1', revokedAt: null });
  t.match(await s.connectors.get('c-1'), { name: 'edge' });
  t.match(await s.keys.list('session'), [{ kid: 'k1' }]);

  await proxy.cut();
  await waitFor(() => !s.reachable(), { what: 'the store to notice' });
  await direct.sessions.revoke('s-late'); // elsewhere, during the outage: not heard of until it ends
  const t0 = performance.now();
  t.equal(await s.sessions.isActive('s-mine'), true, 'a session created here is active');
  t.equal(await s.sessions.isActive('s-seen'), true, 'a session seen active is active');
  t.equal(await s.sessions.isActive('s-revoked'), false, 'a sign-out heard of before the outage counts');
  t.equal(await s.sessions.isActive('s-mine', now + 2 * HOUR), false, 'expiry still applies');
  t.equal(await s.sessions.providerSessionEnded('p-ended'), true, 'ended provider sessions are known');
  t.equal(await s.sessions.providerSessionEnded('p-other'), false);
  t.match(await s.connectors.getCertificate('S1'), { connectorId: 'c-1' }, 'certificates answer from memory');
  t.match(await s.connectors.get('c-1'), { name: 'edge' });
  t.match(await s.keys.list('session'), [{ kid: 'k1', material: 'm1' }], 'so do keys');
  const elapsed = performance.now() - t0;
  t.ok(elapsed < 500, `at once, not after a connection timeout (${elapsed.toFixed(1)} ms)`);
  t.equal(await s.sessions.isActive('s-late'), true, 'a sign-out elsewhere during the outage is not known yet');
  const err = await s.sessions.isActive('s-unseen').then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  t.match(err, unavailable, 'a session never seen cannot be answered');
  t.notMatch(err?.message ?? '', PASSWORD, 'the message never holds the password');
  await t.rejects(s.sessions.create(session('s-new')), unavailable, 'changes fail');
  await t.rejects(s.connectors.list(), unavailable, 'so do other reads');
  await t.rejects(s.connectors.getCertificate('S9'), unavailable, 'a certificate never read');

  const before = feed.seen.length;
  await proxy.restore();
  await waitFor(() => s.reachable(), { timeoutMs: 10_000, what: 'the store to reconnect' });
  t.ok(feed.seen.slice(before).includes('all'), "'all' is reported: changes during the outage were missed");
  t.equal(await s.sessions.isActive('s-unseen'), true, 'the database answers again');
  t.equal(await s.sessions.isActive('s-late'), false, 'and the sign-out made during the outage counts');
  await s.sessions.create(session('s-new'));
  t.equal(await direct.sessions.isActive('s-new'), true, 'changes work again');
});

pgTest('close is idempotent and later calls are refused', async (t) => {
  const schema = schemaFor(t);
  const s = await openPostgresStore({ url: PG_URL, schema });
  await Promise.all([s.close(), s.close()]);
  await s.close();
  t.notOk(s.reachable());
  await t.rejects(s.users.list(), { code: 'ERR_STORE' });
});
