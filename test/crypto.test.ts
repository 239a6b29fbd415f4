// The relay CA end to end: on-disk state, issued certificates checked by Node's own
// X.509 and TLS stacks (not by the library that made them), and hostile CSRs.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import t from 'tap';
import { loadOrCreateCa, normalizeSerial, type RelayCa } from '../src/crypto/ca.js';
import { certificateInfo } from '../src/crypto/certs.js';
import { createKeyAndCsr, verifyCsr } from '../src/crypto/csr.js';

x509.cryptoProvider.set(webcrypto);

const HOUR = 60 * 60 * 1000;
const FIXED_NOW = new Date('2030-01-01T00:00:00Z');
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

function mode(st: { mode: number }): number {
  return st.mode & 0o777;
}

async function csrFor(
  keys: webcrypto.CryptoKeyPair,
  signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams,
): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=from-the-csr', keys, signingAlgorithm });
  return csr.toString('pem');
}

function rsaKeys(modulusLength: number): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', modulusLength, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    true,
    ['sign', 'verify'],
  );
}

function ecKeys(namedCurve: string): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve }, true, ['sign', 'verify']);
}

t.test('CA is created once with the right shape and reused afterwards', async (t) => {
  const dir = path.join(t.testdir(), 'state', 'ca');
  const ca = await loadOrCreateCa(dir, { now: () => FIXED_NOW });

  t.equal(mode(await stat(dir)), 0o700, 'CA dir is 0700');
  t.equal(mode(await stat(path.join(dir, 'ca-key.pem'))), 0o600, 'CA key is 0600');
  t.same((await readdir(dir)).sort(), ['ca-key.pem', 'ca.pem'], 'no temporary files left behind');
  const keyPem = await readFile(path.join(dir, 'ca-key.pem'), 'utf8');
  t.match(keyPem, /^-----BEGIN PRIVATE KEY-----/, 'key is PKCS#8 PEM');
  t.equal(await readFile(path.join(dir, 'ca.pem'), 'utf8'), ca.certPem);

  const node = new X509Certificate(ca.certPem);
  t.equal(node.ca, true);
  t.ok(node.checkIssued(node) && node.verify(node.publicKey), 'self-signed');
  t.ok(node.checkPrivateKey(createPrivateKey(keyPem)), 'key on disk belongs to the cert');
  t.equal(node.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.equal(ca.certificate.subject, 'CN=proxyctl relay CA, O=proxyctl');
  const bc = ca.certificate.getExtension(x509.BasicConstraintsExtension);
  t.same(
    { ca: bc?.ca, pathLength: bc?.pathLength, critical: bc?.critical },
    { ca: true, pathLength: 0, critical: true },
  );
  const ku = ca.certificate.getExtension(x509.KeyUsagesExtension);
  t.equal(ku?.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  t.equal(ku?.critical, true);
  t.ok(ca.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, 'has SKI');
  const years = (ca.certificate.notAfter.getTime() - FIXED_NOW.getTime()) / (365.25 * 24 * HOUR);
  t.ok(years > 9.99 && years < 10.01, `valid for 10 years (${years})`);

  const again = await loadOrCreateCa(dir);
  t.equal(again.certPem, ca.certPem, 'second call reuses the same certificate');
  t.equal(await readFile(path.join(dir, 'ca-key.pem'), 'utf8'), keyPem, 'key untouched');
  const issued = await again.signConnectorCsr((await createKeyAndCsr('x')).csrPem, {
    connectorId: 'c',
    lifetimeMs: HOUR,
  });
  t.ok(new X509Certificate(issued.certPem).verify(node.publicKey), 'reloaded key signs for the same CA');
});

t.test('half or mismatched CA state is refused and never overwritten', async (t) => {
  const root = t.testdir();
  const a = path.join(root, 'a');
  const b = path.join(root, 'b');
  await loadOrCreateCa(a);
  await loadOrCreateCa(b);
  const certA = await readFile(path.join(a, 'ca.pem'), 'utf8');
  const keyB = await readFile(path.join(b, 'ca-key.pem'), 'utf8');

  await writeFile(path.join(a, 'ca-key.pem'), keyB);
  await t.rejects(loadOrCreateCa(a), { code: 'ERR_STATE_INVALID' }, 'key from another CA');

  await rm(path.join(a, 'ca-key.pem'));
  await t.rejects(loadOrCreateCa(a), { code: 'ERR_STATE_INVALID' }, 'certificate without key');
  t.equal(await readFile(path.join(a, 'ca.pem'), 'utf8'), certA, 'lone certificate not overwritten');
  t.same(await readdir(a), ['ca.pem'], 'no key was created');

  await rm(path.join(b, 'ca.pem'));
  await t.rejects(loadOrCreateCa(b), { code: 'ERR_STATE_INVALID' }, 'key without certificate');
  t.equal(await readFile(path.join(b, 'ca-key.pem'), 'utf8'), keyB, 'lone key not overwritten');

  const c = path.join(root, 'c');
  await loadOrCreateCa(c);
  await writeFile(path.join(c, 'ca.pem'), 'not a certificate');
  await t.rejects(loadOrCreateCa(c), { code: 'ERR_STATE_INVALID' }, 'unreadable certificate');
  await writeFile(path.join(c, 'ca.pem'), certA);
  await writeFile(path.join(c, 'ca-key.pem'), 'not a key');
  await t.rejects(loadOrCreateCa(c), { code: 'ERR_STATE_INVALID' }, 'unreadable key');
});

t.test('server certificate chains to the CA and carries the SANs', async (t) => {
  const ca = await loadOrCreateCa(t.testdir(), { now: () => FIXED_NOW });
  const caNode = new X509Certificate(ca.certPem);
  const issued = await ca.issueServerCertificate(
    ['relay.example.com', '127.0.0.1', '::1', 'alt.example.com'],
    24 * HOUR,
  );
  const cert = new X509Certificate(issued.certPem);

  t.ok(cert.checkIssued(caNode), 'issued by CA');
  t.ok(cert.verify(caNode.publicKey), 'signature verifies with CA key');
  t.ok(cert.checkPrivateKey(createPrivateKey(issued.keyPem)), 'returned key matches');
  t.equal(cert.ca, false);
  t.same(cert.keyUsage, [OID_SERVER_AUTH], 'EKU serverAuth only');
  t.equal(cert.checkHost('relay.example.com'), 'relay.example.com');
  t.equal(cert.checkHost('alt.example.com'), 'alt.example.com');
  t.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
  t.equal(cert.checkIP('::1'), '::1');
  t.notOk(cert.checkHost('other.example.com'));
  t.match(cert.subjectAltName, /DNS:relay\.example\.com/);
  t.equal(certificateInfo(issued.certPem).subjectCN, 'relay.example.com', 'CN is the first host');
  t.equal(issued.serial, normalizeSerial(cert.serialNumber));
  t.equal(issued.notAfter.getTime(), FIXED_NOW.getTime() + 24 * HOUR);
  t.equal(new Date(cert.validFrom).getTime(), FIXED_NOW.getTime() - 5 * 60 * 1000, 'backdated 5 minutes');

  const parsed = new x509.X509Certificate(issued.certPem);
  t.equal(parsed.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
  t.equal(
    parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    ca.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    'AKI = CA SKI',
  );
  t.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, 'has SKI');
});

t.test('connector certificate: relay-chosen subject, clientAuth, unique serials', async (t) => {
  const ca = await loadOrCreateCa(t.testdir(), { now: () => FIXED_NOW });
  const caNode = new X509Certificate(ca.certPem);
  const { keyPem, csrPem } = await createKeyAndCsr('chosen-by-connector');
  const issued = await ca.signConnectorCsr(csrPem, { connectorId: 'conn-42', lifetimeMs: 2 * HOUR });
  const cert = new X509Certificate(issued.certPem);

  t.ok(cert.checkIssued(caNode) && cert.verify(caNode.publicKey), 'chains to the CA');
  t.ok(cert.checkPrivateKey(createPrivateKey(keyPem)), 'certifies the CSR key');
  t.same(cert.keyUsage, [OID_CLIENT_AUTH], 'EKU clientAuth only');
  t.equal(cert.ca, false);
  const parsed = new x509.X509Certificate(issued.certPem);
  t.equal(parsed.subject, 'CN=conn-42, O=proxyctl connector', 'CSR subject ignored');
  t.equal(parsed.getExtension(x509.BasicConstraintsExtension)?.critical, true);
  const ku = parsed.getExtension(x509.KeyUsagesExtension);
  t.same(
    { usages: ku?.usages, critical: ku?.critical },
    { usages: x509.KeyUsageFlags.digitalSignature, critical: true },
  );
  t.equal(
    parsed.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId,
    ca.certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    'AKI = CA SKI',
  );
  t.ok(parsed.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId, 'has SKI');
  t.equal(issued.notBefore.getTime(), FIXED_NOW.getTime() - 5 * 60 * 1000);
  t.equal(issued.notAfter.getTime(), FIXED_NOW.getTime() + 2 * HOUR);

  const info = certificateInfo(issued.certPem);
  t.equal(info.subjectCN, 'conn-42');
  t.equal(info.serial, issued.serial);
  t.equal(info.fingerprint256, cert.fingerprint256);
  t.equal(info.notAfter.getTime(), issued.notAfter.getTime());

  const hostile = await ca.signConnectorCsr(csrPem, { connectorId: 'x, O=evil+CN=admin', lifetimeMs: HOUR });
  const hostileParsed = new x509.X509Certificate(hostile.certPem);
  t.same(hostileParsed.subjectName.getField('CN'), ['x, O=evil+CN=admin'], 'connector id cannot inject RDNs');
  t.same(hostileParsed.subjectName.getField('O'), ['proxyctl connector']);

  const serials = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const { certPem, serial } = await ca.signConnectorCsr(csrPem, { connectorId: `c${i}`, lifetimeMs: HOUR });
    t.equal(serial, normalizeSerial(new X509Certificate(certPem).serialNumber), `serial ${i} normalised`);
    t.match(serial, /^[1-9A-F][0-9A-F]{29,31}$/, `serial ${i} is 16 random bytes, positive`);
    serials.add(serial);
  }
  t.equal(serials.size, 50, 'serials unique');
});

t.test('normalizeSerial agrees across the forms serials show up in', async (t) => {
  t.equal(normalizeSerial('0a:1B:ff'), 'A1BFF');
  t.equal(normalizeSerial('00A1BFF'), 'A1BFF');
  t.equal(normalizeSerial('a1bff'), 'A1BFF');
  t.equal(normalizeSerial('00'), '0');
});

/** One connection to a fresh mTLS server; settles once both ends have decided. */
async function handshake(
  t: { teardown(fn: () => unknown): void },
  ca: RelayCa,
  client: { key: string; cert: string },
  rejectUnauthorized = true,
): Promise<{ server: Accepted | { error: Error }; clientGotReply: boolean }> {
  const serverCert = await ca.issueServerCertificate(['127.0.0.1'], HOUR);
  let settle: (outcome: Accepted | { error: Error }) => void = () => {};
  const serverOutcome = new Promise<Accepted | { error: Error }>((resolve) => (settle = resolve));
  const srv = tls.createServer(
    { key: serverCert.keyPem, cert: serverCert.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized },
    (socket) => {
      settle({
        peerSerial: socket.getPeerCertificate().serialNumber,
        authorized: socket.authorized,
        authorizationError: socket.authorizationError,
      });
      socket.end('hello');
    },
  );
  srv.on('tlsClientError', (error) => settle({ error }));
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as AddressInfo;

  const socket = tls.connect({ host: '127.0.0.1', port, ca: ca.certPem, key: client.key, cert: client.cert });
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => (received += d));
  socket.on('error', () => {}); // a refused client may or may not see the alert as an error (TLS 1.3)
  await once(socket, 'close');
  return { server: await serverOutcome, clientGotReply: received === 'hello' };
}
interface Accepted {
  peerSerial: string;
  authorized: boolean;
  authorizationError: Error | undefined;
}

t.test('mutual TLS with an issued connector certificate', async (t) => {
  const ca = await loadOrCreateCa(path.join(t.testdir(), 'relay'));
  const { keyPem, csrPem } = await createKeyAndCsr('connector');
  const issued = await ca.signConnectorCsr(csrPem, { connectorId: 'conn-tls', lifetimeMs: HOUR });

  const ok = await handshake(t, ca, { key: keyPem, cert: issued.certPem });
  t.ok(ok.clientGotReply, 'handshake and exchange succeed');
  t.ok('authorized' in ok.server && ok.server.authorized, 'server authorized the connector');
  t.equal(
    'peerSerial' in ok.server && normalizeSerial(ok.server.peerSerial),
    issued.serial,
    'peer serial normalises to the issued serial',
  );

  // Same CA name, different key: only the signature tells them apart.
  const rogue = await loadOrCreateCa(path.join(t.testdir(), 'rogue'));
  t.equal(rogue.certificate.subject, ca.certificate.subject);
  const other = await createKeyAndCsr('connector');
  const rogueCert = await rogue.signConnectorCsr(other.csrPem, { connectorId: 'conn-tls', lifetimeMs: HOUR });
  const bad = await handshake(t, ca, { key: other.keyPem, cert: rogueCert.certPem });
  t.ok(
    'error' in bad.server,
    `server refused the client from another CA (${'error' in bad.server ? bad.server.error.message : 'accepted!'})`,
  );
  t.notOk(bad.clientGotReply, 'client never got application data');
  const why = await handshake(t, ca, { key: other.keyPem, cert: rogueCert.certPem }, false);
  t.ok(
    'authorized' in why.server && !why.server.authorized && why.server.authorizationError,
    `refusal is certificate verification (${'authorized' in why.server ? String(why.server.authorizationError) : 'not accepted'})`,
  );
});

t.test('hostile CSRs are refused with stable codes', async (t) => {
  const ca = await loadOrCreateCa(t.testdir());
  const good = (await createKeyAndCsr('c')).csrPem;
  const refused = (input: string, code: string, what: string) =>
    t.rejects(verifyCsr(input), { code, status: 400 }, what);

  await refused('hello, I am a CSR', 'ERR_CSR_INVALID', 'garbage text');
  await refused('', 'ERR_CSR_INVALID', 'empty');
  await refused(ca.certPem, 'ERR_CSR_INVALID', 'certificate PEM instead of CSR');
  await refused(
    x509.PemConverter.encode(Buffer.from('definitely not DER'), 'CERTIFICATE REQUEST'),
    'ERR_CSR_INVALID',
    'PEM of non-DER',
  );
  await refused(good + good, 'ERR_CSR_INVALID', 'two CSR blocks');
  await refused(good + ' '.repeat(20 * 1024), 'ERR_CSR_INVALID', 'valid CSR padded past 16 KiB');
  await refused(
    `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(20 * 1024)}\n-----END CERTIFICATE REQUEST-----\n`,
    'ERR_CSR_INVALID',
    '20 KiB block',
  );
  await t.rejects(verifyCsr(42 as unknown as string), { code: 'ERR_CSR_INVALID' }, 'not a string');

  // The signature BIT STRING ends the DER encoding, so its last byte is signature.
  const der = Buffer.from(x509.PemConverter.decodeFirst(good));
  der[der.length - 1]! ^= 0x01;
  const tampered = x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
  const [before, after] = [new x509.Pkcs10CertificateRequest(good), new x509.Pkcs10CertificateRequest(tampered)];
  t.equal(after.subject, before.subject, 'tampered CSR still parses');
  t.notSame(Buffer.from(after.signature), Buffer.from(before.signature), 'only the signature changed');
  await refused(tampered, 'ERR_CSR_SIGNATURE', 'signature byte flipped');
  await t.rejects(
    ca.signConnectorCsr(tampered, { connectorId: 'c', lifetimeMs: HOUR }),
    { code: 'ERR_CSR_SIGNATURE' },
    'signing path verifies too',
  );

  const rsa1024 = await csrFor(await rsaKeys(1024), { name: 'RSASSA-PKCS1-v1_5' });
  await refused(rsa1024, 'ERR_CSR_WEAK_KEY', 'RSA 1024');
  const p521 = await csrFor(await ecKeys('P-521'), { name: 'ECDSA', hash: 'SHA-512' });
  await refused(p521, 'ERR_CSR_WEAK_KEY', 'EC P-521 is not on the allow list');
  const ed = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  await refused(await csrFor(ed, { name: 'Ed25519' }), 'ERR_CSR_WEAK_KEY', 'Ed25519 is another key type');
});

t.test('RSA 2048 and P-384 CSRs are accepted and signed', async (t) => {
  const ca = await loadOrCreateCa(t.testdir());
  const caNode = new X509Certificate(ca.certPem);
  const cases: Array<[string, Promise<string>]> = [
    ['RSA 2048', rsaKeys(2048).then((k) => csrFor(k, { name: 'RSASSA-PKCS1-v1_5' }))],
    ['EC P-384', ecKeys('P-384').then((k) => csrFor(k, { name: 'ECDSA', hash: 'SHA-384' }))],
    ['EC P-256', createKeyAndCsr('c').then((r) => r.csrPem)],
  ];
  for (const [description, csr] of cases) {
    const pem = await csr;
    t.equal((await verifyCsr(pem)).keyDescription, description);
    const issued = await ca.signConnectorCsr(pem, { connectorId: 'c', lifetimeMs: HOUR });
    t.ok(new X509Certificate(issued.certPem).verify(caNode.publicKey), `${description} certificate chains to the CA`);
  }
});

t.test('certificateInfo refuses garbage with ERR_CERT_UNTRUSTED', async (t) => {
  t.throws(() => certificateInfo('garbage'), { code: 'ERR_CERT_UNTRUSTED', status: 400 });
  t.throws(() => certificateInfo(''), { code: 'ERR_CERT_UNTRUSTED', status: 400 });
});
