// `proxyctl relay migrate` as an operator runs it (the built binary: `npm run build`
// first): refused without a master key, then the copy; the configuration line it
// prints, added to the config, gives the admin commands the same connectors and
// users from PostgreSQL; a second copy is refused. Failures are exit 1 and one line.
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { KeyRing } from '../src/crypto/keyring.js';
import { generateMasterKey } from '../src/crypto/master-key.js';
import { openSqliteStore } from '../src/store/index.js';
import { runCli, tempDir, type CliResult } from './helpers/proc.js';
import { freshDatabase, pgAdmin } from './helpers/postgres.js';

const admin = await pgAdmin(t);

/** A database of its own, so the store is in the schema relays open; dropped when the test ends. */
const database = (t: Test): Promise<string> => freshDatabase(t, admin, 'pxe');

/** Failed as the CLI contract says: exit 1, nothing on stdout, one line on stderr naming `code`. */
function failedWith(t: Test, r: CliResult, code: string, what: string): void {
  t.equal(r.code, 1, `${what}: exit status 1`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
  t.match(r.stderr, new RegExp(`^proxyctl: [^\\n]+ \\[${code}\\]\\n$`), `${what}: one line naming ${code}`);
}

t.test('migrate a data directory, then administer the copy', async (t) => {
  const dir = tempDir(t, 'proxyctl-migrate-e2e-');
  const dataDir = path.join(dir, 'data');
  await loadOrCreateCa(dataDir);
  const store = openSqliteStore(dataDir);
  await KeyRing.load(store.keys);
  await store.connectors.register({
    id: 'c-e2e',
    name: 'edge',
    group: 'default',
    actor: 'admin',
    serial: '7E01',
    issuedAt: Date.now(),
    notAfter: Date.now() + 86_400_000,
  });
  await store.users.put(
    {
      username: 'alice',
      passwordHash: 'h',
      email: 'alice@example.com',
      name: null,
      groups: ['staff'],
      roles: [],
      totpSecret: null,
      createdAt: 1_000,
    },
    'admin',
    'user.add',
  );
  await store.close();
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, 'dataDir: ./data\n');
  const url = await database(t);

  failedWith(
    t,
    await runCli(['relay', 'migrate', '--config', config, '--to-postgres', url]),
    'ERR_MASTER_KEY',
    'no key',
  );

  writeFileSync(path.join(dir, 'master.key'), generateMasterKey(), { mode: 0o600 });
  writeFileSync(config, 'dataDir: ./data\nsecrets: { masterKeyFile: master.key }\n');
  const done = await runCli(['relay', 'migrate', '--config', config, '--to-postgres', url]);
  t.equal(done.code, 0, done.stderr);
  t.equal(done.stderr, '');
  const line = done.stdout.split('\n').find((l) => l.trimStart().startsWith('store: {'));
  t.ok(line, 'prints the configuration line');

  // What an operator does next: the printed line in the configuration of a replica.
  const replica = path.join(dir, 'replica.yaml');
  writeFileSync(replica, `dataDir: ./replica-data\n${line!.trim()}\nsecrets: { masterKeyFile: master.key }\n`);
  const listed = await runCli(['relay', 'connectors', 'list', '--config', replica, '--json']);
  t.equal(listed.code, 0, listed.stderr);
  t.match(JSON.parse(listed.stdout), [{ id: 'c-e2e', name: 'edge', status: 'offline' }]);
  const users = await runCli(['users', 'list', '--config', replica, '--json']);
  t.equal(users.code, 0, users.stderr);
  t.match(JSON.parse(users.stdout), [{ username: 'alice', email: 'alice@example.com' }]);

  failedWith(
    t,
    await runCli(['relay', 'migrate', '--config', config, '--to-postgres', url]),
    'ERR_STORE',
    'a second copy',
  );
});
