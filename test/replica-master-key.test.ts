// A replica refuses to start on a shared store without the master key its secrets were
// wrapped with, with a clear error, and leaves the store as it found it.
import t from 'tap';
import path from 'node:path';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { generateMasterKey, parseMasterKey } from '../src/crypto/master-key.js';
import { silentLogger } from '../src/log.js';
import { Relay } from '../src/relay/relay.js';
import { tempDir } from './helpers/proc.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';

/** One connection for the file (subtests' schemas are dropped through it as they end). */
const admin = await pgAdmin(t);

t.test('the master key decides whether a replica starts', async (t) => {
  const schema = freshSchema(t, admin, 'pxmk');
  const dir = tempDir(t);
  const config = (name: string) =>
    parseRelayConfig(
      `dataDir: ./${name}\nstore: { postgres: { url: "${PG_URL}", schema: ${schema} } }\n`,
      path.join(dir, 'relay.yaml'),
    );
  const keyA = parseMasterKey(generateMasterKey());
  const keyB = parseMasterKey(generateMasterKey());

  await t.rejects(Relay.create(config('none'), { log: silentLogger }), {
    code: 'ERR_MASTER_KEY',
    message: /store\.postgres needs a master key/,
  });

  const first = await Relay.create(config('r1'), { log: silentLogger, masterKey: keyA });
  const caPem = first.ca.certPem;
  await first.close();
  const stored = await admin.query<{ name: string; value: string }>(`SELECT name, value FROM ${schema}.secrets`);
  t.ok(stored.rows.length >= 1, 'the CA is kept in the store');
  for (const row of stored.rows) {
    t.match(row.value, new RegExp(`^pxk1\\.${keyA.id}\\.`), `${row.name} is wrapped with the master key`);
    t.notMatch(row.value, /PRIVATE KEY/);
  }
  const keys = await admin.query<{ material: string }>(`SELECT material FROM ${schema}.keys`);
  t.ok(keys.rows.length >= 2);
  for (const k of keys.rows) t.match(k.material, new RegExp(`^pxk1\\.${keyA.id}\\.`), 'key material is wrapped');

  await t.rejects(
    Relay.create(config('r2'), { log: silentLogger, masterKey: keyB }),
    { code: 'ERR_MASTER_KEY', message: new RegExp(`sealed with master key ${keyA.id}, this relay has ${keyB.id}`) },
    'a replica with another master key refuses to start, naming both keys',
  );
  const after = await admin.query<{ name: string; value: string }>(`SELECT name, value FROM ${schema}.secrets`);
  t.same(after.rows, stored.rows, 'the refused replica changed nothing');

  const second = await Relay.create(config('r3'), { log: silentLogger, masterKey: keyA });
  t.equal(second.ca.certPem, caPem, 'a replica with the right key reads the same CA');
  await second.close();
});
