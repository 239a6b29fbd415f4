// Users of the embedded identity provider: password hashing (scrypt), TOTP second
// factor (otpauth) and an optional YAML users file that overrides the store
// (the throttle is throttle.ts). Passwords and secrets never leave this module except as hashes.
import { randomBytes, randomInt, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Secret, TOTP } from 'otpauth';
import { configError } from '../config/relay-config.js';
import { Validation, join, obj, optStr, parseYaml, str, strList } from '../config/schema.js';
import { ProxyctlError } from '../errors.js';
import type { UserRecord, UserRepo } from '../store/index.js';

// ---- passwords ----

const SCRYPT_N = 32768;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

export const PASSWORD_MIN_CHARS = 8;
export const PASSWORD_MAX_CHARS = 1024;

/** Lower-case user names: a letter or digit, then letters, digits, `.`, `_`, `@`, `-` (64 at most). */
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._@-]{0,63}$/;

const HASH_FORMAT = /^scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/;

interface ScryptParams {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** Memory OpenSSL needs for these parameters (V + B), plus headroom. */
const maxmemFor = (N: number, r: number, p: number): number => 128 * r * (N + 2 + p) + 1024 * 1024;

function b64url(text: string): Buffer | undefined {
  const buf = Buffer.from(text, 'base64url');
  // Buffer decoding is lenient; insist on the canonical form.
  return buf.toString('base64url') === text ? buf : undefined;
}

/** Parses `scrypt$N$r$p$salt$hash`; undefined for anything malformed or outside sane bounds. */
function parseHash(stored: unknown): ScryptParams | undefined {
  if (typeof stored !== 'string' || stored.length > 512) return undefined;
  const m = HASH_FORMAT.exec(stored);
  if (!m) return undefined;
  const N = Number(m[1]);
  const r = Number(m[2]);
  const p = Number(m[3]);
  // N a power of two; memory (128·N·r) at most 256 MiB; p small.
  if (N < 2 || N > 2 ** 20 || (N & (N - 1)) !== 0) return undefined;
  if (r < 1 || r > 32 || p < 1 || p > 16 || 128 * N * r > 256 * 1024 * 1024) return undefined;
  const salt = b64url(m[4]!);
  const key = b64url(m[5]!);
  if (!salt || salt.length < 16 || salt.length > 64) return undefined;
  // Exactly the length we write: a truncated hash must not verify against a shorter derivation.
  if (!key || key.length !== KEY_BYTES) return undefined;
  return { N, r, p, salt, key };
}

/** True when `stored` has the `scrypt$N$r$p$salt$hash` shape this module writes. */
export function isPasswordHash(stored: unknown): boolean {
  return parseHash(stored) !== undefined;
}

function derive(pw: string, salt: Buffer, keylen: number, N: number, r: number, p: number): Promise<Buffer> {
  const options: ScryptOptions = { N, r, p, maxmem: maxmemFor(N, r, p) };
  return new Promise((resolve, reject) => {
    scrypt(pw.normalize('NFC'), salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Refuses passwords shorter than 8 or longer than 1024 characters (ERR_USAGE). */
export function checkPasswordStrength(pw: string): void {
  const chars = typeof pw === 'string' ? [...pw].length : 0;
  if (chars < PASSWORD_MIN_CHARS) {
    throw new ProxyctlError(
      'ERR_USAGE',
      `password too short: ${chars} characters, at least ${PASSWORD_MIN_CHARS} needed`,
      { status: 400 },
    );
  }
  if (chars > PASSWORD_MAX_CHARS) {
    throw new ProxyctlError(
      'ERR_USAGE',
      `password too long: ${chars} characters, at most ${PASSWORD_MAX_CHARS} allowed`,
      { status: 400 },
    );
  }
}

/** `scrypt$32768$8$1$<salt b64url>$<hash b64url>`, a fresh 16-byte salt each time. */
export async function hashPassword(pw: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(pw, salt, KEY_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P);
  return `scrypt$${SCRYPT_N}$${SCRYPT_R}$${SCRYPT_P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** Constant-time check of `pw` against a stored hash; false (never a throw) for malformed input. */
export async function verifyPassword(pw: string, stored: string): Promise<boolean> {
  try {
    if (typeof pw !== 'string' || pw.length > PASSWORD_MAX_CHARS * 2) return false;
    const params = parseHash(stored);
    if (!params) return false;
    const key = await derive(pw, params.salt, params.key.length, params.N, params.r, params.p);
    return key.length === params.key.length && timingSafeEqual(key, params.key);
  } catch {
    return false;
  }
}

// ---- TOTP (RFC 6238: SHA1, 6 digits, 30 s) ----

const TOTP_PARAMS = { algorithm: 'SHA1', digits: 6, period: 30 } as const;
const BASE32 = /^[A-Z2-7]+=*$/;

function parseSecret(secret: string): Secret | undefined {
  if (typeof secret !== 'string') return undefined;
  const text = secret.toUpperCase();
  if (!BASE32.test(text)) return undefined;
  try {
    const s = Secret.fromBase32(text);
    return s.bytes.length >= 10 ? s : undefined;
  } catch {
    return undefined;
  }
}

/** A fresh base32 secret of 20 random bytes. */
export function newTotpSecret(): string {
  return new Secret({ size: 20 }).base32;
}

/** The otpauth:// URI an authenticator app scans. */
export function totpUri(secret: string, username: string, issuerLabel = 'proxyctl'): string {
  const s = parseSecret(secret);
  if (!s) throw new ProxyctlError('ERR_USAGE', 'TOTP secret is not valid base32 (at least 80 bits)', { status: 400 });
  return new TOTP({ issuer: issuerLabel, label: username, secret: s, ...TOTP_PARAMS }).toString();
}

/**
 * The 30-second time step (counted from the epoch) whose 6-digit code `code` is,
 * looking at the current, previous and next step; undefined when none matches.
 * The caller refuses a step not later than the last one it accepted (RFC 6238 §5.2).
 */
export function totpStep(secret: string, code: string, now: number = Date.now()): number | undefined {
  if (typeof code !== 'string' || !/^[0-9]{6}$/.test(code)) return undefined;
  const s = parseSecret(secret);
  if (!s || !Number.isFinite(now)) return undefined;
  try {
    const delta = TOTP.validate({ token: code, secret: s, ...TOTP_PARAMS, timestamp: now, window: 1 });
    return delta === null ? undefined : TOTP.counter({ period: TOTP_PARAMS.period, timestamp: now }) + delta;
  } catch {
    return undefined;
  }
}

/** True when `code` is the 6-digit code of the current, previous or next 30-second step (no replay check). */
export function verifyTotp(secret: string, code: string, now: number = Date.now()): boolean {
  return totpStep(secret, code, now) !== undefined;
}

// ---- users file ----

const USER_KEYS = ['username', 'passwordHash', 'email', 'name', 'groups', 'roles', 'totpSecret'] as const;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** Reads and validates a users file; ERR_CONFIG_READ / ERR_CONFIG_INVALID naming the key path. */
export function loadUsersFile(file: string): UserRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ProxyctlError('ERR_CONFIG_READ', `cannot read users file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseUsersFile(text, file);
}

/** Validates users-file text (`where` names it in errors). */
export function parseUsersFile(text: string, where: string, now = Date.now()): UserRecord[] {
  const raw = parseYaml(text, where);
  const v = new Validation();
  const users: UserRecord[] = [];
  const top = obj(v, '', raw, ['users']);
  const list = top?.['users'];
  if (top && !Array.isArray(list)) {
    v.fail('users', list, 'a list of users (each with username and passwordHash)');
  } else if (top) {
    const seen = new Map<string, number>();
    (list as unknown[]).forEach((entry, i) => {
      const at = join('users', i);
      const u = obj(v, at, entry, USER_KEYS);
      if (!u) return;
      const rawName = u['username'];
      const lower = typeof rawName === 'string' ? rawName.toLowerCase() : rawName;
      const username = str(
        v,
        join(at, 'username'),
        lower,
        undefined,
        USERNAME_PATTERN,
        'a user name of letters, digits, ".", "_", "@" and "-" (at most 64, case-insensitive)',
      );
      if (username !== undefined) {
        const first = seen.get(username);
        if (first !== undefined)
          v.fail(join(at, 'username'), rawName, `a user name not already used (users[${first}] has it)`);
        else seen.set(username, i);
      }
      const hashValue = u['passwordHash'];
      const passwordHash = str(v, join(at, 'passwordHash'), hashValue);
      if (passwordHash !== undefined && !isPasswordHash(passwordHash)) {
        v.fail(
          join(at, 'passwordHash'),
          '(hidden)',
          'an scrypt hash of the form scrypt$N$r$p$<salt>$<hash> (never a plain password)',
        );
      }
      const email = optStr(v, join(at, 'email'), u['email']);
      if (email !== undefined && !EMAIL.test(email)) v.fail(join(at, 'email'), email, 'an e-mail address');
      const name = optStr(v, join(at, 'name'), u['name']);
      const groups = strList(v, join(at, 'groups'), u['groups'], []);
      const roles = strList(v, join(at, 'roles'), u['roles'], []);
      let totpSecret: string | null = null;
      if (u['totpSecret'] !== undefined) {
        const s = typeof u['totpSecret'] === 'string' ? u['totpSecret'].toUpperCase() : undefined;
        if (s === undefined || !parseSecret(s))
          v.fail(
            join(at, 'totpSecret'),
            typeof u['totpSecret'] === 'string' ? '(hidden)' : u['totpSecret'],
            'a base32 TOTP secret of at least 80 bits',
          );
        else totpSecret = s;
      }
      if (username !== undefined && passwordHash !== undefined) {
        users.push({
          username,
          passwordHash,
          email: email ?? null,
          name: name ?? null,
          groups: [...new Set(groups)],
          roles: [...new Set(roles)],
          totpSecret,
          createdAt: now,
        });
      }
    });
  }
  if (v.issues.length > 0) throw configError(where, v.issues);
  return users;
}

// ---- the directory the provider signs users in from ----

export class UserDirectory {
  private readonly store: UserRepo;
  private readonly file: string | undefined;
  private fileUsers = new Map<string, UserRecord>();

  /** Loads `file` at once (a bad file throws); its users override store users of the same name. */
  constructor(store: UserRepo, file?: string) {
    this.store = store;
    this.file = file;
    this.reload();
  }

  /** Case-insensitive lookup: the users file first, then the store. */
  async find(username: string): Promise<UserRecord | undefined> {
    if (typeof username !== 'string' || username.length === 0 || username.length > 256) return undefined;
    const key = username.toLowerCase();
    return this.fileUsers.get(key) ?? (await this.store.get(key));
  }

  /** Re-reads the users file; on error the previous users stay and the error is rethrown. */
  reload(): void {
    if (this.file === undefined) return;
    const next = new Map<string, UserRecord>();
    for (const u of loadUsersFile(this.file)) next.set(u.username.toLowerCase(), u);
    this.fileUsers = next;
  }
}

const GENERATED_LENGTH = 20;
/** No look-alikes (0/O, 1/l/I): a generated password is read off a screen and typed. */
const GENERATED_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';

/** A password for a new user or a reset, shown once: 20 characters, about 117 bits. */
export function generatePassword(): string {
  let pw = '';
  for (let i = 0; i < GENERATED_LENGTH; i++) pw += GENERATED_ALPHABET[randomInt(GENERATED_ALPHABET.length)];
  return pw;
}
