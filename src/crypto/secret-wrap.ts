// Secrets kept in the store (relay CA key, session and assertion keys, the embedded
// provider's keys) are wrapped by the master key when there is one (master-key.ts).
// A wrapped value names itself (prefix), so a store written before a master key was
// set is still read, and a relay without the key says so instead of failing later.
import { ProxyctlError } from '../errors.js';

export interface SecretWrap {
  /** A short fingerprint of the master key (never the key). */
  readonly id: string;
  wrap(plaintext: string, aad: string): string;
  unwrap(sealed: string, aad: string): string;
}

/** Every wrapped value starts with this. */
export const SEALED_PREFIX = 'pxk1.';

export const isSealed = (value: string): boolean => value.startsWith(SEALED_PREFIX);

/** The plaintext of a stored secret: unwrapped when it is wrapped, as stored otherwise. */
export function openSecret(value: string, aad: string, wrap: SecretWrap | undefined): string {
  if (!isSealed(value)) return value;
  if (!wrap) {
    throw new ProxyctlError(
      'ERR_MASTER_KEY',
      `the store holds secrets wrapped with master key ${value.split('.')[1] ?? '?'}; set secrets.masterKeyFile or PROXYCTL_MASTER_KEY to that key`,
    );
  }
  return wrap.unwrap(value, aad);
}
