// `proxyctl relay keys rotate`: a new current session and/or assertion key. A
// running relay picks it up within half a second (it watches the store).
// `relay keys init-master` writes a new master key file; `relay keys rotate-master`
// seals every secret and key in the store with a new master key instead of the
// current one.
import { closeSync, fchmodSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { userInfo } from 'node:os';
import { keyAad, rotateKey } from '../crypto/keyring.js';
import {
  generateMasterKey,
  loadMasterKey,
  MASTER_KEY_ENV,
  parseMasterKey,
  sealedKeyId,
  type MasterKey,
} from '../crypto/master-key.js';
import { isSealed } from '../crypto/secret-wrap.js';
import { isProxyctlError, ProxyctlError, wrapError } from '../errors.js';
import { secretAad } from '../relay/shared-secrets.js';
import { configuredStoreExists, withStore } from './open-store.js';
import { loadConfigFromOptions, type ServeOptions } from './load-config.js';

type Env = Readonly<Record<string, string | undefined>>;

export async function rotateKeys(
  opts: ServeOptions & { purpose: string },
  out: (line: string) => void,
  env: Env = process.env,
): Promise<void> {
  const purposes = opts.purpose === 'all' ? (['session', 'assertion'] as const) : ([opts.purpose] as const);
  for (const p of purposes) {
    if (p !== 'session' && p !== 'assertion')
      throw new ProxyctlError('ERR_USAGE', `--purpose must be session, assertion or all (found ${p})`);
  }
  const config = loadConfigFromOptions(opts);
  // With a master key, a new key is stored sealed, as the relay stores the ones it makes.
  const masterKey = loadMasterKey({ file: config.secrets.masterKeyFile, env });
  const longestSession = Math.max(8 * 3_600_000, ...config.apps.map((a) => a.sessionLifetimeMs));
  await withStore(config, async (store) => {
    for (const p of purposes as readonly ('session' | 'assertion')[]) {
      const kid = await rotateKey(store.keys, p, 'cli', longestSession, masterKey);
      out(`new ${p} key ${kid}`);
    }
  });
}

/** A new master key in a new owner-only file; an existing file is never replaced. */
export function initMasterKey(opts: { out: string }, out: (line: string) => void): void {
  const file = path.resolve(opts.out);
  const text = generateMasterKey();
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST')
      throw new ProxyctlError(
        'ERR_USAGE',
        `${file} exists; a master key file is never overwritten (it may hold a key in use)`,
      );
    throw wrapError(err, 'ERR_STATE_INVALID', `cannot create ${file}: ${code ?? (err as Error).message}`);
  }
  try {
    fchmodSync(fd, 0o600); // open's mode is filtered by the umask, and may not be what a reader checks
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(file);
    throw wrapError(err, 'ERR_STATE_INVALID', `cannot write ${file}: ${(err as Error).message}`);
  }
  closeSync(fd);
  out(`wrote a new master key (id ${parseMasterKey(text).id}) to ${file}`);
  out(
    `give every relay replica the same key (secrets.masterKeyFile, or its contents in ${MASTER_KEY_ENV}), and keep a copy apart from the database: what is sealed with it cannot be opened without it`,
  );
}

export interface RotateMasterOptions extends ServeOptions {
  newKeyFile: string;
}

/** One stored value: what it is, where it goes, and its value sealed with the new key. */
interface Resealed {
  write: () => Promise<void>;
  /** Was stored in the clear. */
  firstTime: boolean;
  /** Already sealed with the new key (an earlier run stopped part way): left as it is. */
  done: boolean;
}

/**
 * Re-seals every secret and key material in the store with the key in
 * `--new-key-file`. Every value is opened first (with the current key, or the new
 * one after an interrupted run; a value in the clear is sealed now); a value neither
 * key opens stops the rotation before anything is written.
 */
export async function rotateMasterKey(
  opts: RotateMasterOptions,
  out: (line: string) => void,
  env: Env = process.env,
): Promise<void> {
  const config = loadConfigFromOptions(opts);
  const current = loadMasterKey({ file: config.secrets.masterKeyFile, env });
  const next = loadNewKey(opts.newKeyFile);
  if (current?.id === next.id)
    throw new ProxyctlError('ERR_USAGE', `the new master key is the current one (${next.id}); nothing to do`);
  if (!(await configuredStoreExists(config)))
    throw new ProxyctlError('ERR_STORE', `there is no store yet (${config.store ? 'PostgreSQL' : config.dataDir})`);
  const actor = `cli:${safeUser()}`;
  await withStore(config, async (store) => {
    const plan: Resealed[] = [];
    for (const s of await store.secrets.list()) {
      const r = reseal(s.value, secretAad(s.name), `the secret ${s.name}`, current, next);
      plan.push({ ...r, write: () => store.secrets.put(s.name, r.value, actor) });
    }
    for (const k of await store.keys.all()) {
      const r = reseal(k.material, keyAad(k.purpose, k.kid), `the ${k.purpose} key ${k.kid}`, current, next);
      plan.push({ ...r, write: () => store.keys.setMaterial(k.kid, r.value) });
    }
    for (const step of plan) if (!step.done) await step.write();
    const done = plan.filter((p) => p.done).length;
    const firstTime = plan.filter((p) => p.firstTime).length;
    out(
      `sealed ${plan.length - done} secrets and keys with the new master key ${next.id}` +
        ` (${firstTime} were stored in the clear${done ? `, ${done} already had the new key` : ''})`,
    );
  });
  out(
    `now point secrets.masterKeyFile or ${MASTER_KEY_ENV} of every relay replica at the new key (${next.id}) and restart them: ` +
      `a relay still holding ${current ? `the old key (${current.id})` : 'no key'} cannot read the store when it starts or reloads keys`,
  );
}

function loadNewKey(file: string): MasterKey {
  try {
    const key = loadMasterKey({ file: path.resolve(file), env: {} });
    if (key) return key;
  } catch (err) {
    if (!isProxyctlError(err)) throw err;
    throw new ProxyctlError('ERR_MASTER_KEY', `--new-key-file: ${err.message}`, { cause: err, details: err.details });
  }
  throw new ProxyctlError('ERR_USAGE', '--new-key-file is required');
}

function reseal(
  value: string,
  purpose: string,
  what: string,
  current: MasterKey | undefined,
  next: MasterKey,
): { value: string; firstTime: boolean; done: boolean } {
  if (!isSealed(value)) return { value: next.wrap(value, purpose), firstTime: true, done: false };
  const sealedWith = sealedKeyId(value);
  const opener = sealedWith === next.id ? next : sealedWith === current?.id ? current : undefined;
  if (!opener) {
    throw new ProxyctlError(
      'ERR_MASTER_KEY',
      `${what} is sealed with ${sealedWith ? `master key ${sealedWith}` : 'no master key this proxyctl reads'}, neither the current one (${current?.id ?? 'none set'}) nor the new one (${next.id}); nothing was changed`,
      { details: { sealedWith, current: current?.id, next: next.id } },
    );
  }
  let plaintext: string;
  try {
    plaintext = opener.unwrap(value, purpose);
  } catch (err) {
    const message = isProxyctlError(err) ? err.message : String(err);
    throw new ProxyctlError('ERR_MASTER_KEY', `${message}; nothing was changed`, { cause: err });
  }
  if (opener === next) return { value, firstTime: false, done: true };
  return { value: next.wrap(plaintext, purpose), firstTime: false, done: false };
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
