// ACME with two replicas sharing a PostgreSQL store: replica a obtains the certificate
// from a real Pebble (HTTP-01 on its HTTP listener); replica b, started after, serves
// the same certificate from the store without ordering one of its own. When a renews
// (forced through its injected clock), b installs the new certificate from the store's
// change feed, without a restart and without an order.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { generateMasterKey, parseMasterKey } from '../src/crypto/master-key.js';
import { Relay } from '../src/relay/relay.js';
import { systemClock, type Clock } from '../src/clock.js';
import type { AcmeTiming } from '../src/relay/acme/manager.js';
import { capturingLogger } from './helpers/harness.js';
import { freePort, peerCert, preparePebble } from './helpers/pebble.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const HOST = 'shared.acme-test.example.com';
const admin = await pgAdmin(t);

t.test('two replicas on one store share the ACME certificate and its renewal', async (t) => {
  const dir = tempDir(t);
  const schema = freshSchema(t, admin, 'pxacme');
  const key = parseMasterKey(generateMasterKey());
  const [httpA, publicA] = await Promise.all([freePort(), freePort()]);
  // Pebble validates on replica a's ports only: b can only have its certificate through the store.
  const pebble = await preparePebble(t, dir, { httpPort: httpA, tlsPort: publicA });
  await pebble.start();
  const root = await pebble.root();
  const config = (name: string, listen: string, httpListen: string) =>
    parseRelayConfig(
      `dataDir: ./${name}
public: { listen: "${listen}", httpListen: "${httpListen}" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "https://127.0.0.1:1" }
store: { postgres: { url: "${PG_URL}", schema: ${schema} } }
limits: { perIp: false }
apps:
  - { name: shared, externalUrl: "https://${HOST}/", internalUrl: "http://127.0.0.1:1/" }
acme:
  directory: "${pebble.directory}"
  email: ops@example.com
  agreeTerms: true
  caFile: ${pebble.caFile}
`,
      path.join(dir, `${name}.yaml`),
    );
  const timing: AcmeTiming = { retryMinMs: 100, retryMaxMs: 1000 };
  let offsetMs = 0;
  const clockA: Clock = { ...systemClock, now: () => Date.now() + offsetMs };
  const logA = capturingLogger();
  const a = await Relay.create(config('a', `127.0.0.1:${publicA}`, `127.0.0.1:${httpA}`), {
    log: logA.log,
    masterKey: key,
    storeWatchMs: 100,
    acme: { clock: clockA, timing },
  });
  t.teardown(() => a.close());
  await a.start();
  await waitFor(() => a.acmeManager!.contextFor(HOST), { timeoutMs: 20_000, what: "replica a's certificate" });
  const first = await peerCert(publicA, HOST, root);
  t.ok(first.authorized, "replica a serves a certificate Pebble's root verifies");

  const logB = capturingLogger();
  const b = await Relay.create(config('b', '127.0.0.1:0', '127.0.0.1:0'), {
    log: logB.log,
    masterKey: key,
    storeWatchMs: 100,
    acme: { clock: systemClock, timing },
  });
  t.teardown(() => b.close());
  await b.start();
  await waitFor(() => b.acmeManager!.contextFor(HOST), { timeoutMs: 10_000, what: "replica b's certificate" });
  const onB = await peerCert(b.publicAddress().port, HOST, root);
  t.ok(onB.authorized, 'replica b serves a verified certificate for the host');
  t.equal(onB.serial, first.serial, 'the same certificate: taken from the store');
  const ordered = (lines: { msg?: string }[]) =>
    lines.filter((l) => l.msg === 'ACME certificate obtained and installed').length;
  t.equal(ordered(logB.lines), 0, 'replica b ordered nothing');
  t.notOk(
    logB.lines.some((l) => l.msg?.includes('ACME order failed')),
    'and never tried (its ports are not the ones Pebble validates)',
  );

  // Replica a renews at two thirds of the lifetime (its clock moved there).
  const leaf = new X509Certificate(a.acmeManager!.certificates().find((c) => c.host === HOST)!.certPem);
  const life = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
  offsetMs = Date.parse(leaf.validFrom) + (life * 2) / 3 + 60_000 - Date.now();
  await a.acmeManager!.checkNow(HOST);
  offsetMs = 0;
  t.equal(ordered(logA.lines), 2, 'replica a ordered a second time');
  const renewed = await peerCert(publicA, HOST, root);
  t.not(renewed.serial, first.serial, 'replica a serves the renewed certificate');
  await waitFor(async () => (await peerCert(b.publicAddress().port, HOST, root)).serial === renewed.serial, {
    timeoutMs: 10_000,
    what: 'the renewed certificate on replica b',
  });
  t.pass('replica b serves the renewed certificate, from the change feed, without a restart');
  t.equal(ordered(logB.lines), 0, 'still without an order of its own');
});
