// Step "sign-in": begin (a redirect to the identity provider with PKCE, state
// and nonce, optionally asking for a step-up) and the callback at
// /.proxyctl/callback (the ID token checked, the identity authorized, a session
// created and sealed into the cookie). The request path decides when to begin.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomNonce, randomPKCECodeVerifier, randomState } from 'openid-client';
import type { AppConfig, IdentityConfig } from '../../config/relay-config.js';
import type { KeyRing } from '../../crypto/keyring.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Store } from '../../store/index.js';
import { clientAddress } from '../edge/client-address.js';
import { CONSOLE_APP, consoleCaller } from '../admin/console.js';
import { notAssigned, policyDenied, stepUpOf, type Authorizer, type StepUp } from './authorize.js';
import { identityFromClaims } from './identity.js';
import type { OidcClients } from './oidc-client.js';
import { safeReturnTo } from './redirect.js';
import { clearCookie, parseCookies, sealSession, sessionCookie, stateCookieName, type Session } from './session.js';
import type { SignInLog } from './sign-in-log.js';

const STATE_TTL_MS = 10 * 60_000;
/** Expired sessions and ended provider sessions are deleted at most this often, on a sign-in start. */
const SESSION_PURGE_EVERY_MS = 10 * 60_000;

/** The part of the relay state (one configuration generation) sign-in reads. */
export interface SignInView {
  readonly config: { readonly identity: IdentityConfig };
  readonly oidc: OidcClients;
  readonly authorizer: Authorizer;
}

export interface SignInDeps {
  store: Store;
  ring: () => KeyRing;
  log: Logger;
  now: () => number;
  signIns: SignInLog;
}

export function callbackUrl(app: AppConfig, origin: string): string {
  return `${origin}${app.pathPrefix}.proxyctl/callback`;
}

export class SignIn {
  private lastSessionPurge = 0;

  constructor(private readonly deps: SignInDeps) {}

  async begin(
    res: ServerResponse,
    app: AppConfig,
    origin: string,
    view: SignInView,
    opts: { returnTo?: string | undefined; stepUp?: StepUp },
  ): Promise<void> {
    const state = randomState();
    const nonce = randomNonce();
    const codeVerifier = randomPKCECodeVerifier();
    const returnTo = safeReturnTo(app, origin, opts.returnTo);
    const url = await view.oidc.authorizationUrl(app, {
      redirectUri: callbackUrl(app, origin),
      state,
      nonce,
      codeVerifier,
      ...(opts.stepUp ? { stepUp: opts.stepUp } : {}),
    });
    const now = this.deps.now();
    await this.deps.store.sessions.purgeSigninStates(now - STATE_TTL_MS);
    if (now - this.lastSessionPurge > SESSION_PURGE_EVERY_MS) {
      this.lastSessionPurge = now;
      await this.deps.store.sessions.purge(now);
    }
    await this.deps.store.sessions.putSigninState({
      state,
      app: app.name,
      nonce,
      verifier: codeVerifier,
      returnTo,
      createdAt: now,
      stepUp: !!opts.stepUp,
    });
    res.writeHead(302, {
      location: url.href,
      'set-cookie': `${stateCookieName(app)}=${state}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${STATE_TTL_MS / 1000}`,
      'cache-control': 'no-store',
    });
    res.end();
  }

  async callback(
    req: IncomingMessage,
    res: ServerResponse,
    app: AppConfig,
    origin: string,
    requestId: string,
    view: SignInView,
  ): Promise<void> {
    const url = new URL(req.url ?? '/', origin);
    const state = url.searchParams.get('state');
    const cookieState = parseCookies(req.headers.cookie).get(stateCookieName(app));
    // The state must come back to the browser that started the sign-in (no login CSRF).
    if (!state || !cookieState || state !== cookieState) {
      throw new ProxyctlError(
        'ERR_SIGNIN_STATE',
        'The sign-in response does not belong to a sign-in started in this browser. Start again from the application.',
        { status: 400, details: { app: app.name } },
      );
    }
    const saved = await this.deps.store.sessions.takeSigninState(state);
    if (!saved || saved.app !== app.name || saved.createdAt < this.deps.now() - STATE_TTL_MS) {
      throw new ProxyctlError(
        'ERR_SIGNIN_STATE',
        'This sign-in has expired or was already used. Start again from the application.',
        { status: 400, details: { app: app.name, reason: 'used-or-expired' } },
      );
    }
    const providerError = url.searchParams.get('error');
    if (providerError) {
      const description = url.searchParams.get('error_description');
      throw new ProxyctlError(
        'ERR_SIGNIN_PROVIDER',
        `The identity provider refused the sign-in: ${providerError.slice(0, 100)}${description ? ` (${description.slice(0, 200)})` : ''}`,
        { status: 401, details: { app: app.name } },
      );
    }
    // Exactly the URL the provider redirected to; the redirect_uri must match the one sent.
    const claims = await view.oidc.exchange(app, new URL(`${callbackUrl(app, origin)}${url.search}`), {
      state,
      nonce: saved.nonce,
      codeVerifier: saved.verifier,
    });
    const identity = identityFromClaims(claims, view.config.identity, this.deps.now());
    // Risk first: policies may ask for the sign-in's and the user's.
    const assessment = await this.deps.signIns.assess(req, identity.sub, { kind: 'interactive', bearer: false });
    const { assigned, decision } = view.authorizer.evaluateFor(req, app, identity, assessment);
    const record = (result: 'success' | 'failure' | 'stepUp', reason: string | undefined, d: typeof decision) =>
      this.deps.signIns.record(req, app, identity, requestId, result, reason, d, 'interactive', assessment);
    if (!assigned || !decision) {
      record('failure', 'not assigned to the app', undefined);
      throw notAssigned(app, identity);
    }
    // The console admits only the administration roles: anyone else gets no session for it.
    if (app.name === CONSOLE_APP && !consoleCaller(identity, view.config.identity)) {
      record('failure', 'no administration role', decision);
      throw new ProxyctlError(
        'ERR_NOT_ASSIGNED',
        `${identity.email ?? identity.sub} has neither the administrator nor the reader role of this relay.`,
        { status: 403, details: { app: app.name, reason: 'no administration role' } },
      );
    }
    if (decision.result === 'deny' || (decision.result === 'stepUp' && saved.stepUp)) {
      record('failure', `policy ${decision.decidedBy}${saved.stepUp ? ' (after step-up)' : ''}`, decision);
      throw policyDenied(app, decision);
    }
    if (decision.result === 'stepUp') {
      // Ask the provider for what the policy needs (a second factor, an acr) instead of a dead end.
      record('stepUp', `policy ${decision.decidedBy}`, decision);
      await this.begin(res, app, origin, view, { returnTo: saved.returnTo, stepUp: stepUpOf(decision) });
      return;
    }
    const now = this.deps.now();
    const ip = clientAddress(req);
    const lifetime = Math.min(app.sessionLifetimeMs, decision.session.signInFrequencyMs ?? Infinity);
    const providerSid = typeof claims['sid'] === 'string' && claims['sid'].length <= 256 ? claims['sid'] : undefined;
    // Without the provider's auth_time, this sign-in is the best known authentication time.
    const session: Session = {
      ...identity,
      authTime: identity.authTime ?? now,
      sid: randomUUID(),
      app: app.name,
      risk: assessment.risk,
      iat: now,
      exp: now + lifetime,
      ip,
      providerSid,
    };
    await this.deps.store.sessions.create({
      sid: session.sid,
      app: app.name,
      subject: identity.sub,
      createdAt: now,
      expiresAt: session.exp,
      clientIp: ip,
    });
    const sealed = await sealSession(this.deps.ring(), session);
    record('success', undefined, decision);
    // A risky sign-in completed with a second factor: the user proved it was them, and
    // the detections of this sign-in (and of its first leg, from this client) stop
    // counting toward their user risk.
    if (assessment.risk !== 'none' && identity.amr.includes('mfa'))
      this.deps.signIns.remediate(req, identity.sub, now - STATE_TTL_MS);
    this.deps.log.info(
      { request_id: requestId, app: app.name, sub: identity.sub, sid: session.sid, amr: identity.amr },
      'sign-in succeeded',
    );
    const persistent = decision.session.persistentBrowser ?? app.cookie.persistent;
    res.writeHead(302, {
      location: safeReturnTo(app, origin, saved.returnTo),
      'set-cookie': [sessionCookie(app, sealed, session.exp, now, persistent), clearCookie(stateCookieName(app))],
      'cache-control': 'no-store',
    });
    res.end();
  }
}
