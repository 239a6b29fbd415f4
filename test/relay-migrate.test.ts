// `proxyctl relay migrate`: a data directory filled as a relay on SQLite fills it
// (CA files, provider keys, keys in the clear and sealed, connectors, users,
// sessions, years of sign-ins) copied into PostgreSQL, one schema per test. The copy
// is complete, what replicas open (CA, provider keys, key material) opens with the
// master key to what the data directory held, and the data directory is left byte
// for byte as it was. Then every way it must refuse, writing nothing anywhere.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { generateCa, loadOrCreateCa } from '../src/crypto/ca.js';
import { KeyRing, keyAad, rotateKey } from '../src/crypto/keyring.js';
import { generateMasterKey, parseMasterKey, type MasterKey } from '../src/crypto/master-key.js';
import { newIdpSecrets, idpKeysFile } from '../src/idp/provider.js';
import { migrateToPostgres } from '../src/commands/relay-migrate.js';
import { CA_SECRET, IDP_SECRET, loadSharedCa, secretAad } from '../src/relay/shared-secrets.js';
import { openPostgresStore, openSqliteStore, storeExists, type Store } from '../src/store/index.js';
import { MIGRATIONS } from '../src/store/sqlite/migrations.js';
import { tempDir } from './helpers/proc.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';
import { signInRecord } from './helpers/sign-ins.js';

/** The same server with a password in the URL (trust authentication ignores it): it must never be printed. */
const PASSWORD = `pw-${randomBytes(6).toString('hex')}`;
const URL_WITH_PASSWORD = (() => {
  const u = new URL(PG_URL);
  if (!u.password) u.password = PASSWORD;
  return u.href;
})();
const HOUR = 3_600_000;

const admin = await pgAdmin(t);

/** A schema name of its own, dropped with everything in it when the test ends. */
const schemaFor = (t: Test): string => freshSchema(t, admin, 'pxm');

async function openTarget(t: Test, schema: string): Promise<Store> {
  const s = await openPostgresStore({ url: PG_URL, schema });
  t.teardown(() => s.close());
  return s;
}

interface Relay {
  dir: string;
  dataDir: string;
  config: string;
  masterKey: MasterKey;
  masterKeyFile: string;
}

/** A relay's data directory as a relay on SQLite leaves it, and a config naming it and a master key. */
async function sqliteRelay(t: Test, opts: { signIns?: number } = {}): Promise<Relay> {
  const dir = tempDir(t, 'proxyctl-migrate-');
  const dataDir = path.join(dir, 'data');
  await loadOrCreateCa(dataDir);
  writeFileSync(idpKeysFile(dataDir), await newIdpSecrets(), { mode: 0o600 });
  const keyText = generateMasterKey();
  const masterKey = parseMasterKey(keyText);
  const masterKeyFile = path.join(dir, 'master.key');
  writeFileSync(masterKeyFile, keyText, { mode: 0o600 });
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, 'dataDir: ./data\nsecrets: { masterKeyFile: master.key }\n');

  const store = openSqliteStore(dataDir);
  const now = Date.now();
  // The relay's first keys, in the clear (no master key then); a later one sealed.
  await KeyRing.load(store.keys);
  await rotateKey(store.keys, 'session', 'test', undefined, masterKey);
  await store.connectors.register({
    id: 'c-1',
    name: 'edge',
    group: 'default',
    actor: 'admin',
    serial: '5A01',
    issuedAt: now - 2 * HOUR,
    notAfter: now + 90 * 24 * HOUR,
  });
  await store.connectors.recordRenewal({
    connectorId: 'c-1',
    oldSerial: '5A01',
    serial: '5A02',
    issuedAt: now - HOUR,
    notAfter: now + 180 * 24 * HOUR,
    graceUntil: now + 600_000,
  });
  await store.connectors.touch('c-1', '0.1.0', now - 1_000);
  await store.connectors.register({
    id: 'c-2',
    name: 'gone',
    group: 'dmz',
    actor: 'admin',
    serial: '5B01',
    issuedAt: now - HOUR,
    notAfter: now + HOUR,
  });
  await store.connectors.revoke('c-2', 'admin', now - 500);
  await store.connectors.delete('c-2', 'admin', now - 400);
  // What the administration API published, one spec with every kind of content JSON has.
  const audit = { actor: 'admin', action: 'app.create', details: {} };
  await store.objects.put('app', 'wiki', { host: 'wiki.example', z: 1, a: [1, { b: null }] }, audit, 0, now - 300);
  await store.objects.put(
    'policy',
    'ünïcode \'"',
    JSON.parse('{"__proto__":{"x":1},"s":"日本 😀 \\u0000 \\ud800","n":-0.5e-7}') as Record<string, unknown>,
    audit,
    0,
    now - 200,
  );
  const user = {
    passwordHash: 'scrypt$x',
    email: null,
    name: null,
    groups: ['staff'],
    roles: [],
    totpSecret: null,
    createdAt: now - 10 * HOUR,
  };
  await store.users.put({ ...user, username: 'alice', totpSecret: 'JBSWY3DPEHPK3PXP' }, 'admin', 'user.add');
  await store.users.put({ ...user, username: 'bob', roles: ['ProxyAdministrator'] }, 'admin', 'user.add');
  await store.users.acceptTotpStep('alice', 58_000_000);
  await store.sessions.create({
    sid: 'sess-alice',
    app: 'wiki',
    subject: 'alice',
    createdAt: now - HOUR,
    expiresAt: now + 7 * HOUR,
    clientIp: '198.51.100.7',
  });
  await store.sessions.endProviderSession('idp-sid-1', now - 100, now + HOUR);
  await store.idpArtifacts.upsert('Session', 'idp-s1', { uid: 'u-1', accountId: 'alice' }, 3_600);
  // Enough sign-ins for several statements' worth of rows.
  const n = opts.signIns ?? 10;
  for (let i = 0; i < n; i++)
    await store.signIns.record(
      signInRecord({
        at: now - n + i,
        requestId: `r-${i}`,
        app: 'wiki',
        subject: i % 3 ? 'alice' : null,
        ip: '198.51.100.7',
        country: 'NL',
        userAgent: 'Mozilla/5.0',
        result: i % 3 ? 'success' : 'failure',
        reason: i % 3 ? null : 'denied',
        policies: [{ name: 'office', result: 'allow' }],
      }),
    );
  await store.close();
  return { dir, dataDir, config, masterKey, masterKeyFile };
}

/** Every file under `dir` with its mode and a hash of its bytes. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const file = path.join(dir, name);
    const st = statSync(file);
    out[name] = st.isFile()
      ? `${(st.mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(file)).digest('hex')}`
      : `${(st.mode & 0o777).toString(8)} dir`;
  }
  return out;
}

async function migrate(
  r: Relay,
  opts: { schema: string; url?: string; env?: Record<string, string> },
): Promise<string[]> {
  const lines: string[] = [];
  await migrateToPostgres(
    { config: r.config, toPostgres: opts.url ?? URL_WITH_PASSWORD, schema: opts.schema },
    (l) => lines.push(l),
    opts.env ?? {},
  );
  return lines;
}

t.test('the copy is complete, opens with the master key, and the data directory is untouched', async (t) => {
  const r = await sqliteRelay(t, { signIns: 2_345 });
  const before = fingerprint(r.dataDir);
  const schema = schemaFor(t);
  const now = Date.now();

  const lines = await migrate(r, { schema });
  t.same(
    fingerprint(r.dataDir),
    before,
    'every file in the data directory has the same bytes and mode, and none appeared',
  );

  const output = lines.join('\n');
  t.notMatch(output, PASSWORD, 'the password is never printed');
  t.match(output, 'connectors 2, certificates 3, audit entries');
  t.match(
    output,
    'keys 3, users 2, TOTP steps 1, secrets 2, sign-ins 2345, risk detections 0, user risk decisions 0, ended provider sessions 1, sessions 1, provider artifacts 1, managed objects 2',
  );
  t.match(output, 'keys: 2 sealed now, 1 already sealed');
  const masked = new URL(URL_WITH_PASSWORD);
  masked.password = '***';
  t.ok(lines.includes(`  store: { postgres: { url: "${masked.href}" } }`), 'the config line to add, password masked');
  t.match(output, `note: relays open the schema proxyctl; this copy is in ${schema}`);

  const source = openSqliteStore(r.dataDir);
  t.teardown(() => source.close());
  const target = await openTarget(t, schema);
  const from = await source.transfer.export(now);
  const to = await target.transfer.export(now);
  for (const kind of [
    'connectors',
    'certificates',
    'users',
    'totpSteps',
    'signIns',
    'endedProviderSessions',
    'sessions',
    'idpArtifacts',
  ] as const)
    t.strictSame(to[kind], from[kind], `${kind}: every record, every field`);
  t.strictSame(to.audit.slice(0, -1), from.audit, 'the audit trail, in order');
  t.match(
    to.connectors,
    [
      { id: 'c-1', deletedAt: null },
      { id: 'c-2', deletedAt: Number },
    ],
    'deleted stays deleted',
  );
  t.same(
    (await target.connectors.list()).map((c) => c.id),
    ['c-1'],
  );
  t.equal(to.objects.length, 2);
  t.equal(JSON.stringify(to.objects), JSON.stringify(from.objects), 'managed objects, exactly, keys in order');
  t.ok(Object.hasOwn(to.objects[1]!.spec, '__proto__'), '__proto__ stays data');
  t.match(to.audit.at(-1), { action: 'store.import', details: { connectors: 2, signIns: 2_345, secrets: 2 } });

  // Keys: the same keys, each sealed with the master key, opening to what the data directory held.
  t.same(
    to.keys.map((k) => [k.kid, k.purpose, k.createdAt, k.retiredAt]),
    from.keys.map((k) => [k.kid, k.purpose, k.createdAt, k.retiredAt]),
  );
  for (const [i, k] of to.keys.entries()) {
    const original = from.keys[i]!.material;
    const plain = r.masterKey.unwrap(k.material, keyAad(k.purpose, k.kid));
    t.equal(
      plain,
      original.startsWith('pxk1.') ? r.masterKey.unwrap(original, keyAad(k.purpose, k.kid)) : original,
      `key ${k.kid} opens to the same material`,
    );
  }
  const sourceRing = await KeyRing.load(source.keys, r.masterKey);
  const targetRing = await KeyRing.load(target.keys, r.masterKey);
  t.same(targetRing.session, sourceRing.session, 'a replica reads the session keys the relay used');
  t.same(targetRing.jwks(), sourceRing.jwks(), 'and publishes the same assertion keys');

  // Secrets: the CA and the provider keys of the data directory, sealed.
  t.same(
    to.secrets.map((s) => s.name),
    [IDP_SECRET, CA_SECRET],
  );
  const ca = JSON.parse(r.masterKey.unwrap((await target.secrets.get(CA_SECRET))!, secretAad(CA_SECRET))) as {
    certPem: string;
    keyPem: string;
  };
  t.equal(ca.certPem, readFileSync(path.join(r.dataDir, 'ca.pem'), 'utf8'), 'relay-ca holds ca.pem');
  t.equal(ca.keyPem, readFileSync(path.join(r.dataDir, 'ca-key.pem'), 'utf8'), 'and ca-key.pem');
  const replicaDir = tempDir(t);
  const shared = await loadSharedCa(target, r.masterKey, replicaDir);
  t.equal(shared.certPem, ca.certPem, 'a replica starting on the store loads that CA');
  t.equal(
    r.masterKey.unwrap((await target.secrets.get(IDP_SECRET))!, secretAad(IDP_SECRET)),
    readFileSync(idpKeysFile(r.dataDir), 'utf8'),
    'idp-keys holds idp-keys.json',
  );
});

t.test('the master key may come from the environment; without provider keys there is no idp-keys', async (t) => {
  const r = await sqliteRelay(t);
  rmSync(idpKeysFile(r.dataDir));
  writeFileSync(r.config, 'dataDir: ./data\n');
  const schema = schemaFor(t);
  const lines = await migrate(r, { schema, env: { PROXYCTL_MASTER_KEY: readFileSync(r.masterKeyFile, 'utf8') } });
  t.match(lines.join('\n'), 'idp-keys: none');
  const target = await openTarget(t, schema);
  t.same(
    (await target.secrets.list()).map((s) => s.name),
    [CA_SECRET],
  );
});

t.test('a store of an older schema is read as it is and copied, the file left at its version', async (t) => {
  const r = await sqliteRelay(t);
  const file = path.join(r.dataDir, 'proxyctl.db');
  rmSync(file);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(MIGRATIONS[0]!);
  db.exec(`INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES ('c-old', 'edge', 'default', 1000, 'admin');
    INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES ('AA01', 'c-old', 1000, 9999999999999, 'register');`);
  db.pragma('user_version = 1');
  db.close();
  const before = fingerprint(r.dataDir);
  const schema = schemaFor(t);
  await migrate(r, { schema });
  t.same(fingerprint(r.dataDir), before);
  const target = await openTarget(t, schema);
  t.match(await target.connectors.getCertificate('AA01'), { connectorId: 'c-old', kind: 'register' });
});

t.test('refused, with nothing written to PostgreSQL or the data directory', async (t) => {
  const cases: {
    name: string;
    code: string;
    prepare?: (r: Relay, t: Test) => Promise<void> | void;
    url?: string;
    env?: Record<string, string>;
    /** The message must not hold this. */
    hides?: string;
  }[] = [
    {
      name: 'no master key',
      code: 'ERR_MASTER_KEY',
      prepare: (r) => writeFileSync(r.config, 'dataDir: ./data\n'),
    },
    {
      name: 'a master key file others may read',
      code: 'ERR_MASTER_KEY',
      prepare: (r) => chmodSync(r.masterKeyFile, 0o644),
    },
    {
      name: 'two master keys (file and environment)',
      code: 'ERR_MASTER_KEY',
      env: { PROXYCTL_MASTER_KEY: generateMasterKey() },
    },
    {
      name: 'a key sealed with another master key',
      code: 'ERR_MASTER_KEY',
      prepare: async (r) => {
        const s = openSqliteStore(r.dataDir);
        await rotateKey(s.keys, 'assertion', 'test', undefined, parseMasterKey(generateMasterKey()));
        await s.close();
      },
    },
    {
      name: 'a sealed key altered in the store',
      code: 'ERR_MASTER_KEY',
      prepare: async (r) => {
        const s = openSqliteStore(r.dataDir);
        const k = (await s.keys.all()).find((x) => x.material.startsWith('pxk1.'))!;
        await s.keys.setMaterial(k.kid, k.material.slice(0, -3) + (k.material.endsWith('AAA') ? 'BBB' : 'AAA'));
        await s.close();
      },
    },
    {
      name: 'the store open in another process (its -wal file)',
      code: 'ERR_STORE',
      prepare: async (r, t) => {
        const s = openSqliteStore(r.dataDir);
        await s.keys.list('session');
        t.teardown(() => s.close());
      },
    },
    {
      name: 'no store in the data directory',
      code: 'ERR_STORE',
      prepare: (r) => rmSync(path.join(r.dataDir, 'proxyctl.db')),
    },
    { name: 'no CA', code: 'ERR_STATE_INVALID', prepare: (r) => rmSync(path.join(r.dataDir, 'ca-key.pem')) },
    {
      name: 'a CA key that is not the certificate’s',
      code: 'ERR_STATE_INVALID',
      prepare: async (r) => {
        writeFileSync(path.join(r.dataDir, 'ca-key.pem'), (await generateCa()).keyPem, { mode: 0o600 });
      },
    },
    {
      name: 'provider keys that are not',
      code: 'ERR_STATE_INVALID',
      prepare: (r) => writeFileSync(idpKeysFile(r.dataDir), '{"jwks":', { mode: 0o600 }),
    },
    { name: 'a URL that is not one', code: 'ERR_STORE', url: `postgres://u:${PASSWORD}@[nope/db`, hides: PASSWORD },
    {
      name: 'a server that does not answer',
      code: 'ERR_STORE_UNAVAILABLE',
      url: `postgres://u:${PASSWORD}@127.0.0.1:1/db`,
      hides: PASSWORD,
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const r = await sqliteRelay(t);
      await c.prepare?.(r, t);
      const before = fingerprint(r.dataDir);
      const schema = schemaFor(t);
      const err = await migrate(r, { schema, ...(c.url ? { url: c.url } : {}), ...(c.env ? { env: c.env } : {}) }).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message: string },
      );
      t.equal(err?.code, c.code, err?.message ?? 'accepted');
      if (c.hides) t.notMatch(err?.message ?? '', c.hides, 'the password is not in the message');
      t.same(fingerprint(r.dataDir), before, 'the data directory is as it was');
      if (!c.url) t.notOk(await storeExists({ kind: 'postgres', url: PG_URL, schema }), 'no schema was created');
    });
  }
});

t.test('into a store that already holds data: refused, and that store keeps what it had', async (t) => {
  const r = await sqliteRelay(t);
  const schema = schemaFor(t);
  await migrate(r, { schema });
  const target = await openTarget(t, schema);
  const first = await target.transfer.export();
  await t.rejects(migrate(r, { schema }), { code: 'ERR_STORE' }, 'a second copy is refused');
  t.strictSame(await target.transfer.export(), first, 'nothing was added');

  const other = schemaFor(t);
  const running = await openTarget(t, other);
  await KeyRing.load(running.keys, r.masterKey); // a replica started on it already
  await t.rejects(migrate(r, { schema: other }), { code: 'ERR_STORE' }, 'a store a replica has started on is refused');
  t.equal((await running.transfer.export()).connectors.length, 0);
});
