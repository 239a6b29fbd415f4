// The connector's state directory: key.pem (0600), cert.pem, ca.pem and
// connector.json. Certificate swaps go through next-*.pem files so a crash at any
// point leaves a key and certificate that belong together.
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ProxyctlError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { ensurePrivateDir, tightenPrivateFile } from '../fs-private.js';
import { normalizeSerial } from '../crypto/ca.js';
import type { RegisterResponse } from '../protocol/connector-api.js';

export interface ConnectorIdentityFile {
  relayUrl: string;
  connectorId: string;
  name: string;
  group: string;
  registeredAt: string;
  /** When the current certificate was issued (drives renewal). */
  certificateIssuedAt: string;
  serial: string;
}

export interface ConnectorState extends ConnectorIdentityFile {
  dir: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

export function defaultStateDir(): string {
  return path.resolve(process.env['PROXYCTL_STATE_DIR'] ?? 'proxyctl-connector');
}

const files = (dir: string) => ({
  key: path.join(dir, 'key.pem'),
  cert: path.join(dir, 'cert.pem'),
  ca: path.join(dir, 'ca.pem'),
  meta: path.join(dir, 'connector.json'),
  nextKey: path.join(dir, 'next-key.pem'),
  nextCert: path.join(dir, 'next-cert.pem'),
});

export function keyMatchesCert(keyPem: string, certPem: string): boolean {
  try {
    const pub = createPublicKey(createPrivateKey(keyPem)).export({ format: 'der', type: 'spki' });
    const certPub = new X509Certificate(certPem).publicKey.export({ format: 'der', type: 'spki' });
    return pub.equals(certPub);
  } catch {
    return false;
  }
}

/** What a registration gives back, and what the connector sent for it. */
export interface Registration {
  relayUrl: string;
  name: string;
  group: string;
  keyPem: string;
  issued: RegisterResponse;
  /** When the certificate counts as issued for renewal; now by default. */
  issuedAt?: string;
}

/** Writes the identity a registration gave (writeNewState with the response's fields). */
export function writeRegistration(dir: string, r: Registration): void {
  const now = new Date().toISOString();
  writeNewState(dir, {
    relayUrl: r.relayUrl,
    connectorId: r.issued.connectorId,
    name: r.name,
    group: r.group,
    registeredAt: now,
    certificateIssuedAt: r.issuedAt ?? now,
    serial: r.issued.serial,
    keyPem: r.keyPem,
    certPem: r.issued.certificate,
    caPem: r.issued.caCertificate,
  });
}

/** Writes a freshly registered identity; refuses to overwrite one that exists. */
export function writeNewState(dir: string, s: Omit<ConnectorState, 'dir'>, overwrite = false): void {
  const f = files(dir);
  ensurePrivateDir(dir, 'connector state directory');
  if (!overwrite && existsSync(f.cert)) {
    throw new ProxyctlError(
      'ERR_USAGE',
      `${dir} already holds a registered connector; use another --state-dir or remove it first`,
    );
  }
  writeFileAtomic(f.key, s.keyPem, 0o600);
  writeFileAtomic(f.cert, s.certPem, 0o644);
  writeFileAtomic(f.ca, s.caPem, 0o644);
  writeMeta(dir, s);
}

function writeMeta(dir: string, s: ConnectorIdentityFile): void {
  const meta: ConnectorIdentityFile = {
    relayUrl: s.relayUrl,
    connectorId: s.connectorId,
    name: s.name,
    group: s.group,
    registeredAt: s.registeredAt,
    certificateIssuedAt: s.certificateIssuedAt,
    serial: s.serial,
  };
  writeFileAtomic(files(dir).meta, `${JSON.stringify(meta, null, 2)}\n`, 0o644);
}

/** Installs a renewed key and certificate; survives a crash between any two steps. */
export function swapCertificate(
  state: ConnectorState,
  keyPem: string,
  certPem: string,
  serial: string,
  issuedAt: Date,
): ConnectorState {
  const f = files(state.dir);
  writeFileAtomic(f.nextKey, keyPem, 0o600);
  writeFileAtomic(f.nextCert, certPem, 0o644);
  renameSync(f.nextKey, f.key);
  renameSync(f.nextCert, f.cert);
  const next: ConnectorState = { ...state, keyPem, certPem, serial, certificateIssuedAt: issuedAt.toISOString() };
  writeMeta(state.dir, next);
  return next;
}

export function loadState(dir: string): ConnectorState {
  const f = files(dir);
  if (!existsSync(f.cert) && !existsSync(f.key)) {
    throw new ProxyctlError(
      'ERR_STATE_INVALID',
      `no connector identity in ${dir}; run "proxyctl connector register" first`,
    );
  }
  // State made by hand, restored from a backup or by an older version: owner-only before use.
  ensurePrivateDir(dir, 'connector state directory');
  tightenPrivateFile(f.key);
  tightenPrivateFile(f.nextKey);
  recoverSwap(f);
  let keyPem: string, certPem: string, caPem: string, meta: ConnectorIdentityFile;
  try {
    keyPem = readFileSync(f.key, 'utf8');
    certPem = readFileSync(f.cert, 'utf8');
    caPem = readFileSync(f.ca, 'utf8');
    meta = JSON.parse(readFileSync(f.meta, 'utf8')) as ConnectorIdentityFile;
  } catch (err) {
    throw new ProxyctlError('ERR_STATE_INVALID', `connector state in ${dir} is incomplete: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!keyMatchesCert(keyPem, certPem)) {
    throw new ProxyctlError('ERR_STATE_INVALID', `${f.key} does not belong to ${f.cert}; register the connector again`);
  }
  for (const k of ['relayUrl', 'connectorId', 'certificateIssuedAt'] as const) {
    if (typeof meta[k] !== 'string') throw new ProxyctlError('ERR_STATE_INVALID', `${f.meta} lacks "${k}"`);
  }
  // After a swap finished by recovery (or a crash before the metadata write), the
  // certificate on disk is the truth: bring connector.json in line with it.
  const cert = new X509Certificate(certPem);
  const serial = normalizeSerial(cert.serialNumber);
  if (serial !== meta.serial) {
    // Issued certificates are back-dated 5 minutes for clock skew.
    meta = { ...meta, serial, certificateIssuedAt: new Date(Date.parse(cert.validFrom) + 5 * 60_000).toISOString() };
    writeMeta(dir, meta);
  }
  return { ...meta, dir, keyPem, certPem, caPem };
}

function recoverSwap(f: ReturnType<typeof files>): void {
  const hasKey = existsSync(f.nextKey);
  const hasCert = existsSync(f.nextCert);
  if (hasCert) {
    // Crash after both next files were written: finish the swap if they pair up.
    const certPem = readFileSync(f.nextCert, 'utf8');
    const keyPem = hasKey ? readFileSync(f.nextKey, 'utf8') : readFileSync(f.key, 'utf8');
    if (keyMatchesCert(keyPem, certPem)) {
      if (hasKey) renameSync(f.nextKey, f.key);
      renameSync(f.nextCert, f.cert);
      return;
    }
  }
  // An unfinished renewal that never got its certificate: the current pair stands.
  if (hasKey) rmSync(f.nextKey, { force: true });
  if (hasCert) rmSync(f.nextCert, { force: true });
}
