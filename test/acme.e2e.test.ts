// ACME against a real Pebble (Debian's `pebble`, with `pebble-challtestsrv` as its DNS
// server resolving app names to 127.0.0.1): real HTTP-01 validation on the relay's HTTP
// listener. One relay, started while Pebble is still down: it retries with backoff and
// obtains once Pebble is up; the certificate is served for the app host (verified against
// Pebble's root); a host whose address the relay does not listen on fails validation
// (logged, counted, relay-CA certificate still served); a forced renewal (injected clock)
// installs a new certificate without a restart.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { Relay } from '../src/relay/relay.js';
import { systemClock, type Clock } from '../src/clock.js';
import { acmeCertSecret, type AcmeTiming } from '../src/relay/acme/manager.js';
import { capturingLogger } from './helpers/harness.js';
import { freePort, peerCert, preparePebble } from './helpers/pebble.js';
import { waitFor } from './helpers/wait.js';

const GOOD = 'app.acme-test.example.com';
const BAD = 'unreachable.acme-test.example.com';

t.test('ACME against Pebble: down at start, issue, serve, failed validation, renewal', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-acme-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [httpPort, publicPort] = await Promise.all([freePort(), freePort()]);
  const pebble = await preparePebble(t, dir, { httpPort, tlsPort: publicPort });
  // The relay listens on 127.0.0.1 only: validation of BAD finds nobody there.
  await pebble.addA(BAD, '127.0.0.2');

  const { log, lines } = capturingLogger();
  let offsetMs = 0;
  const timing: AcmeTiming = { retryMinMs: 100, retryMaxMs: 1000 };
  const clock: Clock = { ...systemClock, now: () => Date.now() + offsetMs };
  const yaml = `dataDir: ./data
public: { listen: "127.0.0.1:${publicPort}", httpListen: "127.0.0.1:${httpPort}" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "https://127.0.0.1:1" }
limits: { perIp: false }
apps:
  - { name: good, externalUrl: "https://${GOOD}/", internalUrl: "http://127.0.0.1:1/" }
  - { name: bad, externalUrl: "https://${BAD}/", internalUrl: "http://127.0.0.1:1/" }
acme:
  directory: "${pebble.directory}"
  email: ops@example.com
  agreeTerms: true
  caFile: ${pebble.caFile}
`;
  writeFileSync(path.join(dir, 'relay.yaml'), yaml);
  const relay = await Relay.create(parseRelayConfig(yaml, path.join(dir, 'relay.yaml')), {
    log,
    storeWatchMs: 100,
    acme: { clock, timing },
  });
  t.teardown(async () => {
    const at = Date.now();
    await relay.close();
    if (Date.now() - at > 5000) t.comment(`relay close took ${Date.now() - at} ms`);
  });
  await relay.start();
  const acme = relay.acmeManager!;

  await t.test('Pebble down at start: the relay serves, fails, retries with backoff', async (t) => {
    await waitFor(() => (acme.failures.get(GOOD) ?? 0) >= 2, { timeoutMs: 10_000, what: 'two failed attempts' });
    const before = await peerCert(publicPort, GOOD, relay.ca.certPem);
    t.ok(before.authorized, 'the relay-CA certificate serves the host meanwhile');
    const failed = lines.filter((l) => l.msg?.includes('ACME order failed') && l['host'] === GOOD);
    t.ok(failed.length >= 2, 'each failure is logged');
    const delays = failed.map((l) => l['retry_in_ms'] as number);
    t.ok(delays[1]! > delays[0]!, `the backoff grows (${delays.join(', ')})`);
  });

  await pebble.start();
  const root = await pebble.root();

  let firstSerial = '';
  await t.test('issue and serve: the app host gets a Pebble certificate', async (t) => {
    await waitFor(() => acme.contextFor(GOOD), { timeoutMs: 20_000, what: 'the ACME certificate' });
    const served = await peerCert(publicPort, GOOD, root);
    t.ok(served.authorized, "the certificate verifies against Pebble's root and names the host");
    firstSerial = served.serial;
    const stored = await relay.store.secrets.get(acmeCertSecret(GOOD));
    t.ok(stored, 'the certificate is kept in the store');
    t.ok(await relay.store.secrets.get('acme-account'), 'so is the account key');
    t.ok(lines.some((l) => l.msg === 'ACME certificate obtained and installed' && l['host'] === GOOD));
    t.match(
      await relay.metrics.text(),
      new RegExp(`proxyctl_relay_certificate_expiry_days\\{certificate="acme:${GOOD}"\\}`),
    );
  });

  await t.test('an order that fails validation: logged, counted, relay-CA certificate still served', async (t) => {
    const n = acme.failures.get(BAD) ?? 0;
    await waitFor(() => (acme.failures.get(BAD) ?? 0) > n, { timeoutMs: 20_000, what: 'a failed validation' });
    t.notOk(acme.contextFor(BAD), 'no ACME certificate for the host');
    const served = await peerCert(publicPort, BAD, relay.ca.certPem);
    t.ok(served.authorized, 'the relay-CA certificate serves it');
    t.ok(lines.some((l) => l.msg?.includes('ACME order failed') && l['host'] === BAD && l['err']));
    t.match(await relay.metrics.text(), new RegExp(`proxyctl_relay_acme_failures_total\\{host="${BAD}"\\} [1-9]`));
  });

  await t.test('renewal (TLS-ALPN-01 this time) installs a new certificate without a restart', async (t) => {
    timing.challengePriority = ['tls-alpn-01'];
    const leaf = new X509Certificate(acme.certificates().find((c) => c.host === GOOD)!.certPem);
    const life = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    offsetMs = Date.parse(leaf.validFrom) + (life * 2) / 3 + 60_000 - Date.now();
    await acme.checkNow(GOOD);
    const served = await peerCert(publicPort, GOOD, root);
    t.ok(served.authorized);
    t.not(served.serial, firstSerial, 'a new certificate is served');
    t.ok(
      lines.some(
        (l) =>
          l.msg === 'ACME certificate obtained and installed' &&
          l['host'] === GOOD &&
          l !== lines.find((x) => x.msg === 'ACME certificate obtained and installed'),
      ),
      'obtained a second time',
    );
    t.ok(
      lines.some((l) => l.msg === 'ACME challenge ready' && l['challenge'] === 'tls-alpn-01' && l['host'] === GOOD),
      'validated with TLS-ALPN-01 on the public listener',
    );
    offsetMs = 0;
    // With no challenge in progress, an acme-tls/1 handshake gets no challenge certificate.
    const probe = await new Promise<string>((resolve) => {
      const s = tlsConnect(
        {
          host: '127.0.0.1',
          port: publicPort,
          servername: GOOD,
          ALPNProtocols: ['acme-tls/1'],
          rejectUnauthorized: false,
        },
        () => {
          resolve(`negotiated ${String(s.alpnProtocol)}`);
          s.destroy();
        },
      );
      s.on('error', (err: NodeJS.ErrnoException) => resolve(`refused ${err.code ?? ''}`));
    });
    t.match(probe, /^refused/, `an idle acme-tls/1 handshake is refused (${probe})`);
  });

  await t.test('the HTTP listener redirects to the public port', async (t) => {
    const location = await new Promise<string | undefined>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: httpPort, path: '/x?y', headers: { host: GOOD } }, (res) => {
        res.resume();
        resolve(res.headers.location);
      });
      req.on('error', reject);
      req.end();
    });
    t.equal(location, `https://${GOOD}:${publicPort}/x?y`);
  });
});
