// Connector key pairs and PKCS#10 requests, and the relay's gate for CSRs that
// arrive over the network: everything untrusted is refused with a stable code.
import 'reflect-metadata'; // @peculiar/x509 (via tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { ProxyctlError, type ErrorCode } from '../errors.js';

x509.cryptoProvider.set(webcrypto);

const MAX_CSR_BYTES = 16 * 1024;
const EC_CURVES: Readonly<Record<string, string>> = { prime256v1: 'P-256', secp384r1: 'P-384' };
const MIN_RSA_BITS = 2048;
// Larger keys buy nothing over ECDSA and make every handshake (and our CSR check) slower: a cheap DoS lever.
const MAX_RSA_BITS = 4096;
const RSA_EXPONENT = 65537n; // small exponents (3) invite padding attacks; odd ones are a sign of a home-made key

export async function createKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }], // JSON form, so a CN containing "," or "=" cannot inject RDNs
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), csrPem: csr.toString('pem') };
}

function refuse(code: ErrorCode, message: string, cause?: unknown): ProxyctlError {
  return new ProxyctlError(code, message, { status: 400, cause });
}

export async function verifyCsr(pem: string): Promise<{ publicKey: x509.PublicKey; keyDescription: string }> {
  // Callers may hand us a parsed JSON field, so the type is checked at run time too.
  if (typeof pem !== 'string') throw refuse('ERR_CSR_INVALID', 'CSR must be a PEM string');
  if (Buffer.byteLength(pem, 'utf8') > MAX_CSR_BYTES) {
    throw refuse('ERR_CSR_INVALID', `CSR is larger than ${MAX_CSR_BYTES} bytes`);
  }

  let csr: x509.Pkcs10CertificateRequest;
  try {
    const blocks = x509.PemConverter.decodeWithHeaders(pem);
    if (blocks.length !== 1) throw refuse('ERR_CSR_INVALID', 'CSR must be exactly one PEM block');
    const [block] = blocks as [x509.PemStruct];
    if (block.type !== 'CERTIFICATE REQUEST') {
      throw refuse(
        'ERR_CSR_INVALID',
        `expected a CERTIFICATE REQUEST PEM block, got ${JSON.stringify(block.type.slice(0, 40))}`,
      );
    }
    csr = new x509.Pkcs10CertificateRequest(block.rawData);
  } catch (err) {
    if (err instanceof ProxyctlError) throw err;
    throw refuse('ERR_CSR_INVALID', 'CSR is not a valid PKCS#10 certificate request', err);
  }

  // Key policy first: it is cheap, and it keeps unsupported algorithms away from verify().
  let publicKey: x509.PublicKey;
  let key: KeyObject;
  try {
    publicKey = csr.publicKey;
    key = createPublicKey({ key: Buffer.from(publicKey.rawData), format: 'der', type: 'spki' });
  } catch (err) {
    throw refuse('ERR_CSR_WEAK_KEY', 'CSR public key is of an unsupported type', err);
  }
  const keyDescription = describeAcceptableKey(key);

  let valid: boolean;
  try {
    valid = await csr.verify();
  } catch (err) {
    throw refuse('ERR_CSR_SIGNATURE', 'CSR signature could not be verified', err);
  }
  if (!valid) throw refuse('ERR_CSR_SIGNATURE', 'CSR signature does not verify with its own public key');
  return { publicKey, keyDescription };
}

function describeAcceptableKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS)
      throw refuse('ERR_CSR_WEAK_KEY', `RSA key of ${bits} bits is below the ${MIN_RSA_BITS}-bit minimum`);
    if (bits > MAX_RSA_BITS)
      throw refuse('ERR_CSR_WEAK_KEY', `RSA key of ${bits} bits is above the ${MAX_RSA_BITS}-bit maximum`);
    if (details.publicExponent !== RSA_EXPONENT) {
      throw refuse(
        'ERR_CSR_WEAK_KEY',
        `RSA public exponent ${details.publicExponent ?? '(unknown)'} is not allowed; use ${RSA_EXPONENT}`,
      );
    }
    return `RSA ${bits}`;
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = EC_CURVES[details.namedCurve ?? ''];
    if (curve === undefined)
      throw refuse(
        'ERR_CSR_WEAK_KEY',
        `EC curve ${details.namedCurve ?? '(unknown)'} is not allowed; use P-256 or P-384`,
      );
    return `EC ${curve}`;
  }
  throw refuse(
    'ERR_CSR_WEAK_KEY',
    `key type ${key.asymmetricKeyType ?? '(unknown)'} is not allowed; use EC P-256/P-384 or RSA ${MIN_RSA_BITS}-${MAX_RSA_BITS}`,
  );
}
