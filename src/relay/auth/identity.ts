// Who a verified token says the user is: identity from verified claims only.
import type { IdentityConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';
import type { Identity } from './session.js';

/** Token claims need not be well-formed: identity values longer than this are dropped, not cut (a cut value could equal another). */
const MAX_VALUE = 256;
const MAX_GROUPS = 200;
const MAX_AMR = 20;
/** One @, no spaces, controls or characters that would confuse a header or a list; the rest is the provider's business. */
// eslint-disable-next-line no-control-regex
const EMAIL = /^[^\s@,;<>"\\\u0000-\u001f\u007f]{1,64}@[^\s@,;<>"\\\u0000-\u001f\u007f]{1,253}$/u;

/**
 * Who the token says the user is. `sub` is the stable identifier. `email` is taken only when
 * the provider verified it (`email_verified` true, or the string "true"; or absent with
 * identity.emailVerifiedWhenAbsent): assignment, policies and the backend trust it, and an
 * unverified address is whatever the user typed. There is no fallback to preferred_username or
 * upn, which are user- or admin-chosen names, not proven addresses; `name` may fall back to
 * preferred_username, for display only. A string groups claim is one group (providers that
 * send one group send it as a string; "Domain staff" is a name, not two); non-strings are dropped.
 */
export function identityFromClaims(
  c: Record<string, unknown>,
  cfg: Pick<IdentityConfig, 'groupsClaim' | 'emailVerifiedWhenAbsent'> &
    Partial<Pick<IdentityConfig, 'adminClaim' | 'adminValues' | 'readerValues'>>,
  now: number,
): Identity {
  const str = (v: unknown): string | undefined =>
    typeof v === 'string' && v !== '' && v.length <= MAX_VALUE ? v : undefined;
  const list = (v: unknown, max: number): string[] => {
    const out = new Set<string>();
    for (const x of typeof v === 'string' ? [v] : Array.isArray(v) ? v : []) {
      const value = str(x);
      if (value !== undefined) out.add(value);
      if (out.size === max) break;
    }
    return [...out];
  };
  const sub = str(c['sub']);
  if (!sub) throw new ProxyctlError('ERR_SIGNIN_TOKEN', 'the token names no subject', { status: 401 });
  const verified = c['email_verified'];
  const trusted = verified === true || verified === 'true' || (verified === undefined && cfg.emailVerifiedWhenAbsent);
  const email = trusted ? str(c['email']) : undefined;
  const authTime = c['auth_time'];
  // Only the administration roles are kept (the console's), so other claim values cost no cookie bytes.
  const known = new Set([...(cfg.adminValues ?? []), ...(cfg.readerValues ?? [])]);
  const roles = cfg.adminClaim === undefined ? [] : list(c[cfg.adminClaim], 50).filter((r) => known.has(r));
  return {
    sub,
    email: email !== undefined && EMAIL.test(email) ? email : undefined,
    name: str(c['name']) ?? str(c['preferred_username']),
    groups: list(c[cfg.groupsClaim], MAX_GROUPS),
    amr: list(c['amr'], MAX_AMR),
    acr: str(c['acr']),
    // A provider clock ahead of ours must not date an authentication in the future.
    authTime:
      typeof authTime === 'number' && Number.isFinite(authTime) && authTime > 0
        ? Math.min(Math.floor(authTime) * 1000, now)
        : undefined,
    ...(roles.length ? { roles } : {}),
  };
}
