// Step "authenticate": who is asking, from the app's session cookie or an access
// token for the app (Authorization: Bearer), or nobody. It decides nothing about
// access (authorize.ts) and sends no one to sign in (the request path does).
// A bearer token that is present but bad is a refusal; a missing or refused
// cookie is "nobody".
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { JWTPayload } from 'jose';
import type { AppConfig, IdentityConfig } from '../../config/relay-config.js';
import type { KeyRing } from '../../crypto/keyring.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Store } from '../../store/index.js';
import { identityFromClaims } from './identity.js';
import { cookieName, openSession, parseCookies, type Identity, type Session } from './session.js';

export interface Authenticated {
  identity: Identity;
  sid: string;
  via: 'cookie' | 'bearer';
  session?: Session;
  /** What the authorization decision is cached under: one session, or one token. */
  key: string;
}

export interface BearerVerifier {
  verifyAccessToken(token: string, audience: string): Promise<JWTPayload>;
}

/** The part of the relay state (one configuration generation) this step reads. */
export interface AuthenticateView {
  readonly generation: number;
  readonly config: { readonly identity: IdentityConfig };
  readonly verifier: BearerVerifier;
}

export interface AuthenticateDeps {
  store: Store;
  ring: () => KeyRing;
  log: Logger;
  now: () => number;
  /** A valid cookie of a session signed out of or revoked was presented (a risk detection). */
  revokedSession?: (req: IncomingMessage, app: AppConfig, subject: string, sid: string) => void;
}

export class Authentication {
  /** Verified token claims, per generation (a reload may change the issuer), until expiry or a minute. */
  private readonly bearerVerified = new Map<string, { payload: JWTPayload; until: number }>();

  constructor(private readonly deps: AuthenticateDeps) {}

  /** The identity the request carries, or undefined (no credential, or a cookie that is not valid). */
  identify(req: IncomingMessage, app: AppConfig, view: AuthenticateView): Promise<Authenticated | undefined> {
    const auth = req.headers.authorization;
    if (auth && /^bearer\s/i.test(auth)) return this.bearer(auth.replace(/^bearer\s+/i, '').trim(), app, view);
    return this.cookie(req, app);
  }

  private async cookie(req: IncomingMessage, app: AppConfig): Promise<Authenticated | undefined> {
    const s = await this.sessionFrom(req, app);
    return s ? { identity: s, sid: s.sid, via: 'cookie', session: s, key: `c|${s.sid}` } : undefined;
  }

  async sessionFrom(req: IncomingMessage, app: AppConfig): Promise<Session | undefined> {
    const value = parseCookies(req.headers.cookie).get(cookieName(app));
    if (!value) return undefined;
    const now = this.deps.now();
    const result = await openSession(this.deps.ring(), value, app, now);
    if (!('session' in result)) {
      this.deps.log.info({ app: app.name, reason: result.reason }, 'session cookie refused');
      return undefined;
    }
    if (!(await this.deps.store.sessions.isActive(result.session.sid, now))) {
      this.deps.log.info({ app: app.name, sid: result.session.sid }, 'session revoked or unknown');
      this.deps.revokedSession?.(req, app, result.session.sub, result.session.sid);
      return undefined;
    }
    return result.session;
  }

  private async bearer(token: string, app: AppConfig, view: AuthenticateView): Promise<Authenticated> {
    // A native client sends the same token on every request: verify its signature once, until it expires (at most a minute).
    const tokenHash = createHash('sha256').update(token).digest('base64url');
    const cacheKey = `${view.generation}|${app.clientId}|${tokenHash}`;
    const now = this.deps.now();
    let claims = this.bearerVerified.get(cacheKey);
    if (!claims || claims.until <= now) {
      const payload = await view.verifier.verifyAccessToken(token, app.clientId);
      const expMs = typeof payload.exp === 'number' ? payload.exp * 1000 : now;
      if (this.bearerVerified.size > 10_000) this.bearerVerified.clear();
      claims = { payload, until: Math.min(expMs, now + 60_000) };
      this.bearerVerified.set(cacheKey, claims);
    }
    // A token from a provider session someone signed out of here ends with it, expired or not.
    const providerSid = claims.payload['sid'];
    if (typeof providerSid === 'string' && (await this.deps.store.sessions.providerSessionEnded(providerSid, now))) {
      throw new ProxyctlError(
        'ERR_SIGNIN_REQUIRED',
        `The sign-in session this token was issued in has been signed out. Get a new token for ${app.name}.`,
        { status: 401, details: { app: app.name } },
      );
    }
    const identity = identityFromClaims(claims.payload, view.config.identity, now);
    const sid = typeof claims.payload.jti === 'string' ? `bearer:${claims.payload.jti}` : `bearer:${identity.sub}`;
    return { identity, sid, via: 'bearer', key: `b|${tokenHash}` };
  }
}
