// Regression: the relay's store (proxyctl.db and its -wal/-shm files) was created with
// the umask, so in a data directory someone else made 0755 any local user could read
// session keys, the assertion key, password hashes and TOTP secrets. Every file that
// holds a secret is 0600 whatever the umask, the directory is tightened to 0700 at
// start, looser files left by an older version are fixed, and a directory we do not
// own is refused. Checked after start and after traffic that writes the WAL.
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { loadState, writeNewState } from '../src/connector/state.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { silentLogger } from '../src/log.js';
import { Relay } from '../src/relay/relay.js';
import { openSqliteStore } from '../src/store/index.js';
import { assertPrivateTree as assertPrivate, modeOf } from './helpers/modes.js';
import { tempDir } from './helpers/proc.js';

function withUmask(t: Test, mask: number): void {
  const previous = process.umask(mask);
  t.teardown(() => {
    process.umask(previous);
  });
}

function premade(t: Test, mode = 0o755): string {
  const dir = path.join(tempDir(t), 'data');
  mkdirSync(dir);
  chmodSync(dir, mode); // as a package or a volume would leave it
  return dir;
}

const yaml = `public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { embedded: { host: login.localhost } }
apps:
  - name: wiki
    externalUrl: "https://wiki.localhost/"
    internalUrl: "http://127.0.0.1:9/"
    preauth: passthrough
`;

/** Starts a relay (embedded provider, so its keys are written too) and writes to every table that holds secrets. */
async function relayWithTraffic(t: Test, dataDir: string, n: number): Promise<Relay> {
  const relay = await Relay.create(parseRelayConfig(yaml, undefined, { dataDir }), { log: silentLogger });
  t.teardown(() => relay.close());
  await relay.start();
  const { csrPem } = await createKeyAndCsr('c');
  await relay.registerLocal({ csr: csrPem, name: `edge-${n}`, group: 'default', version: 'test' }, 'test');
  await relay.store.users.put(
    {
      username: `user-${n}`,
      passwordHash: 'scrypt$not-a-real-hash',
      email: null,
      name: null,
      groups: [],
      roles: [],
      totpSecret: 'JBSWY3DPEHPK3PXP',
      createdAt: Date.now(),
    },
    'test',
    'user.add',
  );
  await relay.store.sessions.create({
    sid: `sid-${n}`,
    app: 'wiki',
    subject: `user-${n}`,
    createdAt: Date.now(),
    expiresAt: Date.now() + 60_000,
    clientIp: null,
  });
  return relay;
}

for (const mask of [0o022, 0o000]) {
  t.test(`umask ${mask.toString(8).padStart(3, '0')}: a pre-made 0755 data directory ends up owner-only`, async (t) => {
    withUmask(t, mask);
    const dataDir = premade(t);
    const relay = await relayWithTraffic(t, dataDir, 1);
    for (const f of ['proxyctl.db', 'proxyctl.db-wal', 'proxyctl.db-shm', 'ca-key.pem', 'idp-keys.json']) {
      t.ok(existsSync(path.join(dataDir, f)), `${f} exists (the WAL has been written)`);
    }
    assertPrivate(t, dataDir, 'after start and traffic');
    t.equal(modeOf(path.join(dataDir, 'proxyctl.db-wal')), 0o600, 'the WAL is 0600');
    t.equal(modeOf(path.join(dataDir, 'proxyctl.db-shm')), 0o600, 'the shared-memory file is 0600');

    // The admin CLI opens the same store while the relay runs (another SQLite connection).
    const cli = openSqliteStore(dataDir);
    await cli.connectors.revoke('edge-1', 'cli:test');
    await cli.close();
    await relay.close();
    const again = await relayWithTraffic(t, dataDir, 2);
    assertPrivate(t, dataDir, 'after a restart and more traffic');
    await again.close();
    assertPrivate(t, dataDir, 'after a clean stop');
  });
}

t.test('files and a directory left loose by an older version are tightened at start', async (t) => {
  withUmask(t, 0o022);
  const dataDir = premade(t);
  // An older relay: store and CA made with the umask's modes; a connection keeps the WAL alive.
  await loadOrCreateCa(dataDir);
  const old = openSqliteStore(dataDir);
  t.teardown(() => old.close());
  await old.users.put(
    { username: 'u', passwordHash: 'h', email: null, name: null, groups: [], roles: [], totpSecret: 'S', createdAt: 0 },
    'test',
    'user.add',
  );
  for (const f of ['proxyctl.db', 'proxyctl.db-wal', 'proxyctl.db-shm', 'ca-key.pem'])
    chmodSync(path.join(dataDir, f), 0o644);
  chmodSync(dataDir, 0o755);

  const relay = await relayWithTraffic(t, dataDir, 1);
  assertPrivate(t, dataDir, 'after start');
  await relay.close();
});

t.test('a data directory this process does not own is refused, and left as it was', async (t) => {
  const uid = process.geteuid?.();
  if (uid === undefined) return t.plan(0, 'no POSIX ownership here');
  // As root, hand a directory to another user; otherwise any root-owned directory serves (it is refused before anything is changed).
  let dir: string;
  if (uid === 0) {
    dir = premade(t);
    chownSync(dir, 65534, 65534);
  } else {
    dir = '/';
  }
  const before = { mode: modeOf(dir), entries: readdirSync(dir).sort() };
  t.throws(() => openSqliteStore(dir), { code: 'ERR_STATE_INVALID' }, 'the store refuses it');
  await t.rejects(loadOrCreateCa(dir), { code: 'ERR_STATE_INVALID' }, 'the CA refuses it');
  await t.rejects(
    Relay.create(parseRelayConfig(yaml, undefined, { dataDir: dir }), { log: silentLogger }),
    { code: 'ERR_STATE_INVALID' },
    'the relay does not start',
  );
  t.same({ mode: modeOf(dir), entries: readdirSync(dir).sort() }, before, 'nothing created, mode unchanged');
});

t.test('a data directory path that is a file is refused', async (t) => {
  const file = path.join(tempDir(t), 'not-a-dir');
  writeFileSync(file, 'x');
  t.throws(() => openSqliteStore(file), { code: 'ERR_STATE_INVALID' });
  await t.rejects(loadOrCreateCa(file), { code: 'ERR_STATE_INVALID' });
});

t.test(
  'connector state: key.pem 0600 and the directory 0700 whatever the umask, tightened when found loose',
  async (t) => {
    withUmask(t, 0o000);
    const ca = await loadOrCreateCa(path.join(tempDir(t), 'ca'));
    const { keyPem, csrPem } = await createKeyAndCsr('c');
    const id = '6f1c2a4e-0000-4000-8000-0000000000aa';
    const issued = await ca.signConnectorCsr(csrPem, { connectorId: id, lifetimeMs: 3_600_000 });
    const dir = premade(t);
    const state = {
      relayUrl: 'https://relay.example.com:8444/',
      connectorId: id,
      name: 'edge',
      group: 'default',
      registeredAt: new Date().toISOString(),
      certificateIssuedAt: new Date().toISOString(),
      serial: issued.serial,
      keyPem,
      certPem: issued.certPem,
      caPem: ca.certPem,
    };
    writeNewState(dir, state);
    t.equal(modeOf(dir), 0o700, 'pre-made 0755 directory tightened on registration');
    t.equal(modeOf(path.join(dir, 'key.pem')), 0o600, 'key.pem 0600 under umask 000');

    chmodSync(dir, 0o755);
    chmodSync(path.join(dir, 'key.pem'), 0o644); // restored from a backup, or copied by hand
    loadState(dir);
    t.equal(modeOf(dir), 0o700, 'directory tightened when the connector starts');
    t.equal(modeOf(path.join(dir, 'key.pem')), 0o600, 'key.pem tightened when the connector starts');
    t.equal(modeOf(path.join(dir, 'cert.pem')) & 0o022, 0, 'cert.pem writable by its owner only');
  },
);
