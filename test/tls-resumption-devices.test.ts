// Session resumption and device certificates (Conditional Access): a resumed session carries
// the device certificate of the handshake it began with (the client proved its key then) and
// passes the policy again; a session begun without one stays without one; a session whose
// device certificate expired since is treated as having none; and a session verified against
// another device CA (the relay restarted with a new devices.caFile, same store and ticket
// keys) is not resumed at all: a full handshake, where the certificate is checked again.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { Relay } from '../src/relay/relay.js';
import { startHeaderEcho } from './helpers/backend.js';
import { relayYaml, startHarness, testLogger } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';
import { visit } from './helpers/tls-session.js';

const POLICY = 'managed-devices-only';

t.test('a resumed session does not get around the device certificate check', async (t) => {
  const dir = tempDir(t, 'proxyctl-resume-devices-');
  const deviceCa = await loadOrCreateCa(path.join(dir, 'device-ca'));
  const otherCa = await loadOrCreateCa(path.join(dir, 'other-ca'));
  const caFile = path.join(dir, 'devices-ca.pem');
  const otherCaFile = path.join(dir, 'other-devices-ca.pem');
  writeFileSync(caFile, deviceCa.certPem);
  writeFileSync(otherCaFile, otherCa.certPem);
  const device = await createKeyAndCsr('device-1');
  // One minute of life: the relay's clock is moved past it below (TLS itself reads the wall clock).
  const deviceCert = await deviceCa.signConnectorCsr(device.csrPem, { connectorId: 'device-1', lifetimeMs: 60_000 });

  const bport = await startHeaderEcho(t);
  const apps = `apps:
  - { name: managed, externalUrl: "https://managed.test/", internalUrl: "http://127.0.0.1:${bport}/", clientId: "urn:managed", clientSecret: managed-secret, assignment: any }
policies:
  - name: ${POLICY}
    assignments: { users: { include: [all] }, apps: { include: [managed] } }
    grant: { requireDeviceCertificate: true }
`;
  let offsetMs = 0;
  const h = await startHarness(t, {
    yaml: () => `devices: { caFile: "${caFile}" }\n${apps}`,
    now: () => Date.now() + offsetMs,
  });
  await h.addConnector();
  const token = await h.idp.adminToken({ audience: 'urn:managed', roles: [] });
  const ca = h.relay.ca.certPem;
  const call = (port: number, opts: { session?: Buffer | undefined; device?: boolean } = {}) =>
    visit(port, 'managed.test', {
      ca,
      path: '/api',
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
      ...(opts.session ? { session: opts.session } : {}),
      ...(opts.device ? { cert: deviceCert.certPem, key: device.keyPem } : {}),
    });
  const code = (body: string) => /ERR_[A-Z_]+/.exec(body)?.[0];

  const withDevice = await call(h.publicPort, { device: true });
  t.equal(withDevice.status, 200, `the device certificate passes the policy (${code(withDevice.body) ?? 'ok'})`);
  const without = await call(h.publicPort);
  t.equal(without.status, 403, 'no certificate: denied');
  t.equal(code(without.body), 'ERR_POLICY_DENIED');

  await t.test('the device session resumes with its certificate', async (t) => {
    const r = await call(h.publicPort, { session: withDevice.session });
    t.ok(r.reused, 'resumed (no certificate offered this time)');
    t.equal(r.status, 200, 'the resumed session carries the device certificate it was verified with');
  });

  await t.test('a session without a certificate stays without one', async (t) => {
    const r = await call(h.publicPort, { session: without.session });
    t.ok(r.reused);
    t.equal(r.status, 403);
    t.equal(code(r.body), 'ERR_POLICY_DENIED');
  });

  await t.test('a session with another device CA in force is not resumed', async (t) => {
    const start = async (file: string, name: string) => {
      const yaml = relayYaml(h.idp.issuer, `devices: { caFile: "${file}" }\n${apps}`);
      const relay = await Relay.create(parseRelayConfig(yaml, path.join(h.dir, `${name}.yaml`)), {
        log: testLogger(),
        storeWatchMs: 100,
      });
      t.teardown(() => relay.close());
      await relay.start();
      return relay;
    };
    // Replicas on the same data directory (same store, same ticket keys).
    const same = await start(caFile, 'same-ca');
    const other = await start(otherCaFile, 'other-ca');
    const control = await call(same.publicAddress().port, { session: withDevice.session });
    t.ok(control.reused, 'a replica with the same device CA resumes it');
    const r = await call(other.publicAddress().port, { session: withDevice.session });
    t.notOk(r.reused, 'a replica trusting another device CA does a full handshake');
    t.equal(r.status, 403, 'where no device certificate is presented: denied');
  });

  await t.test('a device certificate that expired since the session began is none', async (t) => {
    const fresh = await call(h.publicPort, { device: true });
    t.equal(fresh.status, 200);
    offsetMs = 120_000;
    t.teardown(() => {
      offsetMs = 0;
    });
    const r = await call(h.publicPort, { session: fresh.session });
    t.ok(r.reused, 'resumed');
    t.equal(r.status, 403, 'the certificate is past its validity at the relay: no device certificate');
    t.equal(code(r.body), 'ERR_POLICY_DENIED');
  });
});
