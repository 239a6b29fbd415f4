// `proxyctl relay migrate --to-postgres URL`: one machine's data directory (SQLite
// store, CA files, the embedded provider's keys) copied into a PostgreSQL store that
// replicas share. What replicas read from the store is sealed with the master key on
// the way: the CA and provider keys become the secrets relay-ca and idp-keys, and
// key material stored in the clear is wrapped. The data directory is only read.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { userInfo } from 'node:os';
import { caFromPem, readCaFiles } from '../crypto/ca.js';
import { keyAad } from '../crypto/keyring.js';
import { loadMasterKey, MASTER_KEY_ENV, type MasterKey } from '../crypto/master-key.js';
import { isSealed } from '../crypto/secret-wrap.js';
import { ProxyctlError, wrapError } from '../errors.js';
import { idpKeysFile } from '../idp/provider.js';
import { CA_SECRET, IDP_SECRET, secretAad } from '../relay/shared-secrets.js';
import { openPostgresStore, sqliteStoreExists } from '../store/index.js';
import { openSqliteSnapshot } from '../store/sqlite/index.js';
import { countDump, type StoreDump } from '../store/types.js';
import { loadConfigFromOptions } from './load-config.js';

export interface MigrateOptions {
  config: string;
  toPostgres: string;
  schema?: string;
}

/** The schema relays open: `store.postgres` has no schema key. */
const DEFAULT_SCHEMA = 'proxyctl';

const LABELS: Record<keyof StoreDump, string> = {
  connectors: 'connectors',
  certificates: 'certificates',
  audit: 'audit entries',
  keys: 'keys',
  users: 'users',
  totpSteps: 'TOTP steps',
  secrets: 'secrets',
  signIns: 'sign-ins',
  riskDetections: 'risk detections',
  userRiskStates: 'user risk decisions',
  endedProviderSessions: 'ended provider sessions',
  sessions: 'sessions',
  idpArtifacts: 'provider artifacts',
  objects: 'managed objects',
};

export async function migrateToPostgres(
  opts: MigrateOptions,
  out: (line: string) => void,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<void> {
  const config = loadConfigFromOptions({ config: opts.config });
  const masterKey = loadMasterKey({ file: config.secrets.masterKeyFile, env });
  if (!masterKey) {
    throw new ProxyctlError(
      'ERR_MASTER_KEY',
      `relay migrate needs the master key the replicas will use (secrets.masterKeyFile in ${opts.config}, or ${MASTER_KEY_ENV}): PostgreSQL keeps the CA key and signing keys sealed with it; \`proxyctl relay keys init-master --out FILE\` makes one`,
    );
  }
  const dataDir = config.dataDir;
  const source = await readDataDir(dataDir);
  const prepared = seal(source, masterKey);

  const schema = opts.schema ?? DEFAULT_SCHEMA;
  const target = await openPostgresStore({ url: opts.toPostgres, schema });
  try {
    await target.transfer.import(prepared.dump, `cli:${safeUser()}:migrate`);
    // Read back what replicas will read first: the CA opens with the master key.
    const ca = await target.secrets.get(CA_SECRET);
    const copied = ca === undefined ? undefined : (JSON.parse(masterKey.unwrap(ca, secretAad(CA_SECRET))) as CaPem);
    if (copied?.certPem !== source.ca.certPem)
      throw new ProxyctlError('ERR_STORE', `the CA read back from PostgreSQL is not the one copied`);
  } finally {
    await target.close();
  }

  const shown = maskedUrl(opts.toPostgres);
  const counts = countDump(prepared.dump);
  out(`copied ${dataDir} into PostgreSQL ${shown} (schema ${schema}):`);
  out(
    `  ${(Object.keys(LABELS) as (keyof StoreDump)[]).map((k) => `${LABELS[k]} ${counts[k]}`).join(', ')} (and one store.import audit entry)`,
  );
  out(`  ${CA_SECRET}: the CA of ${path.join(dataDir, 'ca.pem')}, sealed with master key ${masterKey.id}`);
  out(
    source.idpKeys === undefined
      ? `  ${IDP_SECRET}: none (no ${idpKeysFile(dataDir)}: no embedded provider has run)`
      : `  ${IDP_SECRET}: ${idpKeysFile(dataDir)}, sealed with master key ${masterKey.id}`,
  );
  out(
    `  keys: ${prepared.sealedNow} sealed now, ${prepared.alreadySealed} already sealed with master key ${masterKey.id}`,
  );
  out(`${dataDir} is unchanged. For every relay replica, set in its configuration:`);
  out(`  store: { postgres: { url: ${JSON.stringify(shown)} } }`);
  if (new URL(opts.toPostgres).password)
    out(`  (with the password in place of ***, or the URL in a file named by urlFile)`);
  out(`and the same master key (id ${masterKey.id}) as secrets.masterKeyFile or ${MASTER_KEY_ENV}.`);
  out(`Start the relays on PostgreSQL, not the one on ${dataDir} again: what it wrote now would not reach them.`);
  if (schema !== DEFAULT_SCHEMA)
    out(`note: relays open the schema ${DEFAULT_SCHEMA}; this copy is in ${schema} (for a trial or a test).`);
}

interface CaPem {
  certPem: string;
  keyPem: string;
}

interface Source {
  dump: StoreDump;
  ca: CaPem;
  idpKeys: string | undefined;
}

/** Everything the move needs from the data directory, checked, and nothing written there. */
async function readDataDir(dataDir: string): Promise<Source> {
  if (!sqliteStoreExists(dataDir)) {
    throw new ProxyctlError(
      'ERR_STORE',
      `${dataDir} holds no store (proxyctl.db): nothing to migrate; is dataDir in the config the relay's?`,
    );
  }
  const ca = await readCaFiles(dataDir);
  if (!ca) {
    throw new ProxyctlError(
      'ERR_STATE_INVALID',
      `${dataDir} lacks the relay CA (ca.pem and ca-key.pem): connectors registered with it could not be trusted by the replicas`,
    );
  }
  // The same checks a relay starting on it makes: a CA certificate, and the key that matches it.
  await caFromPem(ca.certPem, ca.keyPem, path.join(dataDir, 'ca.pem'));
  const idpFile = idpKeysFile(dataDir);
  let idpKeys: string | undefined;
  if (existsSync(idpFile)) {
    try {
      idpKeys = await readFile(idpFile, 'utf8');
    } catch (err) {
      throw wrapError(err, 'ERR_STATE_INVALID', `cannot read ${idpFile}: ${(err as Error).message}`);
    }
    if (!looksLikeIdpKeys(idpKeys))
      throw new ProxyctlError('ERR_STATE_INVALID', `${idpFile} is not the embedded provider's keys (jwks, cookieKeys)`);
  }
  const store = openSqliteSnapshot(dataDir);
  try {
    return { dump: await store.transfer.export(), ca, idpKeys };
  } finally {
    await store.close();
  }
}

function looksLikeIdpKeys(text: string): boolean {
  try {
    const v = JSON.parse(text) as { jwks?: { keys?: unknown }; cookieKeys?: unknown };
    return Array.isArray(v.jwks?.keys) && Array.isArray(v.cookieKeys);
  } catch {
    return false;
  }
}

/**
 * The dump as replicas must find it: every key and secret sealed with `masterKey`
 * (one sealed already must open with it: a key of another master key is refused),
 * and the CA and provider keys of the data directory added as shared secrets, in
 * place of any the store held (a relay on SQLite uses the files).
 */
function seal(source: Source, masterKey: MasterKey): { dump: StoreDump; sealedNow: number; alreadySealed: number } {
  let sealedNow = 0;
  let alreadySealed = 0;
  const sealed = (value: string, purpose: string, what: string): string => {
    if (isSealed(value)) {
      try {
        masterKey.unwrap(value, purpose);
      } catch (err) {
        // Sealed with another master key, or altered: the replicas could not open it either.
        const e = err as ProxyctlError;
        throw new ProxyctlError(
          'ERR_MASTER_KEY',
          `${what} in the store does not open with master key ${masterKey.id}: ${e.message}`,
          {
            cause: err,
            details: e.details,
          },
        );
      }
      alreadySealed++;
      return value;
    }
    sealedNow++;
    return masterKey.wrap(value, purpose);
  };
  const keys = source.dump.keys.map((k) => ({
    ...k,
    material: sealed(k.material, keyAad(k.purpose, k.kid), `the ${k.purpose} key ${k.kid}`),
  }));
  const keyCounts = { sealedNow, alreadySealed };
  const fromFiles = new Map<string, string>([[CA_SECRET, JSON.stringify(source.ca)]]);
  if (source.idpKeys !== undefined) fromFiles.set(IDP_SECRET, source.idpKeys);
  const secrets = source.dump.secrets
    .filter((s) => !fromFiles.has(s.name))
    .map((s) => ({ name: s.name, value: sealed(s.value, secretAad(s.name), `the secret ${s.name}`) }));
  for (const [name, value] of fromFiles) secrets.push({ name, value: masterKey.wrap(value, secretAad(name)) });
  secrets.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { dump: { ...source.dump, keys, secrets }, ...keyCounts };
}

/** The URL as it may be printed: the password replaced by ***. */
function maskedUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.href;
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
