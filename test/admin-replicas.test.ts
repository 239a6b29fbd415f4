// API objects reach every replica: two relays sharing a PostgreSQL store, an app and a
// policy published through one replica's operations are in force on the other within
// the change feed's delay, and a removal too; an object the file of one replica clashes
// with is left out there (the file wins) and reported, while the other serves it.
import t from 'tap';
import path from 'node:path';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { generateMasterKey, parseMasterKey } from '../src/crypto/master-key.js';
import { silentLogger } from '../src/log.js';
import { Relay } from '../src/relay/relay.js';
import { tempDir } from './helpers/proc.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';
import { waitFor } from './helpers/wait.js';

const admin = await pgAdmin(t);

t.test('objects published on one replica are in force on the other', async (t) => {
  const schema = freshSchema(t, admin, 'pxao');
  const dir = tempDir(t);
  const key = parseMasterKey(generateMasterKey());
  const config = (name: string, extra = '') =>
    parseRelayConfig(
      `dataDir: ./${name}
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "https://idp.invalid" }
store: { postgres: { url: "${PG_URL}", schema: ${schema} } }
${extra}`,
      path.join(dir, `${name}.yaml`),
    );
  const a = await Relay.create(config('a'), { log: silentLogger, masterKey: key, storeWatchMs: 100 });
  t.teardown(() => a.close());
  // Replica b's own file publishes a host the API will try to take.
  const b = await Relay.create(
    config(
      'b',
      `apps:
  - name: legacy
    externalUrl: "https://legacy.test/"
    internalUrl: "http://127.0.0.1:9/"
    preauth: passthrough
`,
    ),
    { log: silentLogger, masterKey: key, storeWatchMs: 100 },
  );
  t.teardown(() => b.close());
  await a.start();
  await b.start();
  const ops = a.operations({ subject: 'alice', name: null, role: 'admin', via: 'token' });
  const names = (r: Relay) => r.currentConfig.apps.map((x) => x.name);

  await ops.publishApp({
    name: 'docs',
    externalUrl: 'https://docs.test/',
    internalUrl: 'http://127.0.0.1:9/',
    preauth: 'passthrough',
  });
  t.ok(names(a).includes('docs'), 'in force on the replica that published it when the call returns');
  await waitFor(() => names(b).includes('docs'), { timeoutMs: 5000, what: 'the app on the other replica' });
  t.pass('in force on the other replica');

  await ops.putPolicy('block-docs', {
    assignments: { users: { include: ['all'] }, apps: { include: ['docs'] } },
    grant: { block: true },
  });
  await waitFor(() => b.currentConfig.access.policies.some((p) => p.name === 'block-docs'), {
    timeoutMs: 5000,
    what: 'the policy on the other replica',
  });
  t.pass('the policy too');

  // The same host as b's file app: a validates it (its file has no such app), b leaves it out.
  await ops.publishApp({
    name: 'clash',
    externalUrl: 'https://legacy.test/',
    internalUrl: 'http://127.0.0.1:9/',
    preauth: 'passthrough',
  });
  await waitFor(() => names(a).includes('clash'), { timeoutMs: 5000, what: 'the clash app on a' });
  const bView = b.operations({ subject: 'bob', name: null, role: 'reader', via: 'token' });
  await waitFor(async () => (await bView.getApp('clash')).inForce === false, {
    timeoutMs: 5000,
    what: 'b to report the clash',
  });
  const clash = await bView.getApp('clash');
  t.match(clash.problem, /externalUrl/, 'b says why it is not in force there');
  t.notOk(names(b).includes('clash'), "b's file wins on b");
  t.ok(names(b).includes('legacy'));
  t.ok(names(b).includes('docs'), 'the rest stays in force on b');

  await ops.removePolicy('block-docs');
  await ops.removeApp('docs');
  await waitFor(() => !names(b).includes('docs'), { timeoutMs: 5000, what: 'the removal on the other replica' });
  t.notOk(
    b.currentConfig.access.policies.some((p) => p.name === 'block-docs'),
    'the policy is gone on the other replica',
  );
  const audit = await a.store.audit.query({ action: 'app.', order: 'asc' });
  t.same(
    audit.map((e) => [e.action, e.actor]),
    [
      ['app.publish', 'api:alice'],
      ['app.publish', 'api:alice'],
      ['app.remove', 'api:alice'],
    ],
    'audited once, by the replica that made the change, with the caller',
  );
});
