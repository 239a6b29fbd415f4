// `proxyctl relay keys init-master` and `rotate-master`, on a SQLite data directory
// and on PostgreSQL (a database per test, so the configuration names the store as a
// user's would). A rotation re-seals every secret and key, sealing those stored in
// the clear, so that everything opens with the new key to what it was; every hostile
// case (the wrong current key, a bad or readable new key file, a value altered or
// moved in the store) is refused before anything is written.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { initMasterKey, rotateMasterKey } from '../src/commands/relay-keys.js';
import { KeyRing, keyAad, rotateKey } from '../src/crypto/keyring.js';
import {
  generateMasterKey,
  loadMasterKey,
  parseMasterKey,
  sealedKeyId,
  type MasterKey,
} from '../src/crypto/master-key.js';
import { CA_SECRET, IDP_SECRET, secretAad } from '../src/relay/shared-secrets.js';
import { openPostgresStore, openSqliteStore, type Store } from '../src/store/index.js';
import { tempDir } from './helpers/proc.js';
import { freshDatabase, pgAdmin } from './helpers/postgres.js';

const admin = await pgAdmin(t);

/** A database of its own (relays open the schema proxyctl in it), dropped when the test ends. */
const database = (t: Test): Promise<string> => freshDatabase(t, admin, 'pxr');

interface Setup {
  dir: string;
  config: string;
  current: MasterKey;
  currentFile: string;
  store: Store;
  /** Plaintexts by where they are stored: `secret:<name>` or `key:<kid>`. */
  plain: Map<string, string>;
}

const backends: Record<string, (t: Test, dir: string) => Promise<{ yaml: string; open: () => Promise<Store> }>> = {
  SQLite: async (_t, dir) => ({
    yaml: 'dataDir: ./data\n',
    open: async () => openSqliteStore(path.join(dir, 'data')),
  }),
  PostgreSQL: async (t) => {
    const url = await database(t);
    return {
      yaml: `dataDir: ./data\nstore: { postgres: { url: "${url}" } }\n`,
      open: () => openPostgresStore({ url }),
    };
  },
};

/** A key file with `text` and `mode`. */
function keyFile(dir: string, name: string, text: string, mode = 0o600): string {
  const file = path.join(dir, name);
  writeFileSync(file, text, { mode });
  chmodSync(file, mode);
  return file;
}

/** A store as replicas leave it: shared secrets and keys sealed with the current key, and some written in the clear. */
async function setup(t: Test, backend: string): Promise<Setup> {
  const dir = tempDir(t, 'proxyctl-rotate-master-');
  const { yaml, open } = await backends[backend]!(t, dir);
  const currentText = generateMasterKey();
  const current = parseMasterKey(currentText);
  const currentFile = keyFile(dir, 'current.key', currentText);
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, `${yaml}secrets: { masterKeyFile: current.key }\n`);
  const store = await open();
  t.teardown(() => store.close());
  const plain = new Map<string, string>();
  for (const [name, value] of [
    [CA_SECRET, '{"certPem":"CERT","keyPem":"KEY"}'],
    [IDP_SECRET, '{"jwks":{"keys":[]},"cookieKeys":["c"]}'],
  ] as const) {
    await store.secrets.putIfAbsent(name, current.wrap(value, secretAad(name)));
    plain.set(`secret:${name}`, value);
  }
  await store.secrets.putIfAbsent('written-plain', 'in the clear');
  plain.set('secret:written-plain', 'in the clear');
  await KeyRing.load(store.keys, current);
  await rotateKey(store.keys, 'session', 'test'); // by a CLI that had no key: in the clear
  for (const k of await store.keys.all())
    plain.set(
      `key:${k.kid}`,
      k.material.startsWith('pxk1.') ? current.unwrap(k.material, keyAad(k.purpose, k.kid)) : k.material,
    );
  return { dir, config, current, currentFile, store, plain };
}

/** What the store holds now, sealed or not. */
async function stored(store: Store): Promise<Map<string, { value: string; purpose: string }>> {
  const out = new Map<string, { value: string; purpose: string }>();
  for (const s of await store.secrets.list())
    out.set(`secret:${s.name}`, { value: s.value, purpose: secretAad(s.name) });
  for (const k of await store.keys.all())
    out.set(`key:${k.kid}`, { value: k.material, purpose: keyAad(k.purpose, k.kid) });
  return out;
}

async function rotate(s: Setup, newKeyFile: string, env: Record<string, string> = {}): Promise<string[]> {
  const lines: string[] = [];
  await rotateMasterKey({ config: s.config, newKeyFile }, (l) => lines.push(l), env);
  return lines;
}

for (const backend of Object.keys(backends)) {
  t.test(`${backend}: everything is sealed with the new key, opening to what it was`, async (t) => {
    const s = await setup(t, backend);
    const ringBefore = await KeyRing.load(s.store.keys, s.current);
    const newFile = path.join(s.dir, 'new.key');
    const made: string[] = [];
    initMasterKey({ out: newFile }, (l) => made.push(l));
    const next = loadMasterKey({ file: newFile, env: {} })!;
    t.match(made[0], `id ${next.id}`);

    const lines = await rotate(s, newFile);
    t.match(lines[0], `sealed 6 secrets and keys with the new master key ${next.id} (2 were stored in the clear)`);
    t.match(lines[1], `at the new key (${next.id})`);
    const after = await stored(s.store);
    t.same([...after.keys()].sort(), [...s.plain.keys()].sort(), 'the same secrets and keys');
    for (const [where, { value, purpose }] of after) {
      t.equal(sealedKeyId(value), next.id, `${where} is sealed with the new key`);
      t.equal(next.unwrap(value, purpose), s.plain.get(where), `${where} opens to what it was`);
    }
    const ringAfter = await KeyRing.load(s.store.keys, next);
    t.same(ringAfter.session, ringBefore.session, 'a relay with the new key has the same session keys');
    t.same(ringAfter.jwks(), ringBefore.jwks());
    await t.rejects(KeyRing.load(s.store.keys, s.current), { code: 'ERR_MASTER_KEY' }, 'the old key opens nothing');
    t.match(await s.store.audit.list(3), [
      { action: 'secret.put' },
      { action: 'secret.put' },
      { action: 'secret.put' },
    ]);

    // Interrupted and run again (the config still names the old key): what has the new key is left alone.
    const again = await rotate(s, newFile);
    t.match(again[0], 'sealed 0 secrets and keys with the new master key');
    t.match(again[0], '6 already had the new key');
    t.same(await stored(s.store), after, 'nothing rewritten');

    // The next rotation starts from the new key, here given in the environment.
    writeFileSync(s.config, readFileSync(s.config, 'utf8').replace('secrets: { masterKeyFile: current.key }\n', ''));
    const thirdFile = keyFile(s.dir, 'third.key', generateMasterKey());
    const thirdKey = loadMasterKey({ file: thirdFile, env: {} })!;
    await rotate(s, thirdFile, { PROXYCTL_MASTER_KEY: readFileSync(newFile, 'utf8') });
    for (const [where, { value, purpose }] of await stored(s.store))
      t.equal(thirdKey.unwrap(value, purpose), s.plain.get(where), `${where} after a second rotation`);
  });

  t.test(`${backend}: refused before anything is written`, async (t) => {
    const cases: {
      name: string;
      code: string;
      /** Returns the --new-key-file to use. */
      prepare: (s: Setup) => Promise<string> | string;
    }[] = [
      {
        name: 'the wrong current key',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => {
          keyFile(s.dir, 'current.key', generateMasterKey());
          return keyFile(s.dir, 'new.key', generateMasterKey());
        },
      },
      {
        name: 'no current key, with sealed values in the store',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => {
          writeFileSync(
            s.config,
            readFileSync(s.config, 'utf8').replace('secrets: { masterKeyFile: current.key }\n', ''),
          );
          return keyFile(s.dir, 'new.key', generateMasterKey());
        },
      },
      {
        name: 'a new key file that is not base64',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => keyFile(s.dir, 'new.key', 'not base64 at all!\n'),
      },
      {
        name: 'a new key file in hex',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => keyFile(s.dir, 'new.key', randomBytes(32).toString('hex')),
      },
      {
        name: 'a new key file of 16 bytes',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => keyFile(s.dir, 'new.key', randomBytes(16).toString('base64')),
      },
      {
        name: 'a new key file others may read',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => keyFile(s.dir, 'new.key', generateMasterKey(), 0o644),
      },
      {
        name: 'a new key file its group may read',
        code: 'ERR_MASTER_KEY',
        prepare: (s) => keyFile(s.dir, 'new.key', generateMasterKey(), 0o640),
      },
      { name: 'no new key file', code: 'ERR_MASTER_KEY', prepare: (s) => path.join(s.dir, 'missing.key') },
      { name: 'the new key is the current one', code: 'ERR_USAGE', prepare: (s) => s.currentFile },
      {
        name: 'a key altered in the store (after secrets that would have been rewritten)',
        code: 'ERR_MASTER_KEY',
        prepare: async (s) => {
          const k = (await s.store.keys.all()).find((x) => x.material.startsWith('pxk1.'))!;
          const parts = k.material.split('.');
          parts[3] = (parts[3]![0] === 'A' ? 'B' : 'A') + parts[3]!.slice(1);
          await s.store.keys.setMaterial(k.kid, parts.join('.'));
          return keyFile(s.dir, 'new.key', generateMasterKey());
        },
      },
      {
        name: 'a secret moved under another name',
        code: 'ERR_MASTER_KEY',
        prepare: async (s) => {
          await s.store.secrets.put(IDP_SECRET, (await s.store.secrets.get(CA_SECRET))!, 'mallory');
          return keyFile(s.dir, 'new.key', generateMasterKey());
        },
      },
      {
        name: 'a key sealed with a third key',
        code: 'ERR_MASTER_KEY',
        prepare: async (s) => {
          await rotateKey(s.store.keys, 'assertion', 'test', undefined, parseMasterKey(generateMasterKey()));
          return keyFile(s.dir, 'new.key', generateMasterKey());
        },
      },
      {
        name: 'a value shaped as sealed that is not',
        code: 'ERR_MASTER_KEY',
        prepare: async (s) => {
          await s.store.secrets.put('odd', 'pxk1.garbage', 'mallory');
          return keyFile(s.dir, 'new.key', generateMasterKey());
        },
      },
    ];
    for (const c of cases) {
      t.test(c.name, async (t) => {
        const s = await setup(t, backend);
        const newKeyFile = await c.prepare(s);
        const before = await stored(s.store);
        const audit = (await s.store.audit.list(1))[0]?.id;
        const err = await rotate(s, newKeyFile).then(
          () => undefined,
          (e: unknown) => e as { code?: string; message: string },
        );
        t.equal(err?.code, c.code, err?.message ?? 'accepted');
        t.same(await stored(s.store), before, 'every secret and key as it was');
        t.equal((await s.store.audit.list(1))[0]?.id, audit, 'nothing audited');
      });
    }
  });
}

t.test('init-master: a new owner-only file, never an existing one', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'master.key');
  const umask = process.umask(0);
  t.teardown(() => process.umask(umask));
  const lines: string[] = [];
  initMasterKey({ out: file }, (l) => lines.push(l));
  t.equal(statSync(file).mode & 0o777, 0o600, '0600 whatever the umask');
  const key = loadMasterKey({ file, env: {} })!;
  t.match(lines[0], `wrote a new master key (id ${key.id}) to ${file}`);
  t.match(readFileSync(file, 'utf8'), /^[A-Za-z0-9_-]{43}\n$/);

  const text = readFileSync(file, 'utf8');
  t.throws(() => initMasterKey({ out: file }, () => undefined), { code: 'ERR_USAGE' }, 'an existing file is refused');
  t.equal(readFileSync(file, 'utf8'), text, 'and left as it was');
  t.throws(
    () => initMasterKey({ out: path.join(dir, 'missing', 'master.key') }, () => undefined),
    { code: 'ERR_STATE_INVALID' },
    'a directory that does not exist',
  );
  const other = path.join(dir, 'other.key');
  initMasterKey({ out: other }, () => undefined);
  t.not(readFileSync(other, 'utf8'), text, 'a new key each time');
});

t.test('rotate-master: a store that does not exist yet is not created', async (t) => {
  const dir = tempDir(t);
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, 'dataDir: ./data\n');
  const newKeyFile = keyFile(dir, 'new.key', generateMasterKey());
  await t.rejects(
    rotateMasterKey({ config, newKeyFile }, () => undefined, {}),
    { code: 'ERR_STORE' },
  );
});
