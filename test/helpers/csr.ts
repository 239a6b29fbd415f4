// Hostile PKCS#10 requests for tests: any key node:crypto can make (RSA with any size or
// exponent, any named curve, DSA, RSA-PSS, Ed25519…), signed by node:crypto and encoded
// with the ASN.1 classes @peculiar/x509 is built on. Nothing here is parsed by hand.
import 'reflect-metadata';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Name, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import { Attributes, CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import * as x509 from '@peculiar/x509';
import { createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

export const OID = {
  sha256WithRSA: '1.2.840.113549.1.1.11',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  ecdsaWithSha384: '1.2.840.10045.4.3.3',
  ecdsaWithSha512: '1.2.840.10045.4.3.4',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
  dsaWithSha256: '2.16.840.1.101.3.4.3.2',
  rsassaPss: '1.2.840.113549.1.1.10',
} as const;

export interface KeyPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
}

export interface RawCsrOptions {
  /** The key the request names. */
  subjectKey: KeyObject;
  /** Overrides the encoded public key (e.g. an algorithm nobody knows). */
  subjectPki?: SubjectPublicKeyInfo;
  /** The key that signs it (another one makes a request that does not verify). */
  signer: KeyObject;
  signatureOid: string;
  /** Digest for node:crypto.sign; null for Ed25519/Ed448. */
  hash: string | null;
  /** RSA PKCS#1 v1.5 algorithm identifiers carry NULL parameters. */
  nullParams?: boolean;
  /** PSS keys sign with padding PSS. */
  pss?: boolean;
  cn?: string;
}

export function rawCsr(o: RawCsrOptions): string {
  const info = new CertificationRequestInfo({
    version: 0,
    subject: AsnConvert.parse(new x509.Name(`CN=${o.cn ?? 'hostile'}`).toArrayBuffer(), Name),
    subjectPKInfo:
      o.subjectPki ?? AsnConvert.parse(o.subjectKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
    attributes: new Attributes(),
  });
  const tbs = Buffer.from(AsnConvert.serialize(info));
  const signature = o.pss
    ? sign(o.hash, tbs, { key: o.signer, padding: 6 /* RSA_PKCS1_PSS_PADDING */, saltLength: 32 })
    : sign(o.hash, tbs, o.signer);
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier({
      algorithm: o.signatureOid,
      ...(o.nullParams ? { parameters: null } : {}),
    }),
    signature: new Uint8Array(signature).buffer,
  });
  return x509.PemConverter.encode(AsnConvert.serialize(csr), 'CERTIFICATE REQUEST');
}

export function rsa(bits: number, publicExponent = 65537): KeyPair {
  return generateKeyPairSync('rsa', { modulusLength: bits, publicExponent });
}

/**
 * An RSA public key of exactly `bits` bits whose modulus is random, not a product of two
 * primes: no private key exists, so a request for it is signed by another key. For the
 * size and exponent checks that come before the signature, it stands in for a real key
 * whose generation would take seconds (8192 bits and up).
 */
export function rsaPublicOfSize(bits: number, publicExponent = 65537): KeyObject {
  const n = randomBytes(Math.ceil(bits / 8));
  const spare = n.length * 8 - bits;
  n[0] = (n[0]! & (0xff >> spare)) | (0x80 >> spare); // exactly `bits` long
  n[n.length - 1]! |= 1;
  const e = Buffer.from(
    publicExponent
      .toString(16)
      .padStart(2, '0')
      .replace(/^(.(..)*)$/, '0$1'),
    'hex',
  );
  return createPublicKey({
    key: { kty: 'RSA', n: n.toString('base64url'), e: e.toString('base64url') },
    format: 'jwk',
  });
}

export function ec(namedCurve: string): KeyPair {
  return generateKeyPairSync('ec', { namedCurve });
}

/** A request for an RSA key, signed sha256WithRSAEncryption by `signer` (default: its own key). */
export function rsaCsr(keys: KeyPair, signer: KeyObject = keys.privateKey): string {
  return rawCsr({
    subjectKey: keys.publicKey,
    signer,
    signatureOid: OID.sha256WithRSA,
    hash: 'sha256',
    nullParams: true,
  });
}

/** A request for an EC key, signed ECDSA with the given digest by `signer` (default: its own key). */
export function ecCsr(
  keys: KeyPair,
  hash: 'sha256' | 'sha384' | 'sha512' = 'sha256',
  signer: KeyObject = keys.privateKey,
): string {
  const oid = { sha256: OID.ecdsaWithSha256, sha384: OID.ecdsaWithSha384, sha512: OID.ecdsaWithSha512 }[hash];
  return rawCsr({ subjectKey: keys.publicKey, signer, signatureOid: oid, hash });
}
