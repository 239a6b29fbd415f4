// Black-box (the built binary): `proxyctl relay connectors revoke <arg>` refuses an
// argument that could mean two connectors (regression: with duplicate names, or a name
// equal to another connector's id, revoke silently picked by id). The store is seeded
// as an older relay could have left it; `id:` and `name:` say which one is meant.
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import t from 'tap';
import { openSqliteStore } from '../src/store/index.js';
import { runCli, tempDir } from './helpers/proc.js';

interface Row {
  id: string;
  name: string;
  status: string;
}

t.test('revoke refuses an ambiguous argument and revokes nothing; id: and name: disambiguate', async (t) => {
  const dataDir = path.join(tempDir(t), 'data');
  const victim = randomUUID();
  const impostor = randomUUID();
  const twins = [randomUUID(), randomUUID()];
  const store = openSqliteStore(dataDir);
  await store.connectors.register({
    id: victim,
    name: 'edge-1',
    group: 'default',
    actor: 'test',
    serial: 'AA01',
    issuedAt: Date.now(),
    notAfter: Date.now() + 3_600_000,
  });
  await store.close();
  const raw = new Database(path.join(dataDir, 'proxyctl.db'));
  const insert = raw.prepare(
    `INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES (?, ?, 'default', ?, 'legacy')`,
  );
  insert.run(impostor, victim, Date.now()); // named like the victim's id
  for (const id of twins) insert.run(id, 'twin', Date.now());
  raw.close();

  const list = async (): Promise<Row[]> =>
    JSON.parse((await runCli(['relay', 'connectors', 'list', '--data-dir', dataDir, '--json'])).stdout) as Row[];
  const revoked = async (): Promise<string[]> =>
    (await list())
      .filter((r) => r.status === 'revoked')
      .map((r) => r.id)
      .sort();
  const revoke = (arg: string) => runCli(['relay', 'connectors', 'revoke', arg, '--data-dir', dataDir]);

  for (const [what, arg] of [
    ["one connector's id, another's name", victim],
    ['a name two connectors have', 'twin'],
    ['name: on twins', 'name:twin'],
  ] as const) {
    const r = await revoke(arg);
    t.equal(r.code, 1, `${what}: exit 1`);
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
    t.match(r.stderr, /\[ERR_USAGE\]$/m, `${what}: ERR_USAGE`);
  }
  const missing = await revoke('nobody');
  t.equal(missing.code, 1);
  t.match(missing.stderr, /\[ERR_CONNECTOR_NOT_FOUND\]/);
  t.same(await revoked(), [], 'nothing was revoked');

  const byId = await revoke(`id:${victim}`);
  t.equal(byId.code, 0, byId.stderr);
  t.match(byId.stdout, new RegExp(`revoked connector ${victim}`));
  const byName = await revoke(`name:${victim}`);
  t.equal(byName.code, 0, byName.stderr);
  t.match(byName.stdout, new RegExp(`revoked connector ${impostor}`));
  t.same(await revoked(), [victim, impostor].sort(), 'each prefix revoked the one it names, and only it');
  const twin = await revoke(`id:${twins[0]}`);
  t.equal(twin.code, 0, twin.stderr);
  const last = await revoke('twin');
  t.equal(last.code, 0, 'with one twin revoked, the name means the live one');
  t.match(last.stdout, new RegExp(`revoked connector ${twins[1]}`));
});
