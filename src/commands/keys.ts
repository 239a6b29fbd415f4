// `proxyctl keys list|rotate` (and `relay keys rotate`): the relay's session and
// assertion keys, never their material. Locally, rotation seals the new key with the
// master key as the relay does (relay-keys.ts); remotely the relay does it.
import type { KeyView } from '../admin/api-types.js';
import { remoteTarget, withAdmin } from './admin-client.js';
import { printJson, usage, type ObjectOptions } from './objects.js';
import { rotateKeys as rotateLocal } from './relay-keys.js';
import { printTable } from './table.js';

type Out = (line: string) => void;

export type KeyOptions = Omit<ObjectOptions, 'expectedVersion'>;

export async function listKeys(opts: KeyOptions, out: Out): Promise<void> {
  const keys = await withAdmin(opts, (api) => api.listKeys());
  if (opts.json) return printJson(keys, out);
  printTable(
    ['KID', 'PURPOSE', 'CURRENT', 'CREATED', 'RETIRED'],
    keys.map((k) => [k.kid, k.purpose, k.current ? 'yes' : 'no', k.createdAt, k.retiredAt ?? '-']),
    out,
  );
}

export async function rotateKeys(opts: Omit<KeyOptions, 'json'> & { purpose: string }, out: Out): Promise<void> {
  const purpose = opts.purpose;
  if (purpose !== 'session' && purpose !== 'assertion' && purpose !== 'all')
    throw usage(`--purpose must be session, assertion or all (found ${purpose})`);
  // Locally the new key is sealed with the master key, which AdminOperations is not given.
  if (remoteTarget(opts) === undefined)
    return rotateLocal({ config: opts.config, dataDir: opts.dataDir, purpose }, out);
  const keys: KeyView[] = await withAdmin(opts, (api) => api.rotateKeys({ purpose }));
  // The answer lists every key: the new ones are the current keys of the purposes rotated.
  for (const k of keys.filter((k) => k.current && (purpose === 'all' || k.purpose === purpose)))
    out(`new ${k.purpose} key ${k.kid}`);
}
