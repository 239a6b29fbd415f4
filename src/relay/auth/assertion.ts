// The identity the backend may trust: a short-lived ES256 JWT in
// X-Proxyctl-Jwt-Assertion, verifiable with the keys the relay publishes at
// /.well-known/proxyctl/jwks.json on every app host. Besides who (sub, verified
// email, name, groups, sid) it says how and when the user authenticated (amr,
// acr, auth_time), so a backend can see that step-up / MFA happened.
import { SignJWT } from 'jose';
import type { AppConfig } from '../../config/relay-config.js';
import type { KeyRing } from '../../crypto/keyring.js';
import type { Identity } from './session.js';

export const ASSERTION_HEADER = 'x-proxyctl-jwt-assertion';
export const JWKS_PATH = '/.well-known/proxyctl/jwks.json';
const LIFETIME_S = 300;
/** Re-sign at most once a minute per session; cuts ES256 work off the hot path. */
const REUSE_MS = 60_000;
const CACHE_MAX = 10_000;

export class AssertionSigner {
  private readonly cache = new Map<string, { jwt: string; until: number; kid: string }>();

  constructor(private ring: () => KeyRing) {}

  async sign(app: AppConfig, who: Identity, sid: string, now = Date.now()): Promise<string> {
    const key = this.ring().currentAssertionKey();
    const cacheKey = `${app.name}\u0000${sid}\u0000${who.sub}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.until > now && hit.kid === key.kid) return hit.jwt;
    const iat = Math.floor(now / 1000);
    // Absent values (undefined) are left out of the JSON, not sent as null.
    const jwt = await new SignJWT({
      email: who.email,
      name: who.name,
      groups: who.groups,
      sid,
      amr: who.amr,
      acr: who.acr,
      auth_time: who.authTime === undefined ? undefined : Math.floor(who.authTime / 1000),
    })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
      .setIssuer(app.externalUrl.origin)
      .setAudience(app.externalUrl.href)
      .setSubject(who.sub)
      .setIssuedAt(iat)
      .setNotBefore(iat - 5)
      .setExpirationTime(iat + LIFETIME_S)
      .sign(key.privateKey);
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(cacheKey, { jwt, until: now + REUSE_MS, kid: key.kid });
    return jwt;
  }
}
