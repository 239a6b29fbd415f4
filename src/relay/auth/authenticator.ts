// Preauthentication for `preauth: oidc` apps and the relay-owned sign-in
// endpoints on every app host. A request either proves who it is (session
// cookie or access token for the app) or gets a sign-in redirect (browsers) /
// 401 (scripts); nothing unauthenticated goes further. Identity comes from
// verified claims only (identityFromClaims).
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomNonce, randomPKCECodeVerifier, randomState } from 'openid-client';
import type { JWTPayload } from 'jose';
import type { AppConfig, IdentityConfig } from '../../config/relay-config.js';
import type { KeyRing } from '../../crypto/keyring.js';
import { ProxyctlError, isProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Store } from '../../store/index.js';
import { JWKS_PATH } from './assertion.js';
import type { OidcClients } from './oidc-client.js';
import { safeReturnTo } from './redirect.js';
import {
  clearCookie, cookieName, openSession, parseCookies, sealSession, sessionCookie, stateCookieName, type Identity, type Session,
} from './session.js';
import { markProviderSignedOut, providerSignedOut, requireSameOrigin, signedOutPage, signOutPage } from './sign-out.js';
import { wantsJson } from '../edge/pages.js';
import { clientAddress } from '../edge/client-address.js';
import type { TLSSocket } from 'node:tls';
import { evaluate } from '../../policy/evaluate.js';
import { isAssigned } from '../../policy/assignment.js';
import { countryOf, platformOf } from '../../policy/context.js';
import type { AccessConfig, Decision, SignInContext } from '../../policy/model.js';

/** The JWKS path as an app path (no leading slash), as handleReserved sees it. */
const JWKS_REST = JWKS_PATH.slice(1);

const STATE_TTL_MS = 10 * 60_000;
/** Expired sessions and ended provider sessions are deleted at most this often, on a sign-in start. */
const SESSION_PURGE_EVERY_MS = 10 * 60_000;

export interface Authenticated {
  identity: Identity;
  sid: string;
  via: 'cookie' | 'bearer';
  session?: Session;
}

export interface AuthDeps {
  store: Store;
  ring: () => KeyRing;
  oidc: OidcClients;
  verifyBearer: (token: string, audience: string) => Promise<JWTPayload>;
  identity: () => IdentityConfig;
  /** Conditional Access policies in force (swapped on reload). */
  access: () => AccessConfig;
  log: Logger;
  now?: () => number;
}

/** Re-evaluations after an address change are cached this long per (session, address). */
const RECHECK_CACHE_MS = 60_000;

export class Authenticator {
  private readonly rechecks = new Map<string, { at: number; decision: Decision }>();
  private readonly bearerLogged = new Map<string, number>();
  private lastSessionPurge = 0;
  private readonly bearerVerified = new Map<string, { payload: JWTPayload; until: number }>();

  constructor(private readonly deps: AuthDeps) {}

  /** The embedded provider is only known once the public listener is up. */
  setOidc(oidc: OidcClients): void {
    this.deps.oidc = oidc;
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /**
   * Relay-owned paths on an app host (any preauth; `rest` is the app path without its
   * leading slash). Any other path is refused at once, without a promise: that is
   * nearly every request. Otherwise resolves to true when answered.
   */
  handleReserved(req: IncomingMessage, res: ServerResponse, app: AppConfig, origin: string, rest: string, requestId: string): false | Promise<boolean> {
    if (!rest.startsWith('.proxyctl/') && !rest.startsWith(JWKS_REST)) return false;
    return this.answerReserved(req, res, app, origin, rest, requestId);
  }

  private async answerReserved(req: IncomingMessage, res: ServerResponse, app: AppConfig, origin: string, rest: string, requestId: string): Promise<boolean> {
    const path = rest.split('?')[0];
    if (`/${path}` === JWKS_PATH) {
      const body = JSON.stringify(this.deps.ring().jwks());
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'public, max-age=300' });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    }
    if (!path?.startsWith('.proxyctl/')) return false;
    switch (path) {
      case '.proxyctl/callback':
        try {
          await this.callback(req, res, app, origin, requestId);
        } catch (err) {
          // Policy and assignment refusals are logged with the identity; the rest here.
          if (isProxyctlError(err) && err.code !== 'ERR_POLICY_DENIED' && err.code !== 'ERR_NOT_ASSIGNED') this.recordFailure(req, app, requestId, err.code);
          throw err;
        }
        return true;
      case '.proxyctl/logout':
        await this.logout(req, res, app, origin);
        return true;
      case '.proxyctl/signed-out':
        signedOutPage(req, res, `${origin}${app.pathPrefix}`);
        return true;
      case '.proxyctl/me':
        await this.me(req, res, app);
        return true;
      default:
        throw new ProxyctlError('ERR_NOT_FOUND', 'No such relay endpoint.', { status: 404 });
    }
  }

  /** Who is asking, or undefined when a redirect / 401 has been sent instead. */
  async authenticate(req: IncomingMessage, res: ServerResponse | undefined, app: AppConfig, origin: string, requestId: string): Promise<Authenticated | undefined> {
    const auth = req.headers.authorization;
    if (auth && /^bearer\s/i.test(auth)) return this.bearer(auth.replace(/^bearer\s+/i, '').trim(), app, req, requestId);
    const found = await this.sessionFrom(req, app);
    if (found) {
      const ip = clientAddress(req);
      if (found.ip !== undefined && ip !== found.ip) {
        // The session moved: location conditions are evaluated again for the new address.
        const decision = this.recheck(req, app, found, ip);
        if (decision.result === 'deny') throw policyDenied(app, decision);
        if (decision.result === 'stepUp') {
          if (!res || wantsJson(req)) throw new ProxyctlError('ERR_SIGNIN_REQUIRED', `Sign in to ${app.name} again: ${decision.hint ?? ''}`, { status: 401, details: { app: app.name } });
          await this.beginSignIn(res, app, origin, { returnTo: req.url, stepUp: stepUpOf(decision) });
          return undefined;
        }
      }
      return { identity: found, sid: found.sid, via: 'cookie', session: found };
    }
    if (!res || wantsJson(req)) {
      throw new ProxyctlError('ERR_SIGNIN_REQUIRED', `Sign in to ${app.name} first (no valid session).`, { status: 401, details: { app: app.name } });
    }
    await this.beginSignIn(res, app, origin, { returnTo: req.url });
    return undefined;
  }

  async sessionFrom(req: IncomingMessage, app: AppConfig): Promise<Session | undefined> {
    const value = parseCookies(req.headers.cookie).get(cookieName(app));
    if (!value) return undefined;
    const result = await openSession(this.deps.ring(), value, app, this.now());
    if (!('session' in result)) {
      this.deps.log.info({ app: app.name, reason: result.reason }, 'session cookie refused');
      return undefined;
    }
    if (!this.deps.store.sessions.isActive(result.session.sid, this.now())) {
      this.deps.log.info({ app: app.name, sid: result.session.sid }, 'session revoked or unknown');
      return undefined;
    }
    return result.session;
  }

  private recheck(req: IncomingMessage, app: AppConfig, s: Session, ip: string): Decision {
    const key = `${s.sid}|${ip}`;
    const now = this.now();
    const hit = this.rechecks.get(key);
    if (hit && now - hit.at < RECHECK_CACHE_MS) return hit.decision;
    const decision = evaluate(this.deps.access(), contextOf(req, app, s, now));
    if (this.rechecks.size > 10_000) this.rechecks.clear();
    this.rechecks.set(key, { at: now, decision });
    this.deps.log.info({ app: app.name, sid: s.sid, client: ip, previous: s.ip, result: decision.result, policy: decision.decidedBy }, 'session address changed; policies evaluated again');
    return decision;
  }

  private async bearer(token: string, app: AppConfig, req: IncomingMessage, requestId: string): Promise<Authenticated> {
    // A native client sends the same token on every request: verify its signature once, until it expires (at most a minute).
    const tokenHash = createHash('sha256').update(token).digest('base64url');
    const cacheKey = `${app.clientId}|${tokenHash}`;
    const now = this.now();
    let claims = this.bearerVerified.get(cacheKey);
    if (!claims || claims.until <= now) {
      const payload = await this.deps.verifyBearer(token, app.clientId);
      const expMs = typeof payload.exp === 'number' ? payload.exp * 1000 : now;
      if (this.bearerVerified.size > 10_000) this.bearerVerified.clear();
      claims = { payload, until: Math.min(expMs, now + 60_000) };
      this.bearerVerified.set(cacheKey, claims);
    }
    // A token from a provider session someone signed out of here ends with it, expired or not.
    const providerSid = claims.payload['sid'];
    if (typeof providerSid === 'string' && providerSignedOut(this.deps.store.sessions, providerSid, now)) {
      throw new ProxyctlError('ERR_SIGNIN_REQUIRED', `The sign-in session this token was issued in has been signed out. Get a new token for ${app.name}.`, { status: 401, details: { app: app.name } });
    }
    const identity = identityFromClaims(claims.payload as Record<string, unknown>, this.deps.identity(), now);
    this.checkAssigned(app, identity);
    const decision = evaluate(this.deps.access(), contextOf(req, app, identity, now));
    // Logged once per token, address and minute, not per request.
    const key = `${app.name}|${clientAddress(req)}|${tokenHash}|${decision.result}`;
    const seen = this.bearerLogged.get(key);
    if (!seen || now - seen > 60_000) {
      if (this.bearerLogged.size > 10_000) this.bearerLogged.clear();
      this.bearerLogged.set(key, now);
      this.logSignIn(req, app, identity, requestId, decision.result === 'allow' ? 'success' : 'failure', decision.result === 'allow' ? 'bearer token' : `policy ${decision.decidedBy}`, decision);
    }
    // A bearer client cannot be sent to sign in again: anything but allow is a refusal.
    if (decision.result !== 'allow') throw policyDenied(app, decision);
    const sid = typeof claims.payload.jti === 'string' ? `bearer:${claims.payload.jti}` : `bearer:${identity.sub}`;
    return { identity, sid, via: 'bearer' };
  }

  async beginSignIn(res: ServerResponse, app: AppConfig, origin: string, opts: { returnTo?: string; stepUp?: { acrValues?: string; prompt?: boolean } }): Promise<void> {
    const state = randomState();
    const nonce = randomNonce();
    const codeVerifier = randomPKCECodeVerifier();
    const returnTo = safeReturnTo(app, origin, opts.returnTo);
    const url = await this.deps.oidc.authorizationUrl(app, {
      redirectUri: callbackUrl(app, origin), state, nonce, codeVerifier, ...(opts.stepUp ? { stepUp: opts.stepUp } : {}),
    });
    const now = this.now();
    this.deps.store.sessions.purgeSigninStates(now - STATE_TTL_MS);
    if (now - this.lastSessionPurge > SESSION_PURGE_EVERY_MS) {
      this.lastSessionPurge = now;
      this.deps.store.sessions.purge(now);
    }
    this.deps.store.sessions.putSigninState({ state, app: app.name, nonce, verifier: codeVerifier, returnTo, createdAt: now, stepUp: !!opts.stepUp });
    res.writeHead(302, {
      location: url.href,
      'set-cookie': `${stateCookieName(app)}=${state}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${STATE_TTL_MS / 1000}`,
      'cache-control': 'no-store',
    });
    res.end();
  }

  private async callback(req: IncomingMessage, res: ServerResponse, app: AppConfig, origin: string, requestId: string): Promise<void> {
    const url = new URL(req.url ?? '/', origin);
    const state = url.searchParams.get('state');
    const cookieState = parseCookies(req.headers.cookie).get(stateCookieName(app));
    // The state must come back to the browser that started the sign-in (no login CSRF).
    if (!state || !cookieState || state !== cookieState) {
      throw new ProxyctlError('ERR_SIGNIN_STATE', 'The sign-in response does not belong to a sign-in started in this browser. Start again from the application.', { status: 400, details: { app: app.name } });
    }
    const saved = this.deps.store.sessions.takeSigninState(state);
    if (!saved || saved.app !== app.name || saved.createdAt < this.now() - STATE_TTL_MS) {
      throw new ProxyctlError('ERR_SIGNIN_STATE', 'This sign-in has expired or was already used. Start again from the application.', { status: 400, details: { app: app.name } });
    }
    const providerError = url.searchParams.get('error');
    if (providerError) {
      const description = url.searchParams.get('error_description');
      throw new ProxyctlError('ERR_SIGNIN_PROVIDER', `The identity provider refused the sign-in: ${providerError.slice(0, 100)}${description ? ` (${description.slice(0, 200)})` : ''}`, { status: 401, details: { app: app.name } });
    }
    // Exactly the URL the provider redirected to; the redirect_uri must match the one sent.
    const claims = await this.deps.oidc.exchange(app, new URL(`${callbackUrl(app, origin)}${url.search}`), { state, nonce: saved.nonce, codeVerifier: saved.verifier });
    const identity = identityFromClaims(claims, this.deps.identity(), this.now());
    try {
      this.checkAssigned(app, identity);
    } catch (err) {
      this.logSignIn(req, app, identity, requestId, 'failure', 'not assigned to the app', undefined);
      throw err;
    }
    const now = this.now();
    const decision = evaluate(this.deps.access(), contextOf(req, app, identity, now));
    if (decision.result === 'deny' || (decision.result === 'stepUp' && saved.stepUp)) {
      this.logSignIn(req, app, identity, requestId, 'failure', `policy ${decision.decidedBy}${saved.stepUp ? ' (after step-up)' : ''}`, decision);
      throw policyDenied(app, decision);
    }
    if (decision.result === 'stepUp') {
      // Ask the provider for what the policy needs (a second factor, an acr) instead of a dead end.
      this.logSignIn(req, app, identity, requestId, 'stepUp', `policy ${decision.decidedBy}`, decision);
      await this.beginSignIn(res, app, origin, { returnTo: saved.returnTo, stepUp: stepUpOf(decision) });
      return;
    }
    const ip = clientAddress(req);
    const lifetime = Math.min(app.sessionLifetimeMs, decision.session.signInFrequencyMs ?? Infinity);
    const providerSid = typeof claims['sid'] === 'string' && claims['sid'].length <= 256 ? claims['sid'] : undefined;
    // Without the provider's auth_time, this sign-in is the best known authentication time.
    const session: Session = { ...identity, authTime: identity.authTime ?? now, sid: randomUUID(), app: app.name, iat: now, exp: now + lifetime, ip, providerSid };
    this.deps.store.sessions.create({ sid: session.sid, app: app.name, subject: identity.sub, createdAt: now, expiresAt: session.exp, clientIp: ip });
    const sealed = await sealSession(this.deps.ring(), session);
    this.logSignIn(req, app, identity, requestId, 'success', undefined, decision);
    this.deps.log.info({ request_id: requestId, app: app.name, sub: identity.sub, sid: session.sid, amr: identity.amr }, 'sign-in succeeded');
    const persistent = decision.session.persistentBrowser ?? app.cookie.persistent;
    res.writeHead(302, {
      location: safeReturnTo(app, origin, saved.returnTo),
      'set-cookie': [sessionCookie(app, sealed, session.exp, now, persistent), clearCookie(stateCookieName(app))],
      'cache-control': 'no-store',
    });
    res.end();
  }

  private logSignIn(req: IncomingMessage, app: AppConfig, who: Identity | undefined, requestId: string, result: 'success' | 'failure' | 'stepUp', reason: string | undefined, decision: Decision | undefined): void {
    const ip = clientAddress(req);
    try {
      this.deps.store.signIns.record({
        at: this.now(), requestId, app: app.name, subject: who?.sub ?? null, ip, country: countryOf(ip) ?? null,
        userAgent: req.headers['user-agent'] ?? null, result, reason: reason ?? null,
        policies: decision?.policies.map((p) => ({ name: p.name, state: p.state, applies: p.applies, outcome: p.outcome, why: p.why, missing: p.missing })) ?? [],
        risk: 'none',
      });
    } catch (err) {
      this.deps.log.error({ request_id: requestId, err: (err as Error).message }, 'cannot record sign-in');
    }
  }

  /** Failures before an identity is known (bad state, provider errors) are sign-in attempts too. */
  recordFailure(req: IncomingMessage, app: AppConfig, requestId: string, code: string): void {
    this.logSignIn(req, app, undefined, requestId, 'failure', code, undefined);
  }

  checkAssigned(app: AppConfig, who: Identity): void {
    if (!isAssigned(app, { user: who.sub, email: who.email, groups: who.groups })) {
      throw new ProxyctlError('ERR_NOT_ASSIGNED', `${who.email ?? who.sub} is not assigned to ${app.name}. Ask your administrator for access.`, { status: 403, details: { app: app.name } });
    }
  }

  /** GET shows the confirmation page; only a same-origin POST signs out (see sign-out.ts). */
  private async logout(req: IncomingMessage, res: ServerResponse, app: AppConfig, origin: string): Promise<void> {
    const after = `${origin}${app.pathPrefix}.proxyctl/signed-out`;
    if (req.method === 'GET' || req.method === 'HEAD') {
      signOutPage(req, res, app, await this.deps.oidc.endSessionUrl(app, after));
      return;
    }
    if (req.method !== 'POST') {
      throw new ProxyctlError('ERR_METHOD_NOT_ALLOWED', 'Sign out with the button on this page (POST).', { status: 405, details: { app: app.name } });
    }
    requireSameOrigin(req, origin);
    const s = await this.sessionFrom(req, app);
    if (s) {
      const now = this.now();
      this.deps.store.sessions.revoke(s.sid, now);
      if (s.providerSid) markProviderSignedOut(this.deps.store.sessions, this.deps.log, { providerSid: s.providerSid, app: app.name, now });
      this.deps.log.info({ app: app.name, sid: s.sid, sub: s.sub }, 'signed out');
    }
    const end = await this.deps.oidc.endSessionUrl(app, after);
    // 303: the browser follows with a GET, as the provider's end-session endpoint expects.
    res.writeHead(303, { location: end?.href ?? after, 'set-cookie': clearCookie(cookieName(app)), 'cache-control': 'no-store' });
    res.end();
  }

  private async me(req: IncomingMessage, res: ServerResponse, app: AppConfig): Promise<void> {
    const s = app.preauth === 'oidc' ? await this.sessionFrom(req, app) : undefined;
    if (!s) throw new ProxyctlError('ERR_SIGNIN_REQUIRED', 'Not signed in.', { status: 401, details: { app: app.name } });
    const body = JSON.stringify({
      sub: s.sub, email: s.email, name: s.name, groups: s.groups, amr: s.amr, acr: s.acr, authTime: new Date(s.authTime).toISOString(),
      sid: s.sid, app: app.name, expiresAt: new Date(s.exp).toISOString(),
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  }
}

function contextOf(req: IncomingMessage, app: AppConfig, who: Identity, now: number): SignInContext {
  const ip = clientAddress(req);
  const tls = req.socket as TLSSocket;
  const peer = typeof tls.getPeerCertificate === 'function' ? tls.getPeerCertificate() : undefined;
  return {
    app: app.name, user: who.sub, email: who.email, groups: who.groups, ip, country: countryOf(ip),
    platform: platformOf(req.headers['user-agent']), amr: who.amr, acr: who.acr, risk: 'none', time: new Date(now),
    // Chained to the configured device CA by the TLS layer (the public listener asks for it).
    deviceCertificate: !!tls.authorized && !!peer && Object.keys(peer).length > 0,
  };
}

function stepUpOf(d: Decision): { acrValues?: string; prompt: boolean } {
  const acr = d.stepUp?.acr ?? (d.stepUp?.mfa ? 'mfa' : undefined);
  return { ...(acr ? { acrValues: acr } : {}), prompt: true };
}

function policyDenied(app: AppConfig, d: Decision): ProxyctlError {
  return new ProxyctlError('ERR_POLICY_DENIED', `Access to ${app.name} was denied by the policy "${d.decidedBy}". ${d.hint ?? ''}`.trim(), {
    status: 403, details: { app: app.name, policy: d.decidedBy, hint: d.hint },
  });
}

export function callbackUrl(app: AppConfig, origin: string): string {
  return `${origin}${app.pathPrefix}.proxyctl/callback`;
}

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
export function identityFromClaims(c: Record<string, unknown>, cfg: Pick<IdentityConfig, 'groupsClaim' | 'emailVerifiedWhenAbsent'>, now: number): Identity {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' && v.length <= MAX_VALUE ? v : undefined);
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
  return {
    sub,
    email: email !== undefined && EMAIL.test(email) ? email : undefined,
    name: str(c['name']) ?? str(c['preferred_username']),
    groups: list(c[cfg.groupsClaim], MAX_GROUPS),
    amr: list(c['amr'], MAX_AMR),
    acr: str(c['acr']),
    // A provider clock ahead of ours must not date an authentication in the future.
    authTime: typeof authTime === 'number' && Number.isFinite(authTime) && authTime > 0 ? Math.min(Math.floor(authTime) * 1000, now) : undefined,
  };
}
