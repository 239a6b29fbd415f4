// The relay's CSR gate (verifyCsr: registration and renewal both go through it): which
// keys it accepts, and every other request refused with a stable code before anything
// is signed. Keys come from node:crypto (any size, exponent or curve), requests are
// signed by node:crypto and encoded with @peculiar's ASN.1 classes (test/helpers/csr.ts).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { AlgorithmIdentifier, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import t from 'tap';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { createKeyAndCsr, verifyCsr } from '../src/crypto/csr.js';
import { OID, ec, ecCsr, rawCsr, rsa, rsaCsr, rsaPublicOfSize } from './helpers/csr.js';
import { tempDir } from './helpers/proc.js';

const HOUR = 3_600_000;

function tamper(pem: string): string {
  const der = Buffer.from(x509.PemConverter.decodeFirst(pem));
  der[der.length - 1]! ^= 0x01; // the signature BIT STRING ends the DER encoding
  return x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
}

t.test('accepted: RSA 2048-4096 with e=65537, EC P-256 and P-384', async (t) => {
  const ca = await loadOrCreateCa(tempDir(t));
  const caCert = new X509Certificate(ca.certPem);
  const cases: [string, () => string | Promise<string>, string][] = [
    ['RSA 2048', () => rsaCsr(rsa(2048)), 'RSA 2048'],
    ['RSA 3072', () => rsaCsr(rsa(3072)), 'RSA 3072'],
    ['RSA 4096 (the maximum)', () => rsaCsr(rsa(4096)), 'RSA 4096'],
    ['EC P-256', () => ecCsr(ec('prime256v1')), 'EC P-256'],
    ['EC P-384 signed with SHA-384', () => ecCsr(ec('secp384r1'), 'sha384'), 'EC P-384'],
    ["the connector's own request", async () => (await createKeyAndCsr('c')).csrPem, 'EC P-256'],
  ];
  for (const [what, make, description] of cases) {
    const pem = await make();
    t.equal((await verifyCsr(pem)).keyDescription, description, `${what}: accepted`);
    const issued = await ca.signConnectorCsr(pem, { connectorId: 'c', lifetimeMs: HOUR });
    t.ok(new X509Certificate(issued.certPem).verify(caCert.publicKey), `${what}: signed`);
  }
});

t.test('refused keys: ERR_CSR_WEAK_KEY, checked before the signature', async (t) => {
  const ca = await loadOrCreateCa(tempDir(t));
  const unknownAlgorithm = new SubjectPublicKeyInfo({
    algorithm: new AlgorithmIdentifier({ algorithm: '1.2.3.4.5' }),
    subjectPublicKey: new Uint8Array(randomBytes(64)).buffer,
  });
  const p256 = ec('prime256v1');
  const ed25519 = generateKeyPairSync('ed25519');
  const ed448 = generateKeyPairSync('ed448');
  const dsa = generateKeyPairSync('dsa', { modulusLength: 2048, divisorLength: 256 });
  const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 });
  const signer2048 = rsa(2048);
  const cases: [string, () => string | Promise<string>][] = [
    ['RSA 1024', () => rsaCsr(rsa(1024))],
    ['RSA 2047 (one bit short)', () => rsaCsr(rsa(2047))],
    // Keys too large to generate quickly: a random modulus of that size, signed by another key.
    [
      'RSA 4097 (one bit above the maximum)',
      () =>
        rawCsr({
          subjectKey: rsaPublicOfSize(4097),
          signer: signer2048.privateKey,
          signatureOid: OID.sha256WithRSA,
          hash: 'sha256',
          nullParams: true,
        }),
    ],
    [
      'RSA 4104',
      () =>
        rawCsr({
          subjectKey: rsaPublicOfSize(4104),
          signer: signer2048.privateKey,
          signatureOid: OID.sha256WithRSA,
          hash: 'sha256',
          nullParams: true,
        }),
    ],
    [
      'RSA 8192',
      () =>
        rawCsr({
          subjectKey: rsaPublicOfSize(8192),
          signer: signer2048.privateKey,
          signatureOid: OID.sha256WithRSA,
          hash: 'sha256',
          nullParams: true,
        }),
    ],
    [
      'RSA 16384',
      () =>
        rawCsr({
          subjectKey: rsaPublicOfSize(16384),
          signer: signer2048.privateKey,
          signatureOid: OID.sha256WithRSA,
          hash: 'sha256',
          nullParams: true,
        }),
    ],
    [
      'RSA 3072 with exponent 3 (random modulus)',
      () =>
        rawCsr({
          subjectKey: rsaPublicOfSize(3072, 3),
          signer: signer2048.privateKey,
          signatureOid: OID.sha256WithRSA,
          hash: 'sha256',
          nullParams: true,
        }),
    ],
    ['RSA 2048 with exponent 3', () => rsaCsr(rsa(2048, 3))],
    ['RSA 2048 with exponent 17', () => rsaCsr(rsa(2048, 17))],
    ['RSA 2048 with exponent 65539', () => rsaCsr(rsa(2048, 65539))],
    ['EC secp256k1', () => ecCsr(ec('secp256k1'))],
    ['EC P-521', () => ecCsr(ec('secp521r1'), 'sha512')],
    ['EC P-224', () => ecCsr(ec('secp224r1'))],
    ['EC P-192', () => ecCsr(ec('prime192v1'))],
    ['EC brainpoolP256r1', () => ecCsr(ec('brainpoolP256r1'))],
    [
      'Ed25519',
      () =>
        rawCsr({ subjectKey: ed25519.publicKey, signer: ed25519.privateKey, signatureOid: OID.ed25519, hash: null }),
    ],
    [
      'Ed448',
      () => rawCsr({ subjectKey: ed448.publicKey, signer: ed448.privateKey, signatureOid: OID.ed448, hash: null }),
    ],
    [
      'DSA 2048',
      () =>
        rawCsr({ subjectKey: dsa.publicKey, signer: dsa.privateKey, signatureOid: OID.dsaWithSha256, hash: 'sha256' }),
    ],
    [
      'RSA-PSS key',
      () =>
        rawCsr({
          subjectKey: pss.publicKey,
          signer: pss.privateKey,
          signatureOid: OID.rsassaPss,
          hash: 'sha256',
          pss: true,
        }),
    ],
    [
      'an algorithm nobody knows',
      () =>
        rawCsr({
          subjectKey: p256.publicKey,
          subjectPki: unknownAlgorithm,
          signer: p256.privateKey,
          signatureOid: OID.ecdsaWithSha256,
          hash: 'sha256',
        }),
    ],
  ];
  for (const [what, make] of cases) {
    const pem = await make();
    await t.rejects(verifyCsr(pem), { code: 'ERR_CSR_WEAK_KEY', status: 400 }, what);
    await t.rejects(
      ca.signConnectorCsr(pem, { connectorId: 'c', lifetimeMs: HOUR }),
      { code: 'ERR_CSR_WEAK_KEY' },
      `${what}: the signing path refuses it too`,
    );
  }
  // The key check comes first: a bad signature on a refused key still reads as a key problem.
  await t.rejects(
    verifyCsr(tamper(rsaCsr(rsa(2048, 3)))),
    { code: 'ERR_CSR_WEAK_KEY' },
    'weak key with a broken signature',
  );
});

t.test('bad signatures: ERR_CSR_SIGNATURE', async (t) => {
  const p256 = ec('prime256v1');
  const otherP256 = ec('prime256v1');
  const r2048 = rsa(2048);
  const cases: [string, string][] = [
    ['EC request signed by another key', ecCsr(p256, 'sha256', otherP256.privateKey)],
    ['RSA request signed by another key', rsaCsr(r2048, rsa(2048).privateKey)],
    ['signature byte flipped', tamper(ecCsr(p256))],
    [
      'signed with SHA-256, labelled ECDSA-SHA384',
      rawCsr({
        subjectKey: p256.publicKey,
        signer: p256.privateKey,
        signatureOid: OID.ecdsaWithSha384,
        hash: 'sha256',
      }),
    ],
    [
      'RSA key, ECDSA signature algorithm',
      rawCsr({
        subjectKey: r2048.publicKey,
        signer: r2048.privateKey,
        signatureOid: OID.ecdsaWithSha256,
        hash: 'sha256',
      }),
    ],
    [
      'EC key, RSA signature algorithm',
      rawCsr({
        subjectKey: p256.publicKey,
        signer: p256.privateKey,
        signatureOid: OID.sha256WithRSA,
        hash: 'sha256',
        nullParams: true,
      }),
    ],
  ];
  for (const [what, pem] of cases) await t.rejects(verifyCsr(pem), { code: 'ERR_CSR_SIGNATURE', status: 400 }, what);
});

t.test('garbage: ERR_CSR_INVALID', async (t) => {
  const good = (await createKeyAndCsr('c')).csrPem;
  const der = Buffer.from(x509.PemConverter.decodeFirst(good));
  const key = ec('prime256v1');
  const cases: [string, unknown][] = [
    ['empty', ''],
    ['text', 'hello, I am a CSR'],
    [
      'random bytes in a CSR block',
      x509.PemConverter.encode(new Uint8Array(randomBytes(300)).buffer, 'CERTIFICATE REQUEST'),
    ],
    [
      'truncated DER',
      x509.PemConverter.encode(new Uint8Array(der.subarray(0, der.length - 20)).buffer, 'CERTIFICATE REQUEST'),
    ],
    [
      'only the outer SEQUENCE header',
      x509.PemConverter.encode(new Uint8Array(der.subarray(0, 4)).buffer, 'CERTIFICATE REQUEST'),
    ],
    ['a private key', key.privateKey.export({ type: 'pkcs8', format: 'pem' })],
    ['a public key', key.publicKey.export({ type: 'spki', format: 'pem' })],
    [
      'a CSR under the legacy NEW CERTIFICATE REQUEST label',
      good.replace(/CERTIFICATE REQUEST/g, 'NEW CERTIFICATE REQUEST'),
    ],
    ['a CSR under a CERTIFICATE label', good.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE')],
    ['two requests', good + good],
    ['a request padded past 16 KiB', good + '\n'.repeat(17 * 1024)],
    ['base64 that is not base64', '-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n'],
    ['a number', 42],
    ['null', null],
    ['an object', { csr: good }],
  ];
  for (const [what, input] of cases)
    await t.rejects(verifyCsr(input as string), { code: 'ERR_CSR_INVALID', status: 400 }, what);
});
