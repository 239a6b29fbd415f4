// Keys only the relay holds, kept in its store: symmetric keys that encrypt
// session cookies, and ES256 keys that sign identity assertions for backends.
// Each has a key id; rotation adds a new current key and keeps retired ones
// readable (cookies) or published (assertions) until what they protect expires.
import { randomBytes, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { ProxyctlError } from '../errors.js';
import type { KeyRepo } from '../store/index.js';
import { openSecret, type SecretWrap } from './secret-wrap.js';

export interface SessionKey {
  kid: string;
  secret: Uint8Array;
}
export interface AssertionKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export class KeyRing {
  private constructor(
    readonly session: readonly SessionKey[],
    readonly assertion: readonly AssertionKey[],
  ) {}

  /**
   * Loads keys from the store, creating the first of each kind when missing. With a
   * master key, material is stored wrapped by it (keys written before one was set are
   * read as they are; `relay keys rotate-master` wraps them).
   */
  static async load(keys: KeyRepo, wrap?: SecretWrap): Promise<KeyRing> {
    let sessionRows = await keys.list('session');
    if (sessionRows.length === 0) {
      await rotateKey(keys, 'session', 'relay:bootstrap', undefined, wrap);
      sessionRows = await keys.list('session');
    }
    let assertionRows = await keys.list('assertion');
    if (assertionRows.length === 0) {
      await rotateKey(keys, 'assertion', 'relay:bootstrap', undefined, wrap);
      assertionRows = await keys.list('assertion');
    }
    const session = sessionRows.map((k) => ({
      kid: k.kid,
      secret: Buffer.from(openSecret(k.material, keyAad(k.purpose, k.kid), wrap), 'base64url'),
    }));
    const assertion: AssertionKey[] = [];
    for (const k of assertionRows) {
      const jwk = JSON.parse(openSecret(k.material, keyAad(k.purpose, k.kid), wrap)) as JWK;
      const privateKey = (await importJWK(jwk, 'ES256')) as CryptoKey;
      const { d: _d, ...publicJwk } = jwk;
      assertion.push({ kid: k.kid, privateKey, publicJwk: { ...publicJwk, kid: k.kid, alg: 'ES256', use: 'sig' } });
    }
    return new KeyRing(session, assertion);
  }

  /** The newest key encrypts; any listed key decrypts. */
  currentSessionKey(): SessionKey {
    const k = this.session[0];
    if (!k) throw new ProxyctlError('ERR_INTERNAL', 'no session key');
    return k;
  }

  sessionKey(kid: string): SessionKey | undefined {
    return this.session.find((k) => k.kid === kid);
  }

  currentAssertionKey(): AssertionKey {
    const k = this.assertion[0];
    if (!k) throw new ProxyctlError('ERR_INTERNAL', 'no assertion key');
    return k;
  }

  jwks(): { keys: JWK[] } {
    return { keys: this.assertion.map((k) => k.publicJwk) };
  }
}

/**
 * Adds a fresh current key and drops retired keys nothing can still depend on:
 * session keys once the longest session has expired, assertion keys after 10 min
 * (assertions live 5 min).
 */
export async function rotateKey(
  keys: KeyRepo,
  purpose: 'session' | 'assertion',
  actor: string,
  keepRetiredMs = 30 * 86_400_000,
  wrap?: SecretWrap,
): Promise<string> {
  const kid = randomUUID().slice(0, 8) + Date.now().toString(36);
  let material: string;
  if (purpose === 'session') {
    material = randomBytes(32).toString('base64url');
  } else {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    material = JSON.stringify(await exportJWK(privateKey));
  }
  const now = Date.now();
  if (wrap) material = wrap.wrap(material, keyAad(purpose, kid));
  await keys.add({ kid, purpose, material }, actor, now);
  await keys.dropRetiredBefore(purpose, now - (purpose === 'assertion' ? 10 * 60_000 : keepRetiredMs));
  return kid;
}

/** What a stored key is bound to: its wrapped material cannot be replayed as another key. */
export const keyAad = (purpose: string, kid: string): string => `key:${purpose}:${kid}`;
