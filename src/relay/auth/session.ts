// The session cookie: a JWE (dir + A256GCM) under a key only the relay holds,
// carrying who the user is (and when and how they authenticated), the session
// id, the app it was issued for and its expiry. A cookie that fails to decrypt,
// names another app or has expired is simply no session. Sign-out revokes the
// session id in the store.
import { EncryptJWT, decodeProtectedHeader, jwtDecrypt } from 'jose';
import type { AppConfig } from '../../config/relay-config.js';
import type { KeyRing } from '../../crypto/keyring.js';
import type { RiskLevelName } from '../../store/index.js';

export interface Identity {
  sub: string;
  /** Only an address the provider verified (see identityFromClaims); display and matching trust it. */
  email: string | undefined;
  name: string | undefined;
  groups: string[];
  /** Authentication methods (OIDC amr), e.g. ["pwd", "mfa"]. */
  amr: string[];
  acr: string | undefined;
  /** When the user authenticated at the provider (ms), if the token says. */
  authTime: number | undefined;
  /** The administration roles the token gave (adminClaim values among adminValues and readerValues). */
  roles?: string[];
}

export interface Session extends Identity {
  sid: string;
  app: string;
  iat: number;
  exp: number;
  /** The provider's auth_time, else the sign-in time: always known for a session. */
  authTime: number;
  /** Client address at sign-in (Conditional Access re-checks when it changes). */
  ip: string | undefined;
  /** The provider's session id (ID token `sid`), when it sends one: sign-out ends its bearer tokens too. */
  providerSid: string | undefined;
  /** The sign-in's risk: Conditional Access evaluates the session's requests with it. */
  risk?: RiskLevelName;
}

const RISKS: readonly string[] = ['none', 'low', 'medium', 'high'];

export const cookieName = (app: AppConfig): string => `__Host-proxyctl-${app.name}`;
export const stateCookieName = (app: AppConfig): string => `__Host-proxyctl-${app.name}-signin`;

/** Session and sign-in cookies are the relay's own and never reach a backend. */
export function isRelayCookie(name: string): boolean {
  return name.toLowerCase().startsWith('__host-proxyctl-');
}

export async function sealSession(ring: KeyRing, s: Session): Promise<string> {
  const key = ring.currentSessionKey();
  return new EncryptJWT({
    sid: s.sid,
    email: s.email,
    name: s.name,
    groups: s.groups,
    amr: s.amr,
    acr: s.acr,
    ip: s.ip,
    auth_time: Math.floor(s.authTime / 1000),
    psid: s.providerSid,
    risk: s.risk ?? 'none',
    ...(s.roles?.length ? { roles: s.roles } : {}),
  })
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: key.kid })
    .setSubject(s.sub)
    .setAudience(`app:${s.app}`)
    .setIssuedAt(Math.floor(s.iat / 1000))
    .setExpirationTime(Math.floor(s.exp / 1000))
    .encrypt(key.secret);
}

export type OpenResult =
  { session: Session } | { reason: 'malformed' | 'unknown-key' | 'tampered' | 'expired' | 'other-app' };

export async function openSession(ring: KeyRing, value: string, app: AppConfig, now = Date.now()): Promise<OpenResult> {
  if (value.length > 8192 || value.split('.').length !== 5) return { reason: 'malformed' };
  let kid: unknown;
  try {
    ({ kid } = decodeProtectedHeader(value));
  } catch {
    return { reason: 'malformed' };
  }
  const key = typeof kid === 'string' ? ring.sessionKey(kid) : undefined;
  if (!key) return { reason: 'unknown-key' };
  let payload;
  try {
    ({ payload } = await jwtDecrypt(value, key.secret, {
      keyManagementAlgorithms: ['dir'],
      contentEncryptionAlgorithms: ['A256GCM'],
      currentDate: new Date(now),
      clockTolerance: 0,
    }));
  } catch (err) {
    const code = (err as { code?: string }).code;
    return { reason: code === 'ERR_JWT_EXPIRED' ? 'expired' : 'tampered' };
  }
  if (payload.aud !== `app:${app.name}`) return { reason: 'other-app' };
  const strs = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  // Cookies sealed before auth_time was carried may hold an unverified e-mail: they count as no session.
  if (
    typeof payload.sub !== 'string' ||
    typeof payload['sid'] !== 'string' ||
    typeof payload.exp !== 'number' ||
    typeof payload.iat !== 'number' ||
    typeof payload['auth_time'] !== 'number'
  ) {
    return { reason: 'malformed' };
  }
  return {
    session: {
      sub: payload.sub,
      sid: payload['sid'],
      app: app.name,
      email: str(payload['email']),
      name: str(payload['name']),
      groups: strs(payload['groups']),
      amr: strs(payload['amr']),
      acr: str(payload['acr']),
      ip: str(payload['ip']),
      iat: payload.iat * 1000,
      exp: payload.exp * 1000,
      authTime: payload['auth_time'] * 1000,
      providerSid: str(payload['psid']),
      // A value other than a level (a cookie sealed before risk was kept) is no risk.
      risk: RISKS.includes(str(payload['risk']) ?? '') ? (payload['risk'] as RiskLevelName) : 'none',
      roles: strs(payload['roles']),
    },
  };
}

/** Set-Cookie for the session, with the app's flags. Always Secure, Path=/ (the __Host- prefix requires both). */
export function sessionCookie(
  app: AppConfig,
  value: string,
  expiresAt: number,
  now = Date.now(),
  persistent = app.cookie.persistent,
): string {
  const parts = [`${cookieName(app)}=${value}`, 'Path=/', 'Secure', `SameSite=${app.cookie.sameSite}`];
  if (app.cookie.httpOnly) parts.push('HttpOnly');
  if (persistent) parts.push(`Max-Age=${Math.max(0, Math.floor((expiresAt - now) / 1000))}`);
  return parts.join('; ');
}

export function clearCookie(name: string): string {
  return `${name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`;
}

/** Cookies as sent by the browser; the first of duplicate names wins, as browsers order by specificity. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const name = part.slice(0, i).trim();
    if (!out.has(name)) out.set(name, part.slice(i + 1).trim());
  }
  return out;
}

/** The Cookie header the backend sees: the relay's own cookies removed. */
export function backendCookieHeader(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const kept = header
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p && !isRelayCookie(p.slice(0, Math.max(0, p.indexOf('='))).trim()));
  return kept.length ? kept.join('; ') : undefined;
}
