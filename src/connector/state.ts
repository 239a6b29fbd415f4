// The connector's state directory: key.pem (0600), cert.pem, ca.pem and
// connector.json. Certificate swaps go through next-*.pem files so a crash at any
// point leaves a key and certificate that belong together. A registration under
// way keeps its key, CSR and idempotency key in pending-key.pem and pending.json
// from before it is sent until its identity is saved, so it can be retried.
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, rmdirSync, statSync } from 'node:fs';
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
  /** When `connector register` saw the relay accept this identity; absent while a registration is unconfirmed. */
  confirmedAt?: string;
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
  pendingKey: path.join(dir, 'pending-key.pem'),
  pending: path.join(dir, 'pending.json'),
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
    ...(s.confirmedAt ? { confirmedAt: s.confirmedAt } : {}),
  };
  writeFileAtomic(files(dir).meta, `${JSON.stringify(meta, null, 2)}\n`, 0o644);
}

/** A registration attempt, saved before it is sent: what its retry sends again. */
export interface PendingRegistration {
  relayUrl: string;
  name: string;
  group: string;
  /** RegisterRequest.idempotencyKey. */
  idempotencyKey: string;
  csrPem: string;
  keyPem: string;
  startedAt: string;
}

/** Saves an attempt before it is sent (the key first: pending.json is what marks one). */
export function savePending(dir: string, p: PendingRegistration): void {
  const f = files(dir);
  ensurePrivateDir(dir, 'connector state directory');
  writeFileAtomic(f.pendingKey, p.keyPem, 0o600);
  const { keyPem: _key, ...meta } = p;
  writeFileAtomic(f.pending, `${JSON.stringify(meta, null, 2)}\n`, 0o600);
}

/** The attempt saved in `dir`, if any; a damaged one is said so, never silently replaced (it may hold an issued identity). */
export function loadPending(dir: string): PendingRegistration | undefined {
  const f = files(dir);
  if (!existsSync(f.pending)) return undefined;
  tightenPrivateFile(f.pendingKey);
  let p: Partial<PendingRegistration>;
  try {
    p = JSON.parse(readFileSync(f.pending, 'utf8')) as Partial<PendingRegistration>;
    p.keyPem = readFileSync(f.pendingKey, 'utf8');
    createPrivateKey(p.keyPem);
  } catch (err) {
    throw invalid(
      'pending-invalid',
      `the registration saved in ${dir} (pending.json, pending-key.pem) is damaged (${errno(err)}); ` +
        `if the relay issued it, revoke that connector; then remove both files and register again`,
      err,
    );
  }
  for (const k of ['relayUrl', 'name', 'group', 'idempotencyKey', 'csrPem', 'startedAt'] as const) {
    if (typeof p[k] !== 'string') throw invalid('pending-invalid', `${f.pending} lacks "${k}"`);
  }
  return p as PendingRegistration;
}

/**
 * The attempt is over (its identity saved, or refused before anything was issued). With
 * `dropDir` (the attempt made the directory), an empty directory goes too.
 */
export function clearPending(dir: string, dropDir = false): void {
  const f = files(dir);
  rmSync(f.pending, { force: true });
  rmSync(f.pendingKey, { force: true });
  if (!dropDir) return;
  try {
    rmdirSync(dir);
  } catch {
    // not empty: something else lives there
  }
}

/** Records that the relay accepted the identity saved in `dir` (the end of a registration). */
export function markConfirmed(state: ConnectorState, at: Date = new Date()): ConnectorState {
  const next = { ...state, confirmedAt: at.toISOString() };
  writeMeta(state.dir, next);
  return next;
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

/** Why a state directory cannot be used, for scripts and tests (details.reason of ERR_STATE_INVALID). */
export type StateProblem =
  | 'no-identity'
  | 'dir-unreadable'
  | 'file-unreadable'
  | 'incomplete'
  | 'key-invalid'
  | 'cert-invalid'
  | 'ca-invalid'
  | 'key-mismatch'
  | 'meta-invalid'
  | 'pending-invalid';

function invalid(reason: StateProblem, message: string, cause?: unknown): ProxyctlError {
  return new ProxyctlError('ERR_STATE_INVALID', message, { cause, details: { reason } });
}

const errno = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/** Told when loadState found something to fix (a key other users could read). */
export type StateWarning = (fields: Record<string, unknown>, message: string) => void;

/** Lists the directory, so "no identity" is said only when there is none, never when it cannot be read. */
function listStateDir(dir: string): Set<string> {
  try {
    return new Set(readdirSync(dir));
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT') {
      throw invalid(
        'no-identity',
        `no connector identity in ${dir} (it does not exist); run "proxyctl connector register" first`,
      );
    }
    throw invalid(
      'dir-unreadable',
      `cannot read the connector state directory ${dir} (${code}); run the connector as the user that owns it ` +
        `(do not register again: that would make a second connector)`,
      err,
    );
  }
}

function readStateFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw invalid(
      'file-unreadable',
      `cannot read ${file} (${errno(err)}); run the connector as the user that owns it, or restore the file from a backup`,
      err,
    );
  }
}

/**
 * Refuses nothing but says so: a key.pem other users could read is tightened to 0600
 * (as before), and the warning names what it means: anyone who read it holds the
 * connector's identity, so revoke and register again if that is possible.
 */
function tightenKey(file: string, warn: StateWarning | undefined): void {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return; // missing or unreadable: reported by the read that follows
  }
  tightenPrivateFile(file);
  if ((mode & 0o077) === 0 || process.platform === 'win32') return;
  warn?.(
    { file, mode: `0${mode.toString(8)}`, now: '0600' },
    `${file} was readable by other users (mode 0${mode.toString(8)}); it is now 0600. Anyone who could read it ` +
      `holds this connector's identity: if that is possible, revoke the connector ("proxyctl connector revoke") ` +
      `and register it again`,
  );
}

export function loadState(dir: string, warn?: StateWarning): ConnectorState {
  const f = files(dir);
  const present = listStateDir(dir);
  if (!present.has('cert.pem') && !present.has('key.pem')) {
    if (present.has('pending.json')) {
      throw invalid(
        'no-identity',
        `the registration of this connector in ${dir} did not finish; run the same "proxyctl connector register" ` +
          `command again to finish it (do not remove ${dir}: that could leave the relay with a connector nobody runs)`,
      );
    }
    throw invalid('no-identity', `no connector identity in ${dir}; run "proxyctl connector register" first`);
  }
  // State made by hand, restored from a backup or by an older version: owner-only before use.
  ensurePrivateDir(dir, 'connector state directory');
  tightenKey(f.key, warn);
  tightenKey(f.nextKey, warn);
  recoverSwap(f);
  for (const name of ['key.pem', 'cert.pem', 'ca.pem', 'connector.json']) {
    if (!existsSync(path.join(dir, name))) {
      throw invalid(
        'incomplete',
        `connector state in ${dir} is incomplete: ${name} is missing; restore it from a backup, or revoke this connector and register again`,
      );
    }
  }
  const keyPem = readStateFile(f.key);
  const certPem = readStateFile(f.cert);
  const caPem = readStateFile(f.ca);
  const metaText = readStateFile(f.meta);
  // Each file parsed on its own, so a damaged one is named rather than blamed on another.
  try {
    createPrivateKey(keyPem);
  } catch (err) {
    throw invalid(
      'key-invalid',
      `${f.key} is not a valid private key (truncated or damaged); restore it from a backup, or revoke this connector and register again`,
      err,
    );
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw invalid(
      'cert-invalid',
      `${f.cert} is not a valid certificate (truncated or damaged); restore it from a backup, or revoke this connector and register again`,
      err,
    );
  }
  try {
    new X509Certificate(caPem);
  } catch (err) {
    throw invalid(
      'ca-invalid',
      `${f.ca} is not a valid certificate (truncated or damaged); copy the relay's ca.pem (its <dataDir>/ca.pem) there`,
      err,
    );
  }
  if (!keyMatchesCert(keyPem, certPem)) {
    throw invalid('key-mismatch', `${f.key} does not belong to ${f.cert}; register the connector again`);
  }
  let meta: ConnectorIdentityFile;
  try {
    meta = JSON.parse(metaText) as ConnectorIdentityFile;
  } catch (err) {
    throw invalid('meta-invalid', `${f.meta} is not valid JSON (truncated or damaged); restore it from a backup`, err);
  }
  if (meta === null || typeof meta !== 'object') throw invalid('meta-invalid', `${f.meta} is not a JSON object`);
  for (const k of ['relayUrl', 'connectorId', 'certificateIssuedAt'] as const) {
    if (typeof meta[k] !== 'string') throw invalid('meta-invalid', `${f.meta} lacks "${k}"`);
  }
  // After a swap finished by recovery (or a crash before the metadata write), the
  // certificate on disk is the truth: bring connector.json in line with it.
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
