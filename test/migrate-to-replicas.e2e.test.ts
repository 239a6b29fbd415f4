// From one relay on SQLite to replicas on PostgreSQL, through the real binary: two
// connectors registered and a user added before; `relay migrate`; two replicas start on
// PostgreSQL; the same connector processes, with their old certificates and without
// registering again, serve traffic through both replicas.
import t from 'tap';
import { createServer } from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { generateMasterKey } from '../src/crypto/master-key.js';
import { startIdp } from './helpers/idp.js';
import { Proc, runCli, tempDir, type LogLine } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';

/** One connection for the file (subtests' schemas are dropped through it as they end). */
const admin = await pgAdmin(t);

t.test('migrate a data directory with two connectors and a user, then serve from two replicas', async (t) => {
  const schema = freshSchema(t, admin, 'pxmig');
  const backend = createServer((req, res) => {
    req.resume();
    res.end(`hello ${req.url}`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.teardown(() => backend.close());
  const bport = (backend.address() as { port: number }).port;
  const idp = await startIdp();
  t.teardown(() => idp.close());
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'master.key'), generateMasterKey(), { mode: 0o600 });

  const yaml = (data: string, api: number, store: string) => `dataDir: ./${data}
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:${api}" }
identity: { issuer: "${idp.issuer}" }
connectors: { heartbeatInterval: 500ms }
limits: { perIp: false }
secrets: { masterKeyFile: ./master.key }
${store}apps:
  - { name: open, externalUrl: "https://open.test/", internalUrl: "http://127.0.0.1:${bport}/open/", preauth: passthrough }
`;
  const serve = async (name: string, text: string) => {
    const file = path.join(dir, `${name}.yaml`);
    writeFileSync(file, text);
    const proc = new Proc(['relay', 'serve', '--config', file]);
    t.teardown(() => proc.stop('SIGKILL'));
    const apiUrl = String((await proc.waitMsg('connector API listening', 30_000))['url']);
    const port = ((await proc.waitMsg('public listener ready'))['listen'] as { port: number }).port;
    await proc.waitMsg('relay ready');
    return { proc, apiUrl, port, file };
  };

  // One relay on SQLite: two connectors and a user.
  const single = await serve('single', yaml('data', 0, ''));
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, await idp.adminToken());
  const ca = path.join(dir, 'data', 'ca.pem');
  const states = ['s1', 's2'].map((s) => path.join(dir, s));
  for (const [i, s] of states.entries()) {
    const reg = await runCli([
      'connector',
      'register',
      '--relay',
      single.apiUrl,
      '--token-file',
      tokenFile,
      '--relay-ca',
      ca,
      '--name',
      `edge-${i + 1}`,
      '--state-dir',
      s,
    ]);
    t.equal(reg.code, 0, reg.stderr);
  }
  const added = await runCli(['users', 'add', 'carol', '--config', single.file]);
  t.equal(added.code, 0, added.stderr);
  const apiPort = Number(new URL(single.apiUrl).port);
  await single.proc.stop();

  // Copy into PostgreSQL.
  const url = `${PG_URL}`;
  const migrated = await runCli([
    'relay',
    'migrate',
    '--config',
    single.file,
    '--to-postgres',
    url,
    '--schema',
    schema,
  ]);
  t.equal(migrated.code, 0, migrated.stderr);
  t.match(migrated.stdout, /connector/);

  // Two replicas on PostgreSQL; the first answers on the URL the connectors registered with.
  const store = `store: { postgres: { url: "${PG_URL}", schema: ${schema} } }\n`;
  const r1 = await serve('r1', yaml('r1', apiPort, store));
  const r2 = await serve('r2', yaml('r2', 0, store));
  t.equal(
    readFileSync(path.join(dir, 'r2', 'ca.pem'), 'utf8'),
    readFileSync(ca, 'utf8'),
    'the replicas use the CA the connectors trust',
  );
  const users = await runCli(['users', 'list', '--config', r2.file, '--json']);
  t.equal(users.code, 0, users.stderr);
  t.match(users.stdout, /carol/, 'the user moved with the store');

  const connectors = states.map((s) => {
    const p = new Proc(['connector', 'run', '--state-dir', s]);
    t.teardown(() => p.stop('SIGKILL'));
    return p;
  });
  const open = (r: { proc: Proc }) =>
    r.proc.lines.filter((l: LogLine) => l.msg === 'connector channel open').length -
    r.proc.lines.filter((l: LogLine) => l.msg === 'connector channel closed').length;
  await waitFor(() => open(r1) === 4 && open(r2) === 4, { timeoutMs: 20_000 });
  t.pass('both old connectors, unchanged, hold channels to both replicas');
  t.equal(connectors.filter((c) => c.child.exitCode === null).length, 2, 'neither connector stopped');

  const client = new Agent({
    connect: {
      ca: readFileSync(ca, 'utf8'),
      lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
    },
  });
  t.teardown(() => client.close());
  for (const r of [r1, r2]) {
    for (let i = 0; i < 5; i++) {
      const res = await request(`https://open.test:${r.port}/x${i}`, { dispatcher: client });
      t.equal(res.statusCode, 200);
      t.equal(await res.body.text(), `hello /open/x${i}`);
    }
  }
});
