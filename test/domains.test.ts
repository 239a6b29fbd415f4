// Custom domains: per-host certificates chosen by SNI (exact, then the most
// specific wildcard, then the relay CA's own), re-read on reload; Host must
// match SNI.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:tls';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { startHarness } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';

function peerCert(port: number, servername: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const raw = s.getPeerX509Certificate();
      s.destroy();
      if (raw) resolve(raw);
      else reject(new Error('no certificate'));
    });
    s.on('error', reject);
  });
}

function rawRequest(port: number, servername: string, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      s.write(`GET /robots.txt HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    });
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

t.test('per-host certificates by SNI', async (t) => {
  const dir = tempDir(t);
  const other = await loadOrCreateCa(path.join(dir, 'public-ca'));
  const exact = await other.issueServerCertificate(['shop.test'], 86_400_000);
  const wild = await other.issueServerCertificate(['*.apps.test'], 86_400_000);
  writeFileSync(path.join(dir, 'shop.pem'), exact.certPem);
  writeFileSync(path.join(dir, 'shop.key'), exact.keyPem);
  writeFileSync(path.join(dir, 'wild.pem'), wild.certPem + wild.keyPem); // one PEM bundle
  const apps = (shopCert: string) => `apps:
  - { name: shop, externalUrl: "https://shop.test/", internalUrl: "http://127.0.0.1:9/", preauth: passthrough, tls: { certFile: "${shopCert}", keyFile: "${path.join(dir, 'shop.key')}" } }
  - { name: wild, externalUrl: "https://*.apps.test/", internalUrl: "http://127.0.0.1:9/", preauth: passthrough, tls: { certFile: "${path.join(dir, 'wild.pem')}" } }
  - { name: plain, externalUrl: "https://plain.test/", internalUrl: "http://127.0.0.1:9/", preauth: passthrough }
`;
  const h = await startHarness(t, { yaml: () => apps(path.join(dir, 'shop.pem')) });
  const port = h.publicPort;
  const shop = await peerCert(port, 'shop.test');
  t.ok(shop.checkIssued(new X509Certificate(other.certPem)), 'exact host: its own certificate');
  t.equal(shop.serialNumber.replace(/^0+/, ''), exact.serial.replace(/^0+/, ''));
  const w = await peerCert(port, 'one.apps.test');
  t.ok(w.checkHost('one.apps.test'), 'wildcard certificate for a wildcard app');
  t.ok(w.checkIssued(new X509Certificate(other.certPem)));
  const plain = await peerCert(port, 'plain.test');
  t.ok(plain.checkIssued(new X509Certificate(h.relay.ca.certPem)), 'no certificate of its own: issued by the relay CA');
  t.ok(plain.checkHost('plain.test'));

  const ok = await rawRequest(port, 'plain.test', 'plain.test');
  t.match(ok, /^HTTP\/1\.1 200/);
  const mismatch = await rawRequest(port, 'plain.test', 'shop.test');
  t.match(mismatch, /^HTTP\/1\.1 421/, 'Host differing from SNI is refused');
  // An IP address as SNI (RFC 6066 forbids it; wrk sends one when dialled by address)
  // counts as no SNI: the relay-CA certificate, and the Host header routes.
  const byAddress = await peerCert(port, '127.0.0.1');
  t.ok(byAddress.checkIssued(new X509Certificate(h.relay.ca.certPem)), 'IP-address SNI: the relay-CA certificate');
  t.match(await rawRequest(port, '127.0.0.1', 'plain.test'), /^HTTP\/1\.1 200/, 'IP-address SNI is not a mismatch');
  t.match(
    await rawRequest(port, 'plain.test', '127.0.0.1'),
    /^HTTP\/1\.1 421/,
    'a named SNI with an address in Host still is',
  );

  // A new certificate file is picked up on reload.
  const renewed = await other.issueServerCertificate(['shop.test'], 86_400_000);
  writeFileSync(path.join(dir, 'shop2.pem'), renewed.certPem);
  writeFileSync(path.join(dir, 'shop.key'), renewed.keyPem);
  await h.reload(apps(path.join(dir, 'shop2.pem'))); // the new state serves once this resolves
  const after = await peerCert(port, 'shop.test');
  t.equal(
    after.serialNumber.replace(/^0+/, ''),
    renewed.serial.replace(/^0+/, ''),
    'reload re-reads certificate files',
  );
});

t.test('bad certificate files are refused at load with the key path', async (t) => {
  const dir = tempDir(t);
  const ca = await loadOrCreateCa(path.join(dir, 'ca'));
  const a = await ca.issueServerCertificate(['a.test'], 86_400_000);
  const b = await ca.issueServerCertificate(['b.test'], 86_400_000);
  writeFileSync(path.join(dir, 'a.pem'), a.certPem);
  writeFileSync(path.join(dir, 'b.key'), b.keyPem);
  writeFileSync(path.join(dir, 'junk.pem'), 'not a certificate');
  const { parseRelayConfig } = await import('../src/config/relay-config.js');
  const cases: [string, string][] = [
    [`{ certFile: "${path.join(dir, 'missing.pem')}" }`, 'apps[0].tls.certFile'],
    [`{ certFile: "${path.join(dir, 'junk.pem')}", keyFile: "${path.join(dir, 'b.key')}" }`, 'apps[0].tls.certFile'],
    [`{ certFile: "${path.join(dir, 'a.pem')}", keyFile: "${path.join(dir, 'b.key')}" }`, 'apps[0].tls.keyFile'],
  ];
  for (const [tls, key] of cases) {
    let err: { code?: string; details?: { issues: { path: string }[] } } | undefined;
    try {
      parseRelayConfig(
        `apps:\n  - { name: a, externalUrl: "https://a.test/", internalUrl: "http://10.0.0.1/", tls: ${tls} }\n`,
        'relay.yaml',
      );
    } catch (e) {
      err = e as typeof err;
    }
    t.equal(err?.code, 'ERR_CONFIG_INVALID', key);
    t.ok(
      err?.details?.issues.some((i) => i.path === key),
      `${key} named`,
    );
  }
  // A certificate for another host.
  writeFileSync(path.join(dir, 'a.key'), a.keyPem);
  t.throws(
    () =>
      parseRelayConfig(
        `apps:\n  - { name: b, externalUrl: "https://b.test/", internalUrl: "http://10.0.0.1/", tls: { certFile: "${path.join(dir, 'a.pem')}", keyFile: "${path.join(dir, 'a.key')}" } }\n`,
        'relay.yaml',
      ),
    { code: 'ERR_CONFIG_INVALID' },
  );
});
