// The master key: a key-encryption key kept outside the database (a file, or the
// environment) that seals the relay secrets replicas share through the store: the CA
// key, session and assertion keys, the embedded provider's signing keys. AES-256-GCM
// from node:crypto, a random 96-bit nonce per secret, and the secret's purpose bound
// in as additional data, so a sealed CA key cannot be passed off as a session key.
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { ProxyctlError } from '../errors.js';

/** The environment variable that may hold the master key instead of a file. */
export const MASTER_KEY_ENV = 'PROXYCTL_MASTER_KEY';

const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const FORMAT = 'pxk1';
/** A key file holds one line; anything much longer is not one. */
const MAX_FILE_BYTES = 1024;
const EXPECTED = `the base64 (or base64url) encoding of ${KEY_BYTES} random bytes, such as \`openssl rand -base64 32\` prints`;

/** pxk1.<key id>.<nonce>.<ciphertext>.<tag>, each part base64url without padding. */
const SEALED = /^pxk1\.([0-9a-f]{16})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]{22})$/;
/** One alphabet throughout (standard or URL-safe), optional padding. */
const BASE64 = /^(?:[A-Za-z0-9+/]+|[A-Za-z0-9_-]+)={0,2}$/;
/** A purpose names what a secret is for: visible ASCII, as a program writes it. */
const PURPOSE = /^[\x21-\x7e]{1,200}$/;

function keyError(message: string, details?: Record<string, unknown>, cause?: unknown): ProxyctlError {
  return new ProxyctlError('ERR_MASTER_KEY', message, { details, cause });
}

/** base64url without padding, and only the one canonical spelling of each byte string. */
function fromBase64url(text: string): Buffer | undefined {
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/**
 * Decodes a master key as written in a file or the environment. Whitespace around
 * it is ignored; inside it, or in a second alphabet, it is refused, as are spellings
 * that only decode leniently (stray bits in the last character).
 */
function decodeKey(text: string, source: string): Buffer {
  const s = text.trim();
  if (s === '') throw keyError(`${source} is empty; expected ${EXPECTED}`, { source });
  if (!BASE64.test(s) || (s.includes('=') && s.length % 4 !== 0))
    throw keyError(`${source} is not base64; expected ${EXPECTED}`, { source });
  const bytes = Buffer.from(s, 'base64');
  const unpadded = s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  if (bytes.toString('base64url') !== unpadded) {
    bytes.fill(0);
    throw keyError(`${source} is not canonical base64 (stray bits in its last character); expected ${EXPECTED}`, {
      source,
    });
  }
  if (bytes.length !== KEY_BYTES) {
    const hint = /^[0-9a-fA-F]{64}$/.test(s) ? ' (it looks like hex: proxyctl reads master keys as base64)' : '';
    const n = bytes.length;
    bytes.fill(0);
    throw keyError(`${source} holds ${n} bytes${hint}; expected ${EXPECTED}`, { source, bytes: n });
  }
  return bytes;
}

const euid = (): number | undefined => (typeof process.geteuid === 'function' ? process.geteuid() : undefined);

/**
 * Reads a key file, refusing one that group or others may access (as ssh refuses a
 * private key): a readable key is a leaked key. Opened non-blocking so a FIFO in its
 * place cannot hang the relay's start, and checked on the open descriptor, not the path.
 */
function readKeyFile(file: string, source: string): string {
  let fd: number;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    const what = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`;
    throw keyError(`${source} ${what}`, { source, reason: code }, err);
  }
  const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw keyError(`${source} is not a regular file`, { source, reason: 'not a file' });
    const mode = st.mode & 0o777;
    if (euid() !== undefined && (mode & 0o077) !== 0) {
      throw keyError(
        `${source} may be accessed by group or others (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`,
        { source, reason: 'mode', mode },
      );
    }
    const n = readSync(fd, buf, 0, buf.length, 0);
    if (n > MAX_FILE_BYTES)
      throw keyError(`${source} is over ${MAX_FILE_BYTES} bytes; expected ${EXPECTED}`, { source, reason: 'size' });
    return buf.subarray(0, n).toString('utf8');
  } finally {
    buf.fill(0);
    closeSync(fd);
  }
}

export interface MasterKeySources {
  /** `secrets.masterKeyFile`, resolved against the config file's directory. */
  file?: string | undefined;
  /** The environment to read PROXYCTL_MASTER_KEY from (process.env in the relay). */
  env: Readonly<Record<string, string | undefined>>;
}

/**
 * The master key from `secrets.masterKeyFile` or PROXYCTL_MASTER_KEY; undefined when
 * neither is set. Setting both is refused rather than guessing which one is meant.
 */
export function loadMasterKey(sources: MasterKeySources): MasterKey | undefined {
  const fromEnv = sources.env[MASTER_KEY_ENV];
  if (sources.file !== undefined && fromEnv !== undefined) {
    throw keyError(`both secrets.masterKeyFile and ${MASTER_KEY_ENV} are set; set one of them`, {
      source: 'both',
    });
  }
  if (sources.file !== undefined) {
    const source = `master key file ${sources.file} (secrets.masterKeyFile)`;
    return parseMasterKey(readKeyFile(sources.file, source), source);
  }
  if (fromEnv !== undefined) return parseMasterKey(fromEnv, MASTER_KEY_ENV);
  return undefined;
}

/** A master key from its encoded form; `source` names where it came from in errors. */
export function parseMasterKey(text: string, source = 'the master key'): MasterKey {
  const bytes = decodeKey(text, source);
  try {
    return new MasterKey(createSecretKey(bytes));
  } finally {
    bytes.fill(0);
  }
}

/** The contents of a new master key file: 32 random bytes, base64url, one line. */
export function generateMasterKey(): string {
  const bytes = randomBytes(KEY_BYTES);
  const text = bytes.toString('base64url');
  bytes.fill(0);
  return `${text}\n`;
}

/** Whether `text` has the shape of a sealed secret (says nothing about which key or whether it is intact). */
export function isSealed(text: string): boolean {
  return typeof text === 'string' && SEALED.test(text);
}

/** The id of the master key a sealed secret names, or undefined when `text` is not one. */
export function sealedKeyId(text: string): string | undefined {
  return typeof text === 'string' ? SEALED.exec(text)?.[1] : undefined;
}

function checkPurpose(purpose: string): void {
  if (typeof purpose !== 'string' || !PURPOSE.test(purpose))
    throw new RangeError('the purpose of a sealed secret must be 1 to 200 visible ASCII characters');
}

/**
 * Seals and opens secrets. The key itself stays in a KeyObject behind a private
 * field: it is never exposed, logged or serialised (JSON shows only the id).
 */
export class MasterKey {
  /** A fingerprint that names the key in sealed secrets and errors without revealing it. */
  readonly id: string;
  readonly #key: KeyObject;

  /** @internal use parseMasterKey or loadMasterKey. */
  constructor(key: KeyObject) {
    if (key.type !== 'secret' || key.symmetricKeySize !== KEY_BYTES)
      throw new RangeError(`a master key is a ${KEY_BYTES}-byte secret key`);
    this.#key = key;
    this.id = createHmac('sha256', key).update('proxyctl master key id').digest('hex').slice(0, 16);
  }

  /** The additional data: the format and key id as well as the purpose, so none can be edited unnoticed. */
  #aad(keyId: string, purpose: string): Buffer {
    return Buffer.from(`${FORMAT}.${keyId}.${purpose}`, 'utf8');
  }

  /** Seals `plaintext` (UTF-8) for `purpose` ("ca-key", "session-key"…): unwrap needs the same purpose. */
  wrap(plaintext: string, purpose: string): string {
    checkPurpose(purpose);
    if (typeof plaintext !== 'string') throw new TypeError('only strings are sealed');
    const data = Buffer.from(plaintext, 'utf8');
    // A lone surrogate would come back as U+FFFD: refuse rather than return something else.
    if (data.toString('utf8') !== plaintext) throw new RangeError('the secret is not well-formed Unicode');
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(this.#aad(this.id, purpose));
    const ciphertext = Buffer.concat([cipher.update(data), cipher.final()]);
    data.fill(0);
    const tag = cipher.getAuthTag();
    return [FORMAT, this.id, nonce, ciphertext, tag]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
  }

  /**
   * Opens a secret sealed for `purpose`. Refused with ERR_MASTER_KEY when it is not a
   * sealed secret, was sealed with another master key (details: sealedWith, masterKey),
   * or does not authenticate (altered, truncated, or sealed for another purpose).
   */
  unwrap(sealed: string, purpose: string): string {
    checkPurpose(purpose);
    const m = typeof sealed === 'string' ? SEALED.exec(sealed) : null;
    if (!m) {
      // The text is never echoed: a secret stored unsealed by mistake must not reach a log.
      const version = typeof sealed === 'string' ? /^pxk(\d+)\./.exec(sealed)?.[1] : undefined;
      if (version !== undefined && version !== '1') {
        throw keyError(
          `the secret ${purpose} is sealed in format pxk${version}, which this version of proxyctl cannot read`,
          { purpose, reason: 'format' },
        );
      }
      throw keyError(`the secret ${purpose} is not a sealed secret (expected ${FORMAT}.<key id>.…)`, {
        purpose,
        reason: 'format',
      });
    }
    const [, keyId, nonceText, ciphertextText, tagText] = m as unknown as [string, string, string, string, string];
    if (keyId !== this.id) {
      throw keyError(`the secret ${purpose} was sealed with master key ${keyId}, this relay has ${this.id}`, {
        purpose,
        reason: 'key',
        sealedWith: keyId,
        masterKey: this.id,
      });
    }
    const nonce = fromBase64url(nonceText);
    const ciphertext = fromBase64url(ciphertextText);
    const tag = fromBase64url(tagText);
    const altered = () =>
      keyError(
        `the secret ${purpose} does not open with master key ${this.id}: it was altered, or sealed for another purpose`,
        { purpose, reason: 'integrity' },
      );
    if (!nonce || !ciphertext || !tag) throw altered();
    const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(this.#aad(keyId, purpose));
    decipher.setAuthTag(tag);
    let plaintext: Buffer;
    try {
      plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch {
      throw altered();
    }
    const text = plaintext.toString('utf8');
    plaintext.fill(0);
    return text;
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }
}
