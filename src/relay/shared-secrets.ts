// What replicas share through the store instead of the data directory: the relay CA
// (so every replica issues and trusts the same connector certificates) and the
// embedded provider's keys (so a token or cookie issued by one replica verifies on
// all). Each is one named secret, wrapped whole by the master key; the first replica
// to start writes it, the others read the value that won.
import { writeFileAtomic } from '../fs-atomic.js';
import { caFromPem, generateCa, type RelayCa } from '../crypto/ca.js';
import { openSecret, type SecretWrap } from '../crypto/secret-wrap.js';
import { ProxyctlError } from '../errors.js';
import { newIdpSecrets } from '../idp/secrets.js';
import type { Store } from '../store/index.js';
import path from 'node:path';

export const CA_SECRET = 'relay-ca';
export const IDP_SECRET = 'idp-keys';

/** What a shared secret's wrapping is bound to: it cannot be swapped in under another name. */
export const secretAad = (name: string): string => `secret:${name}`;

/** The secret `name`, created by `make` (and wrapped) by whichever replica gets there first. */
export async function sharedSecret(
  store: Pick<Store, 'secrets'>,
  name: string,
  wrap: SecretWrap | undefined,
  make: () => Promise<string>,
): Promise<string> {
  let stored = await store.secrets.get(name);
  if (stored === undefined) {
    const fresh = await make();
    stored = await store.secrets.putIfAbsent(name, wrap ? wrap.wrap(fresh, secretAad(name)) : fresh);
  }
  return openSecret(stored, secretAad(name), wrap);
}

interface CaPem {
  certPem: string;
  keyPem: string;
}

/** The relay CA kept in the store; its certificate is also written to `<dataDir>/ca.pem` for connectors. */
export async function loadSharedCa(store: Store, wrap: SecretWrap | undefined, dataDir: string): Promise<RelayCa> {
  const json = await sharedSecret(store, CA_SECRET, wrap, async () => JSON.stringify(await generateCa()));
  let pem: CaPem;
  try {
    pem = JSON.parse(json) as CaPem;
  } catch {
    throw new ProxyctlError('ERR_STATE_INVALID', `the store's ${CA_SECRET} secret is not readable`);
  }
  const ca = await caFromPem(pem.certPem, pem.keyPem, `store secret ${CA_SECRET}`);
  writeFileAtomic(path.join(dataDir, 'ca.pem'), ca.certPem, 0o644);
  return ca;
}

/** The embedded provider's keys as JSON, shared by replicas. */
export function loadSharedIdpSecrets(store: Store, wrap: SecretWrap | undefined): Promise<string> {
  return sharedSecret(store, IDP_SECRET, wrap, newIdpSecrets);
}
