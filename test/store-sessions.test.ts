// Sessions and ended provider sessions in the store: a sign-out is seen by every
// process on the data directory and after a restart, lasts as long as a token from
// that provider session can, and expired rows are purged.
import t from 'tap';
import path from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../src/store/index.js';
import { tempDir } from './helpers/proc.js';
import { MIGRATIONS } from '../src/store/sqlite/migrations.js';

const HOUR = 3600_000;

t.test('an ended provider session is seen by a second process and after a restart', async (t) => {
  const dir = tempDir(t);
  const a = openSqliteStore(dir);
  const b = openSqliteStore(dir);
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  t.notOk(await b.sessions.providerSessionEnded('psid-1', 1000), 'not ended yet');
  await a.sessions.endProviderSession('psid-1', 1000, 1000 + HOUR);
  t.ok(await b.sessions.providerSessionEnded('psid-1', 1001), 'the other process sees it');
  t.notOk(await b.sessions.providerSessionEnded('psid-2', 1001), 'another sid is untouched');
  t.notOk(await b.sessions.providerSessionEnded('PSID-1', 1001), 'sids compare exactly');
  t.notOk(await b.sessions.providerSessionEnded('psid-1', 1000 + HOUR), 'over once no token from it can be valid');
  await a.sessions.endProviderSession('psid-1', 2000, 2000 + HOUR);
  t.ok(await b.sessions.providerSessionEnded('psid-1', 1000 + HOUR), 'a second sign-out extends it');
  await a.sessions.endProviderSession('psid-1', 3000, 3000 + 1);
  t.ok(await b.sessions.providerSessionEnded('psid-1', 1000 + HOUR), 'and never shortens it');
  await a.close();
  const c = openSqliteStore(dir);
  t.teardown(() => c.close());
  t.ok(await c.sessions.providerSessionEnded('psid-1', 1000 + HOUR), 'after a restart');
});

t.test('purge drops expired sessions and ended provider sessions only', async (t) => {
  const dir = tempDir(t);
  const s = openSqliteStore(dir);
  t.teardown(() => s.close());
  await s.sessions.create({ sid: 'old', app: 'web', subject: 'u', createdAt: 0, expiresAt: 10, clientIp: null });
  await s.sessions.create({ sid: 'live', app: 'web', subject: 'u', createdAt: 0, expiresAt: 1000, clientIp: null });
  await s.sessions.endProviderSession('p-old', 0, 10);
  await s.sessions.endProviderSession('p-live', 0, 1000);
  await s.sessions.purge(500);
  const db = new Database(path.join(dir, 'proxyctl.db'), { readonly: true });
  t.teardown(() => db.close());
  t.same(db.prepare('SELECT sid FROM sessions ORDER BY sid').all(), [{ sid: 'live' }]);
  t.same(db.prepare('SELECT sid FROM ended_provider_sessions ORDER BY sid').all(), [{ sid: 'p-live' }]);
  t.ok(await s.sessions.isActive('live', 500));
});

t.test('a store from before the table gets it by migration, keeping its sessions', async (t) => {
  const dir = tempDir(t);
  // What a version-5 store holds, written by that version's migrations.
  const db = new Database(path.join(dir, 'proxyctl.db'));
  for (const m of MIGRATIONS.slice(0, 5)) db.exec(m);
  db.exec(
    `INSERT INTO sessions (sid, app, subject, created_at, expires_at, client_ip) VALUES ('kept', 'web', 'u', 0, 1000, NULL)`,
  );
  db.pragma('user_version = 5');
  db.close();
  const again = openSqliteStore(dir);
  t.teardown(() => again.close());
  t.ok(await again.sessions.isActive('kept', 1), 'sessions kept');
  await again.sessions.endProviderSession('p', 0, 1000);
  t.ok(await again.sessions.providerSessionEnded('p', 1));
});
