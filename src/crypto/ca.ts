// The relay's private CA: created once on disk and never replaced, because every
// connector certificate in the field chains to it. Issues server and client certs.
import 'reflect-metadata'; // @peculiar/x509 (via tsyringe) needs it loaded first
import * as x509 from '@peculiar/x509';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { ProxyctlError, wrapError } from '../errors.js';
import { ensurePrivateDir, tightenPrivateFile } from '../fs-private.js';
import { verifyCsr } from './csr.js';

x509.cryptoProvider.set(webcrypto);

type CryptoKey = webcrypto.CryptoKey;

export interface IssuedCertificate {
  certPem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALG = { name: 'ECDSA', hash: 'SHA-256' } as const;
const CLOCK_SKEW_MS = 5 * 60 * 1000; // backdating tolerates peers whose clocks run slow
const CA_LIFETIME_MS = 10 * 365.25 * 24 * 60 * 60 * 1000;
const CA_CERT_FILE = 'ca.pem';
const CA_KEY_FILE = 'ca-key.pem';

/** Uppercase hex without colons or leading zeros: the one form serials are compared in. */
export function normalizeSerial(s: string): string {
  const hex = s.replace(/[:\s]/g, '').toUpperCase().replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! % 0x7f) + 1; // 0x01..0x7f: positive, and DER keeps all 16 bytes
  return bytes.toString('hex');
}

function checkLifetime(lifetimeMs: number): void {
  if (!Number.isFinite(lifetimeMs) || lifetimeMs <= 0) {
    throw new ProxyctlError('ERR_INTERNAL', `certificate lifetime must be a positive number of ms, got ${lifetimeMs}`);
  }
}

export class RelayCa {
  readonly certPem: string;

  /** Use loadOrCreateCa(); the constructor trusts that key and certificate match. */
  constructor(
    readonly certificate: x509.X509Certificate,
    private readonly signingKey: CryptoKey,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.certPem = certificate.toString('pem');
  }

  async issueServerCertificate(
    hosts: string[],
    lifetimeMs: number,
  ): Promise<{ certPem: string; keyPem: string; serial: string; notAfter: Date }> {
    if (hosts.length === 0 || hosts.some((h) => h.trim() === '')) {
      throw new ProxyctlError('ERR_INTERNAL', 'server certificate needs at least one non-empty host');
    }
    const names = hosts.map((h): x509.JsonGeneralName => {
      const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
      return isIP(bare) !== 0 ? { type: 'ip', value: bare } : { type: 'dns', value: h };
    });
    const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
    const issued = await this.sign(keys.publicKey, [{ CN: [hosts[0]!] }], lifetimeMs, [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ]);
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return {
      certPem: issued.certPem,
      keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'),
      serial: issued.serial,
      notAfter: issued.notAfter,
    };
  }

  async signConnectorCsr(
    csrPem: string,
    opts: { connectorId: string; lifetimeMs: number },
  ): Promise<IssuedCertificate> {
    const { publicKey } = await verifyCsr(csrPem);
    if (typeof opts.connectorId !== 'string' || opts.connectorId === '') {
      throw new ProxyctlError('ERR_INTERNAL', 'connector id must be a non-empty string');
    }
    // The relay names the connector; whatever subject the CSR asked for is ignored.
    return this.sign(publicKey, [{ CN: [opts.connectorId] }, { O: ['proxyctl connector'] }], opts.lifetimeMs, [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ]);
  }

  private async sign(
    publicKey: x509.PublicKeyType,
    subject: x509.JsonName,
    lifetimeMs: number,
    extensions: x509.Extension[],
  ): Promise<IssuedCertificate> {
    checkLifetime(lifetimeMs);
    const now = this.now().getTime();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: this.certificate.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + lifetimeMs),
      // @peculiar/x509's PublicKeyType names the DOM CryptoKey, which typed lint cannot resolve here.
      // eslint-disable-next-line @typescript-eslint/no-unsafe-assignment
      publicKey,
      signingKey: this.signingKey,
      signingAlgorithm: SIGNING_ALG,
      extensions: [
        ...extensions,
        await x509.AuthorityKeyIdentifierExtension.create(this.certificate.publicKey),
        await x509.SubjectKeyIdentifierExtension.create(publicKey),
      ],
    });
    return {
      certPem: cert.toString('pem'),
      serial: normalizeSerial(cert.serialNumber),
      notBefore: cert.notBefore,
      notAfter: cert.notAfter,
    };
  }
}

export async function loadOrCreateCa(dir: string, opts: { now?: () => Date } = {}): Promise<RelayCa> {
  const now = opts.now ?? (() => new Date());
  const certFile = path.join(dir, CA_CERT_FILE);
  const keyFile = path.join(dir, CA_KEY_FILE);
  // The directory also holds the relay's store and keys: owner-only before anything is read or written.
  ensurePrivateDir(dir, 'CA directory');
  tightenPrivateFile(keyFile);
  const [certPem, keyPem] = await Promise.all([readIfExists(certFile), readIfExists(keyFile)]);
  if (certPem !== undefined && keyPem !== undefined) return loadCa(certPem, certFile, keyPem, keyFile, now);
  if (certPem !== undefined || keyPem !== undefined) {
    const [present, missing] = certPem !== undefined ? [certFile, keyFile] : [keyFile, certFile];
    throw new ProxyctlError(
      'ERR_STATE_INVALID',
      `CA state is incomplete: ${present} exists but ${missing} does not; restore the missing file from backup (deleting both re-keys the CA and invalidates every connector certificate)`,
    );
  }
  return createCa(certFile, keyFile, now);
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw wrapError(err, 'ERR_STATE_INVALID', `cannot read ${file}: ${(err as Error).message}`);
  }
}

async function loadCa(
  certPem: string,
  certFile: string,
  keyPem: string,
  keyFile: string,
  now: () => Date,
): Promise<RelayCa> {
  let certificate: x509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(certPem);
  } catch (err) {
    throw wrapError(err, 'ERR_STATE_INVALID', `${certFile} does not contain a readable X.509 certificate`);
  }
  if (certificate.getExtension(x509.BasicConstraintsExtension)?.ca !== true) {
    throw new ProxyctlError('ERR_STATE_INVALID', `${certFile} is not a CA certificate`);
  }
  let signingKey: CryptoKey;
  try {
    const privateKey = createPrivateKey(keyPem);
    const derivedSpki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    if (!derivedSpki.equals(Buffer.from(certificate.publicKey.rawData))) {
      throw new ProxyctlError(
        'ERR_STATE_INVALID',
        `CA key ${keyFile} does not belong to the CA certificate ${certFile}`,
      );
    }
    const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
    signingKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, EC_P256, false, ['sign']);
  } catch (err) {
    throw wrapError(err, 'ERR_STATE_INVALID', `${keyFile} does not contain a usable ECDSA P-256 private key`);
  }
  return new RelayCa(certificate, signingKey, now);
}

async function createCa(certFile: string, keyFile: string, now: () => Date): Promise<RelayCa> {
  const fresh = await generateCa(now);
  // Key before certificate: an interrupted first start leaves a half state that is refused loudly.
  await writeNewFileAtomic(keyFile, fresh.keyPem, 0o600);
  await writeNewFileAtomic(certFile, fresh.certPem, 0o644);
  return loadCa(fresh.certPem, certFile, fresh.keyPem, keyFile, now);
}

/** A new self-signed relay CA (ECDSA P-256, ten years) as PEM. */
export async function generateCa(now: () => Date = () => new Date()): Promise<{ certPem: string; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const start = now().getTime();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: ['proxyctl relay CA'] }, { O: ['proxyctl'] }],
    notBefore: new Date(start - CLOCK_SKEW_MS),
    notAfter: new Date(start + CA_LIFETIME_MS),
    keys,
    signingAlgorithm: SIGNING_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: certificate.toString('pem'), keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

/**
 * The relay CA from PEM held elsewhere (the shared store): the same checks as files get
 * (a CA certificate, the key belongs to it). `where` names the source in errors.
 */
export function caFromPem(certPem: string, keyPem: string, where: string, now: () => Date = () => new Date()) {
  return loadCa(certPem, `${where} (certificate)`, keyPem, `${where} (key)`, now);
}

/** Reads the CA files of a data directory as PEM, or undefined when there is no CA there. */
export async function readCaFiles(dir: string): Promise<{ certPem: string; keyPem: string } | undefined> {
  const [certPem, keyPem] = await Promise.all([
    readIfExists(path.join(dir, CA_CERT_FILE)),
    readIfExists(path.join(dir, CA_KEY_FILE)),
  ]);
  return certPem !== undefined && keyPem !== undefined ? { certPem, keyPem } : undefined;
}

/** tmp + fsync + link: link(2) is atomic like rename(2) but fails instead of replacing an existing CA file. */
async function writeNewFileAtomic(file: string, data: string, mode: number): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await fs.open(tmp, 'wx', mode);
    try {
      await handle.chmod(mode); // open's mode is filtered by the umask
      await handle.writeFile(data, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.link(tmp, file);
  } catch (err) {
    const exists = (err as NodeJS.ErrnoException).code === 'EEXIST';
    throw wrapError(
      err,
      'ERR_STATE_INVALID',
      exists
        ? `${file} appeared while the CA was being created (another relay starting?); refusing to overwrite it`
        : `cannot write ${file}: ${(err as Error).message}`,
    );
  } finally {
    await fs.rm(tmp, { force: true });
  }
  await syncDir(dir);
}

/** Makes the new directory entry durable; best effort, since some platforms cannot fsync a directory. */
async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // The file is already in place; failing now would only turn a durable-enough CA into a half state.
  }
}
