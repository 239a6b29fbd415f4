// The store through its interface (the contract every implementation passes, on
// SQLite and on PostgreSQL), then what only the SQLite implementation has: its file,
// its schema versions, migration. PostgreSQL's own: store-postgres.test.ts.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openPostgresStore, openSqliteStore, sqliteStoreExists } from '../src/store/index.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../src/store/sqlite/migrations.js';
import { storeContract } from './helpers/store-contract.js';
import { tempDir } from './helpers/proc.js';
import { PG_URL } from './helpers/postgres.js';
import { signInRecord } from './helpers/sign-ins.js';

t.test('SQLite', async (t) => {
  storeContract(t, (t) => {
    const dir = tempDir(t, 'proxyctl-store-');
    return async () => openSqliteStore(dir);
  });
});

t.test('PostgreSQL', async (t) => {
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
  } catch (err) {
    const where = new URL(PG_URL);
    where.password = '';
    t.fail(
      `PostgreSQL is not reachable at ${where.href} (${(err as Error).message}); start it or set PROXYCTL_TEST_PG_URL`,
    );
    return;
  }
  t.teardown(() => admin.end());
  // A schema per test, dropped with everything in it when the test ends.
  storeContract(t, (t) => {
    const schema = `pxt_${randomBytes(6).toString('hex')}`;
    t.teardown(async () => {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    });
    return () => openPostgresStore({ url: PG_URL, schema });
  });
});

t.test('the schema is at version 10, one migration per version', async (t) => {
  t.equal(SCHEMA_VERSION, 10, 'existing data directories were written at version 10');
  t.equal(MIGRATIONS.length, SCHEMA_VERSION);
  const dir = tempDir(t);
  t.notOk(sqliteStoreExists(dir));
  await openSqliteStore(dir).close();
  t.ok(sqliteStoreExists(dir));
  const db = new Database(path.join(dir, 'proxyctl.db'), { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('user_version', { simple: true }), 10);
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
});

t.test('a version-1 store (connectors only) migrates, keeping its data', async (t) => {
  const dir = tempDir(t);
  const db = new Database(path.join(dir, 'proxyctl.db'));
  db.exec(MIGRATIONS[0]!);
  db.exec(`INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES ('c-old', 'edge', 'default', 1000, 'admin');
    INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES ('AA01', 'c-old', 1000, 999999999999, 'register');
    INSERT INTO audit (at, actor, action, connector_id, details) VALUES (1000, 'admin', 'connector.register', 'c-old', '{"name":"edge"}');`);
  db.pragma('user_version = 1');
  db.close();

  const s = openSqliteStore(dir);
  t.teardown(() => s.close());
  t.match(await s.connectors.find('edge'), { id: 'c-old', createdBy: 'admin', revokedAt: null });
  t.match(await s.connectors.getCertificate('AA01'), { connectorId: 'c-old', kind: 'register' });
  t.match(await s.audit.list(), [{ action: 'connector.register', details: { name: 'edge' } }]);
  // The later tables work.
  await s.keys.add({ kid: 'k1', purpose: 'session', material: 'm' }, 'test', 2_000);
  await s.users.put(
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
  t.equal(await s.users.acceptTotpStep('bob', 1), true);
  await s.idpArtifacts.upsert('Session', 's1', { uid: 'u1' }, undefined);
  t.ok(await s.idpArtifacts.find('Session', 'uid', 'u1'));
  await s.signIns.record(
    signInRecord({
      at: 1,
      requestId: null,
      app: null,
      subject: null,
      ip: null,
      country: null,
      userAgent: null,
      result: 'failure',
      reason: 'x',
      policies: [],
    }),
  );
  t.equal((await s.signIns.list()).length, 1);
  await s.sessions.endProviderSession('p', 0, 10);
  t.ok(await s.sessions.providerSessionEnded('p', 5));
  const check = new Database(path.join(dir, 'proxyctl.db'), { readonly: true });
  t.teardown(() => check.close());
  t.equal(check.pragma('user_version', { simple: true }), 10);
});

t.test('a version-7 store keeps its sign-ins, read with the analytics fields empty', async (t) => {
  const dir = tempDir(t);
  const db = new Database(path.join(dir, 'proxyctl.db'));
  for (const m of MIGRATIONS.slice(0, 7)) db.exec(m);
  db.exec(`INSERT INTO signins (at, request_id, app, subject, ip, country, user_agent, result, reason, policies, risk)
    VALUES (5, 'r-1', 'wiki', 'alice', '192.0.2.1', 'NL', 'ua', 'success', NULL, '[{"name":"p"}]', NULL)`);
  db.pragma('user_version = 7');
  db.close();
  const s = openSqliteStore(dir);
  t.teardown(() => s.close());
  t.same(await s.signIns.list(), [
    {
      ...signInRecord({
        at: 5,
        requestId: 'r-1',
        app: 'wiki',
        subject: 'alice',
        ip: '192.0.2.1',
        country: 'NL',
        userAgent: 'ua',
        result: 'success',
        policies: [{ name: 'p' }],
      }),
      id: 1,
    },
  ]);
  t.same(await s.events.head(), { signIn: 1, audit: 0, riskDetection: 0 });
});

t.test('a version-8 store keeps its connectors, none deleted, and gains managed objects', async (t) => {
  const dir = tempDir(t);
  const db = new Database(path.join(dir, 'proxyctl.db'));
  for (const m of MIGRATIONS.slice(0, 8)) db.exec(m);
  db.exec(`INSERT INTO connectors (id, name, group_name, created_at, created_by, revoked_at) VALUES ('c-old', 'edge', 'default', 1000, 'admin', 2000);
    INSERT INTO certificates (serial, connector_id, issued_at, not_after, revoked_at, kind) VALUES ('AA01', 'c-old', 1000, 999999999999, 2000, 'register');`);
  db.pragma('user_version = 8');
  db.close();
  const s = openSqliteStore(dir);
  t.teardown(() => s.close());
  t.match(await s.connectors.list(), [{ id: 'c-old', revokedAt: 2_000 }], 'listed: not deleted');
  t.match(await s.connectors.delete('edge', 'admin', 3_000), { id: 'c-old' });
  t.same(await s.connectors.list(), []);
  const audit = { actor: 'admin', action: 'app.create', details: {} };
  t.match(await s.objects.put('app', 'wiki', { host: 'w' }, audit, 0, 4_000), { version: 1 });
});

t.test('a version-9 store keeps its connectors and takes registration keys', async (t) => {
  const dir = tempDir(t);
  const db = new Database(path.join(dir, 'proxyctl.db'));
  for (const m of MIGRATIONS.slice(0, 9)) db.exec(m);
  db.exec(`INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES ('c-old', 'edge', 'default', 1000, 'admin');
    INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES ('AA01', 'c-old', 1000, 999999999999, 'register');`);
  db.pragma('user_version = 9');
  db.close();
  const s = openSqliteStore(dir);
  t.teardown(() => s.close());
  t.match(await s.connectors.list(), [{ id: 'c-old', name: 'edge', revokedAt: null }], 'the old connector stays');
  const registration = { key: 'k'.repeat(43), publicKey: 'ab', credential: 'cd', certificate: 'pem' };
  await s.connectors.register({
    id: 'c-new',
    name: 'new',
    group: 'default',
    actor: 'admin',
    serial: 'BB01',
    issuedAt: 2_000,
    notAfter: 9_000,
    registration,
  });
  t.match(await s.connectors.registration(registration.key), { ...registration, connectorId: 'c-new' });
  t.equal(await s.connectors.registration('k'.repeat(42)), undefined);
});

t.test('a store from a newer proxyctl is refused, untouched', async (t) => {
  const dir = tempDir(t);
  await openSqliteStore(dir).close();
  const db = new Database(path.join(dir, 'proxyctl.db'));
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
  db.close();
  t.throws(() => openSqliteStore(dir), { code: 'ERR_STORE' });
  const check = new Database(path.join(dir, 'proxyctl.db'), { readonly: true });
  t.teardown(() => check.close());
  t.equal(check.pragma('user_version', { simple: true }), SCHEMA_VERSION + 1);
});
