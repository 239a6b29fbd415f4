// The relay's own TLS server certificates, issued from its CA and kept in the
// data directory; reissued when the host list changes or expiry is near.
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { RelayCa } from '../../crypto/ca.js';
import { writeFileAtomic } from '../../fs-atomic.js';
import { canonicalAddress } from '../../net/address.js';

const LIFETIME_MS = 365 * 86_400_000;
const RENEW_BEFORE_MS = 30 * 86_400_000;

export interface ServerCertificate {
  certPem: string;
  keyPem: string;
}

export async function ensureServerCertificate(
  dataDir: string,
  ca: RelayCa,
  name: string,
  hosts: readonly string[],
  now = Date.now(),
): Promise<ServerCertificate> {
  const dir = path.join(dataDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = path.join(dir, `${name}-cert.pem`);
  const keyFile = path.join(dir, `${name}-key.pem`);
  const wanted = [...new Set(hosts.map((h) => h.toLowerCase()))];
  try {
    const certPem = readFileSync(certFile, 'utf8');
    const keyPem = readFileSync(keyFile, 'utf8');
    const cert = new X509Certificate(certPem);
    // Node prints IPv6 SANs expanded: compare addresses in their one spelling.
    const sans = (cert.subjectAltName ?? '')
      .split(', ')
      .map((s) => canonicalAddress(s.replace(/^(DNS|IP Address):/, '').toLowerCase()));
    const fresh = Date.parse(cert.validTo) - now > RENEW_BEFORE_MS;
    const issuedByUs = cert.checkIssued(new X509Certificate(ca.certPem));
    if (fresh && issuedByUs && wanted.every((h) => sans.includes(canonicalAddress(h.replace(/^\[|\]$/g, '')))))
      return { certPem, keyPem };
  } catch {
    // missing or unreadable: issue a new one below
  }
  const issued = await ca.issueServerCertificate(wanted, LIFETIME_MS);
  writeFileAtomic(keyFile, issued.keyPem, 0o600);
  writeFileAtomic(certFile, issued.certPem, 0o644);
  return { certPem: issued.certPem, keyPem: issued.keyPem };
}
