// What the relay needs of the embedded provider without running it: its keys' format
// and file, and the CLI's client id. Kept apart from provider.ts so that a relay with an
// external issuer never loads oidc-provider (about a second of its start).
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { exportJWK, generateKeyPair, type JWK } from 'jose';

export const CLI_CLIENT_ID = 'proxyctl-cli';

export interface IdpSecrets {
  jwks: { keys: JWK[] };
  cookieKeys: string[];
}

/** Fresh signing keys (ES256 and RS256) and a cookie key for the embedded provider, as JSON. */
export async function newIdpSecrets(): Promise<string> {
  const keys: JWK[] = [];
  for (const alg of ['ES256', 'RS256'] as const) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true });
    keys.push({
      ...(await exportJWK(privateKey)),
      alg,
      use: 'sig',
      kid: `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`,
    });
  }
  const secrets: IdpSecrets = { jwks: { keys }, cookieKeys: [randomBytes(32).toString('base64url')] };
  return JSON.stringify(secrets);
}

/** The file the provider's keys live in on one machine (replicas keep them in the store instead). */
export const idpKeysFile = (dataDir: string): string => path.join(dataDir, 'idp-keys.json');
