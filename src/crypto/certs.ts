// Read-only facts about a PEM certificate, for listings, logs and revocation lookups.
// Serials come out normalised so they compare equal to what the CA returned at issue time.
import { X509Certificate } from 'node:crypto';
import { ProxyctlError } from '../errors.js';
import { normalizeSerial } from './ca.js';

export function certificateInfo(pem: string): {
  serial: string;
  subjectCN: string;
  notBefore: Date;
  notAfter: Date;
  fingerprint256: string;
} {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new ProxyctlError('ERR_CERT_UNTRUSTED', 'not a readable X.509 certificate', { status: 400, cause: err });
  }
  // The legacy object holds decoded attribute values; `subject` is RFC 2253-escaped text.
  const cn: unknown = cert.toLegacyObject().subject?.CN;
  const subjectCN = typeof cn === 'string' ? cn : Array.isArray(cn) && typeof cn[0] === 'string' ? cn[0] : '';
  return {
    serial: normalizeSerial(cert.serialNumber),
    subjectCN,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    fingerprint256: cert.fingerprint256,
  };
}
