// Conditional Access with device certificates: the public listener asks for an
// optional client certificate chained to `devices.caFile`, and a policy with
// `requireDeviceCertificate` lets in only browsers that present one. Without a
// certificate, or with one from another CA, the sign-in ends on a denial page
// naming the policy, and the sign-in log records the policy's result.
// Regression: every SNI context must verify client certificates against the
// device CA only (device certificates were refused on named hosts, and
// certificates from the process's default roots were accepted).
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { Agent, request } from 'undici';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { startHarness } from './helpers/harness.js';
import { Proc, tempDir } from './helpers/proc.js';
import { addUser } from './helpers/users.js';
import { closeSession, h2Request, h2Session } from './helpers/h2-client.js';
import { openSqliteStore } from '../src/store/index.js';

const POLICY = 'managed-devices-only';

t.test('device certificates', async (t) => {
  const dir = tempDir(t, 'proxyctl-devices-');
  // The organisation's device CA and one managed device; a second, unrelated CA.
  const deviceCa = await loadOrCreateCa(path.join(dir, 'device-ca'));
  const otherCa = await loadOrCreateCa(path.join(dir, 'other-ca'));
  const caFile = path.join(dir, 'devices-ca.pem');
  writeFileSync(caFile, deviceCa.certPem);
  const device = await createKeyAndCsr('device-1');
  const deviceCert = await deviceCa.signConnectorCsr(device.csrPem, { connectorId: 'device-1', lifetimeMs: 3_600_000 });
  const foreign = await createKeyAndCsr('device-1');
  const foreignCert = await otherCa.signConnectorCsr(foreign.csrPem, {
    connectorId: 'device-1',
    lifetimeMs: 3_600_000,
  });

  const backend = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ user: req.headers['x-proxyctl-user'], url: req.url }));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        backend.closeAllConnections();
        backend.close(() => r());
      }),
  );
  const bport = (backend.address() as { port: number }).port;
  const app = (name: string) =>
    `  - { name: ${name}, externalUrl: "https://${name}.test/", internalUrl: "http://127.0.0.1:${bport}/", clientId: "urn:${name}", clientSecret: ${name}-secret, assignment: any, identityHeaders: true }\n`;
  const h = await startHarness(t, {
    yaml: () => `devices: { caFile: "${caFile}" }
apps:
${app('managed')}${app('plain')}
policies:
  - name: ${POLICY}
    assignments: { users: { include: [all] }, apps: { include: [managed] } }
    grant: { requireDeviceCertificate: true }
`,
  });
  for (const name of ['managed', 'plain']) {
    h.idp.registerClient({
      clientId: `urn:${name}`,
      clientSecret: `${name}-secret`,
      redirectUris: [`https://${name}.test:${h.publicPort}/.proxyctl/callback`],
      postLogoutRedirectUris: [`https://${name}.test:${h.publicPort}/.proxyctl/signed-out`],
    });
  }
  h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: [] });
  await h.addConnector();

  const agentWith = (cert: { certPem: string }, keyPem: string) => {
    const agent = new Agent({
      connect: {
        ca: h.relay.ca.certPem,
        cert: cert.certPem,
        key: keyPem,
        lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
      },
    });
    t.teardown(() => agent.close());
    return agent;
  };
  const managedDevice = agentWith(deviceCert, device.keyPem);
  const foreignDevice = agentWith(foreignCert, foreign.keyPem);
  const signInsAfter = async (id: number) => await h.relay.store.signIns.list(1000, id);
  const lastId = async () => (await h.relay.store.signIns.list(1000)).at(-1)?.id ?? 0;

  await t.test('(a) a browser presenting the device certificate reaches the app', async (t) => {
    const from = await lastId();
    const sim = new BrowserSim(managedDevice);
    const r = await sim.signIn(h.url('managed.test', '/page'), 'alice');
    t.equal(
      r.status,
      200,
      `the managed device is let in (got ${r.status}: ${/ERR_[A-Z_]+/.exec(r.body)?.[0] ?? r.body.slice(0, 80)})`,
    );
    if (r.status === 200) t.same(JSON.parse(r.body), { user: 'alice', url: '/page' });
    const log = await signInsAfter(from);
    const ok = log.find((e) => e.app === 'managed' && e.result === 'success');
    t.ok(ok, 'the successful sign-in is logged');
    if (ok) t.match(ok.policies, [{ name: POLICY, applies: true, outcome: 'granted', missing: [] }]);
  });

  await t.test('(b) a browser without a client certificate gets the denial page', async (t) => {
    const from = await lastId();
    const sim = new BrowserSim(h.client);
    const r = await sim.signIn(h.url('managed.test', '/page'), 'alice');
    t.equal(r.status, 403);
    t.match(r.body, /ERR_POLICY_DENIED/);
    t.match(r.body, POLICY, 'the page names the policy');
    t.match(r.body, /device certificate/, 'and what would satisfy it');
    t.ok(r.headers['x-request-id'], 'a request id to quote');
    t.notOk(sim.jar.get(`managed.test:${h.publicPort}`, '__Host-proxyctl-managed'), 'no session cookie');

    const denied = (await signInsAfter(from)).filter((e) => e.app === 'managed');
    t.equal(denied.length, 1, 'one sign-in attempt logged');
    t.match(denied[0], {
      result: 'failure',
      subject: 'alice',
      reason: `policy ${POLICY}`,
      ip: '127.0.0.1',
      requestId: String(r.headers['x-request-id']),
    });
    t.match(
      denied[0]!.policies,
      [{ name: POLICY, state: 'on', applies: true, outcome: 'unsatisfied', missing: ['deviceCertificate'] }],
      "the policy's result is recorded",
    );

    // The same browser (still signed in at the provider), an app no policy covers: allowed without a certificate.
    const plain = await sim.follow(h.url('plain.test', '/'));
    t.equal(plain.status, 200, 'apps without the policy need no certificate');
  });

  await t.test('(c) a client certificate from another CA is denied too', async (t) => {
    const from = await lastId();
    const sim = new BrowserSim(foreignDevice);
    const r = await sim.signIn(h.url('managed.test', '/page'), 'alice');
    t.equal(r.status, 403, 'a certificate that does not chain to the device CA is no device certificate');
    t.match(r.body, /ERR_POLICY_DENIED/);
    t.match(r.body, POLICY);
    const denied = (await signInsAfter(from)).find((e) => e.app === 'managed');
    t.match(denied, { result: 'failure', reason: `policy ${POLICY}` });
    t.match(denied?.policies, [{ name: POLICY, outcome: 'unsatisfied', missing: ['deviceCertificate'] }]);
  });

  await t.test('scripts without a certificate get 403 JSON naming the policy', async (t) => {
    const token = await h.idp.adminToken({ audience: 'urn:managed', roles: [] });
    const r = await request(h.url('managed.test', '/api'), {
      dispatcher: h.client,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    t.equal(r.statusCode, 403);
    const body = (await r.body.json()) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'ERR_POLICY_DENIED');
    t.match(body.error.message, POLICY);
  });

  await t.test('over HTTP/2 the device certificate counts the same', async (t) => {
    const token = await h.idp.adminToken({ audience: 'urn:managed', roles: [] });
    const headers = { ':method': 'GET', ':path': '/api', authorization: `Bearer ${token}`, accept: 'application/json' };
    const base = { ca: h.relay.ca.certPem, port: h.publicPort, host: 'managed.test' };
    const withCert = h2Session({ ...base, cert: deviceCert.certPem, key: device.keyPem });
    const without = h2Session(base);
    t.teardown(() => Promise.all([closeSession(withCert), closeSession(without)]));
    const ok = await h2Request(withCert, headers);
    t.equal(ok.status, 200, 'a device certificate on an h2 connection satisfies the policy');
    t.equal((JSON.parse(ok.body.toString()) as { url: string }).url, '/api');
    const denied = await h2Request(without, headers);
    t.equal(denied.status, 403, 'none: denied');
    t.equal((JSON.parse(denied.body.toString()) as { error: { code: string } }).error.code, 'ERR_POLICY_DENIED');
  });
});

// The built binary (`npm run build` first), because the process trust store can
// only be extended at start (NODE_EXTRA_CA_CERTS): a client certificate from a
// CA the process trusts for other reasons is still no device certificate.
t.test('(d) a certificate chained to the system trust store, not the device CA, is denied', async (t) => {
  const dir = tempDir(t, 'proxyctl-devices-bb-');
  await loadOrCreateCa(path.join(dir, 'device-ca')); // devices.caFile: ./device-ca/ca.pem
  const systemCa = await loadOrCreateCa(path.join(dir, 'system-ca')); // stands in for a public CA in Node's root store
  const k = await createKeyAndCsr('laptop');
  const cert = await systemCa.signConnectorCsr(k.csrPem, { connectorId: 'laptop', lifetimeMs: 3_600_000 });
  writeFileSync(
    path.join(dir, 'relay.yaml'),
    `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
limits: { perIp: false }
connectors: { queueTimeout: 500ms }
devices: { caFile: ./device-ca/ca.pem }
apps:
  - { name: managed, externalUrl: "https://managed.localhost/", internalUrl: "http://127.0.0.1:9/", assignment: any }
policies:
  - name: ${POLICY}
    assignments: { users: { include: [all] }, apps: { include: [managed] } }
    grant: { requireDeviceCertificate: true }
`,
  );
  const seed = openSqliteStore(path.join(dir, 'data'));
  await addUser(seed, 'alice', 'alice password');
  await seed.close();
  const relay = new Proc(['relay', 'serve', '--config', path.join(dir, 'relay.yaml')], {
    env: { NODE_EXTRA_CA_CERTS: path.join(dir, 'system-ca', 'ca.pem') },
  });
  t.teardown(() => relay.stop());
  const ready = await relay.waitMsg('public listener ready');
  const port = (ready['listen'] as { port: number }).port;
  const agent = new Agent({
    connect: {
      ca: readFileSync(path.join(dir, 'data', 'ca.pem')),
      cert: cert.certPem,
      key: k.keyPem,
      lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
    },
  });
  t.teardown(() => agent.close().catch(() => undefined));
  const sim = new BrowserSim(agent);
  const r = await sim.signIn(`https://managed.localhost:${port}/`, 'alice', { password: 'alice password' });
  // Regression (security): a certificate from a CA the process trusts by default is not a device certificate.
  t.equal(r.status, 403, `denied (got ${r.status}: ${/ERR_[A-Z_]+/.exec(r.body)?.[0] ?? r.body.slice(0, 80)})`);
  const store = openSqliteStore(path.join(dir, 'data'));
  t.teardown(() => store.close());
  const attempt = (await store.signIns.list(100)).find((e) => e.app === 'managed');
  t.match(attempt, { result: 'failure', reason: `policy ${POLICY}` }, 'logged as a policy denial');
  t.equal(await relay.stop('SIGTERM'), 0, 'the relay stops cleanly');
});
