// `proxyctl relay users add|list|remove|set-password|enroll-totp`: administration of
// the embedded identity provider's users in the relay's data directory. Passwords
// and TOTP secrets are shown once, when generated, and never listed.
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { ProxyctlError } from '../errors.js';
import {
  USERNAME_PATTERN,
  generatePassword,
  checkPasswordStrength,
  hashPassword,
  loadUsersFile,
  newTotpSecret,
  totpUri,
} from '../idp/users.js';
import { type UserRecord, type UserRepo } from '../store/index.js';
import { withStore } from './open-store.js';
import type { RelayConfig } from '../config/relay-config.js';
import { loadConfigFromOptions } from './load-config.js';
import { printTable, safeCell } from './table.js';
import { remoteTarget, withAdmin, type AdminTargetOptions } from './admin-client.js';

/** The data directory (--config, --data-dir) or a relay's admin API (--relay). */
type ServeOptions = AdminTargetOptions;

type Out = (line: string) => void;

export interface PasswordSourceOptions {
  /** File whose content (one trailing newline trimmed) is the password. */
  passwordFile?: string;
  /** Read the password from standard input (one trailing newline trimmed). */
  passwordStdin?: boolean;
  /** Stream read for `passwordStdin` (default process.stdin; tests pass their own). */
  stdin?: NodeJS.ReadableStream;
}

export interface AddUserOptions extends ServeOptions, PasswordSourceOptions {
  email?: string;
  name?: string;
  /** Comma-separated group names. */
  groups?: string;
  /** Comma-separated role names. */
  roles?: string;
}

export interface ListUsersOptions extends ServeOptions {
  json?: boolean;
}

export type SetPasswordOptions = ServeOptions & PasswordSourceOptions;

export interface UserListing {
  username: string;
  email: string | null;
  name: string | null;
  groups: string[];
  roles: string[];
  totp: boolean;
  createdAt: string;
}

const EMAIL = /^[^\s@]+@[^\s@]+$/;

export async function addUser(username: string, opts: AddUserOptions, out: Out): Promise<void> {
  const name = normaliseUsername(username);
  if (opts.email !== undefined && !EMAIL.test(opts.email)) {
    throw new ProxyctlError('ERR_USAGE', `--email ${JSON.stringify(opts.email)} is not an e-mail address`, {
      status: 400,
    });
  }
  const groups = splitList(opts.groups, '--groups');
  const roles = splitList(opts.roles, '--roles');
  const supplied = await readPassword(opts);
  if (remoteTarget(opts) !== undefined) {
    const added = await withAdmin(opts, (api) =>
      api.addUser({
        username: name,
        ...(opts.email !== undefined ? { email: opts.email } : {}),
        ...(opts.name !== undefined && opts.name !== '' ? { name: opts.name } : {}),
        groups,
        roles,
        ...(supplied !== undefined ? { password: supplied } : {}),
      }),
    );
    out(`added user ${safeCell(added.user.username)}`);
    if (added.password !== null) out(`generated password (shown only now): ${safeCell(added.password, 1000)}`);
    return;
  }
  await withUsers(opts, async (users, config) => {
    if (await users.get(name))
      throw new ProxyctlError('ERR_USAGE', `user ${name} already exists; use set-password to change the password`, {
        status: 409,
      });
    const password = supplied ?? generatePassword();
    const record: UserRecord = {
      username: name,
      passwordHash: await hashPassword(password),
      email: opts.email ?? null,
      name: opts.name === undefined || opts.name === '' ? null : opts.name,
      groups,
      roles,
      totpSecret: null,
      createdAt: Date.now(),
    };
    // Re-check after the (slow) hash: another admin may have added the same name meanwhile.
    if (await users.get(name))
      throw new ProxyctlError('ERR_USAGE', `user ${name} already exists; use set-password to change the password`, {
        status: 409,
      });
    await users.put(record, actor(), 'user.add');
    out(`added user ${name}`);
    if (supplied === undefined) out(`generated password (shown only now): ${password}`);
    noteFileOverride(config, name, out);
  });
}

export async function listUsers(opts: ListUsersOptions, out: Out): Promise<void> {
  const listing = async (): Promise<UserListing[]> => {
    if (remoteTarget(opts) !== undefined) return withAdmin(opts, (api) => api.listUsers());
    return withUsers(opts, async (users) =>
      (await users.list()).map((u) => ({
        username: u.username,
        email: u.email,
        name: u.name,
        groups: u.groups,
        roles: u.roles,
        totp: u.totpSecret !== null,
        createdAt: new Date(u.createdAt).toISOString(),
      })),
    );
  };
  const rows = await listing();
  if (opts.json) {
    out(JSON.stringify(rows, null, 2));
    return;
  }
  const header = ['USERNAME', 'EMAIL', 'NAME', 'GROUPS', 'ROLES', 'TOTP'];
  const table = rows.map((r) => [
    r.username,
    r.email ?? '-',
    r.name ?? '-',
    r.groups.join(',') || '-',
    r.roles.join(',') || '-',
    r.totp ? 'yes' : 'no',
  ]);
  printTable(header, table, out);
}

export async function removeUser(username: string, opts: ServeOptions, out: Out): Promise<void> {
  const name = username.toLowerCase();
  if (remoteTarget(opts) !== undefined) {
    await withAdmin(opts, (api) => api.removeUser(name));
    out(`removed user ${safeCell(name)}`);
    return;
  }
  await withUsers(opts, async (users) => {
    if (!(await users.remove(name, actor()))) throw unknownUser(name);
    out(`removed user ${name}`);
  });
}

export async function setPassword(username: string, opts: SetPasswordOptions, out: Out): Promise<void> {
  const name = username.toLowerCase();
  const supplied = await readPassword(opts);
  if (remoteTarget(opts) !== undefined) {
    const set = await withAdmin(opts, (api) =>
      api.setPassword(name, supplied !== undefined ? { password: supplied } : {}),
    );
    out(`password of ${safeCell(name)} changed`);
    if (set.password !== null) out(`generated password (shown only now): ${safeCell(set.password, 1000)}`);
    return;
  }
  await withUsers(opts, async (users, config) => {
    if (!(await users.get(name))) throw unknownUser(name);
    const password = supplied ?? generatePassword();
    const passwordHash = await hashPassword(password);
    const current = await users.get(name); // re-read after the slow hash
    if (!current) throw unknownUser(name);
    await users.put({ ...current, passwordHash }, actor(), 'user.update');
    out(`password of ${name} changed`);
    if (supplied === undefined) out(`generated password (shown only now): ${password}`);
    noteFileOverride(config, name, out);
  });
}

export async function enrollTotp(username: string, opts: ServeOptions, out: Out): Promise<void> {
  const name = username.toLowerCase();
  if (remoteTarget(opts) !== undefined) {
    const { uri } = await withAdmin(opts, (api) => api.enrollTotp(name));
    out(`TOTP enrolled for ${safeCell(name)} (a previous secret no longer works); shown only now:`);
    out(`otpauth URI: ${safeCell(uri, 2000)}`);
    const secret = secretOf(uri);
    if (secret) out(`secret (base32): ${secret}`);
    return;
  }
  await withUsers(opts, async (users, config) => {
    const current = await users.get(name);
    if (!current) throw unknownUser(name);
    const secret = newTotpSecret();
    await users.put({ ...current, totpSecret: secret }, actor(), 'user.update');
    out(
      `TOTP enrolled for ${name}${current.totpSecret ? ' (the previous secret no longer works)' : ''}; shown only now:`,
    );
    out(`otpauth URI: ${totpUri(secret, name)}`);
    out(`secret (base32): ${secret}`);
    noteFileOverride(config, name, out);
  });
}

// ---- helpers ----

/** The base32 secret of an otpauth URI, when it is one. */
function secretOf(uri: string): string | undefined {
  try {
    const secret = new URL(uri).searchParams.get('secret');
    return secret && /^[A-Z2-7]+=*$/i.test(secret) ? secret : undefined;
  } catch {
    return undefined;
  }
}

async function withUsers<T>(
  opts: ServeOptions,
  fn: (users: UserRepo, config: RelayConfig) => T | Promise<T>,
): Promise<T> {
  const config = loadConfigFromOptions({ config: opts.config, dataDir: opts.dataDir });
  return withStore(config, (store) => fn(store.users, config));
}

function normaliseUsername(username: string): string {
  const name = username.toLowerCase();
  if (!USERNAME_PATTERN.test(name)) {
    throw new ProxyctlError(
      'ERR_USAGE',
      `user name ${JSON.stringify(username)} is not valid: expected a letter or digit, then letters, digits, ".", "_", "@" or "-" (at most 64)`,
      { status: 400 },
    );
  }
  return name;
}

function splitList(text: string | undefined, option: string): string[] {
  if (text === undefined) return [];
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const bad = items.find((s) => /\s/.test(s) || s.length > 128);
  if (bad !== undefined)
    throw new ProxyctlError(
      'ERR_USAGE',
      `${option}: ${JSON.stringify(bad)} is not a valid name (no spaces, at most 128 characters)`,
      { status: 400 },
    );
  return [...new Set(items)];
}

/** The password from --password-file or --password-stdin, checked; undefined when neither is given. */
async function readPassword(opts: PasswordSourceOptions): Promise<string | undefined> {
  if (opts.passwordFile !== undefined && opts.passwordStdin) {
    throw new ProxyctlError('ERR_USAGE', 'give --password-file or --password-stdin, not both', { status: 400 });
  }
  let text: string;
  if (opts.passwordFile !== undefined) {
    try {
      text = readFileSync(opts.passwordFile, 'utf8');
    } catch (err) {
      throw new ProxyctlError(
        'ERR_USAGE',
        `cannot read password file ${opts.passwordFile}: ${(err as Error).message}`,
        { status: 400, cause: err },
      );
    }
  } else if (opts.passwordStdin) {
    text = await readStream(opts.stdin ?? process.stdin);
  } else {
    return undefined;
  }
  const password = text.replace(/\r?\n$/, '');
  checkPasswordStrength(password);
  return password;
}

async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    size += buf.length;
    if (size > 64 * 1024)
      throw new ProxyctlError('ERR_USAGE', 'password on standard input is too long', { status: 400 });
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Warns when the configured users file defines the same user: its entry wins at sign-in. */
function noteFileOverride(config: RelayConfig, name: string, out: Out): void {
  const file = config.identity.embedded.usersFile;
  if (!file) return;
  try {
    if (loadUsersFile(file).some((u) => u.username === name)) {
      out(`note: ${file} also defines ${name}; that entry takes precedence at sign-in`);
    }
  } catch {
    // An unreadable or invalid users file is reported by the relay itself.
  }
}

function unknownUser(name: string): ProxyctlError {
  return new ProxyctlError('ERR_USAGE', `no user named ${name}`, { status: 404 });
}

function actor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli:unknown';
  }
}
