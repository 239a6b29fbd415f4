// Step "relay-owned paths": answered by the relay on every app host, never
// forwarded, whatever the app's preauth: robots.txt, the JWKS backends verify
// assertions with, and /.proxyctl/* (sign-in callback, sign-out, signed-out,
// who am I). Any other path is refused at once without a promise: that is
// nearly every request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppConfig } from '../../config/relay-config.js';
import type { KeyRing } from '../../crypto/keyring.js';
import { ProxyctlError, isProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Store } from '../../store/index.js';
import { JWKS_PATH } from './assertion.js';
import type { Authentication } from './authenticate.js';
import { clearCookie, cookieName } from './session.js';
import type { SignIn, SignInView } from './sign-in.js';
import type { SignInLog } from './sign-in-log.js';
import { markProviderSignedOut, requireSameOrigin, signedOutPage, signOutPage } from './sign-out.js';

/** The JWKS path as an app path (no leading slash), as the route's `rest` is. */
const JWKS_REST = JWKS_PATH.slice(1);
const ROBOTS = 'User-agent: *\nDisallow: /\n';

export interface RelayOwnedDeps {
  store: Store;
  ring: () => KeyRing;
  log: Logger;
  now: () => number;
  authentication: Authentication;
  signIn: SignIn;
  signIns: SignInLog;
}

export class RelayOwned {
  constructor(private readonly deps: RelayOwnedDeps) {}

  /** Whether the path is the relay's (upgrades to it are refused). */
  owns(req: IncomingMessage, rest: string): boolean {
    const target = req.url ?? '/';
    return (
      target === '/robots.txt' ||
      target.startsWith('/robots.txt?') ||
      rest.startsWith('.proxyctl/') ||
      rest.startsWith(JWKS_REST)
    );
  }

  /** `rest` is the app path without its leading slash. False: not the relay's; otherwise resolves to true when answered. */
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    app: AppConfig,
    origin: string,
    rest: string,
    requestId: string,
    view: SignInView,
  ): boolean | Promise<boolean> {
    const target = req.url ?? '/';
    if (
      (target === '/robots.txt' || target.startsWith('/robots.txt?')) &&
      (req.method === 'GET' || req.method === 'HEAD')
    ) {
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': ROBOTS.length,
        'cache-control': 'public, max-age=3600',
      });
      res.end(req.method === 'HEAD' ? undefined : ROBOTS);
      return true;
    }
    if (!rest.startsWith('.proxyctl/') && !rest.startsWith(JWKS_REST)) return false;
    return this.answer(req, res, app, origin, rest, requestId, view);
  }

  private async answer(
    req: IncomingMessage,
    res: ServerResponse,
    app: AppConfig,
    origin: string,
    rest: string,
    requestId: string,
    view: SignInView,
  ): Promise<boolean> {
    const path = rest.split('?')[0];
    if (`/${path}` === JWKS_PATH) {
      const body = JSON.stringify(this.deps.ring().jwks());
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'cache-control': 'public, max-age=300',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return true;
    }
    if (!path?.startsWith('.proxyctl/')) return false;
    switch (path) {
      case '.proxyctl/callback':
        try {
          await this.deps.signIn.callback(req, res, app, origin, requestId, view);
        } catch (err) {
          // Policy and assignment refusals are logged with the identity; the rest here.
          if (isProxyctlError(err) && err.code !== 'ERR_POLICY_DENIED' && err.code !== 'ERR_NOT_ASSIGNED')
            this.deps.signIns.failure(req, app, requestId, err);
          throw err;
        }
        return true;
      case '.proxyctl/logout':
        await this.logout(req, res, app, origin, view);
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

  /** GET shows the confirmation page; only a same-origin POST signs out (see sign-out.ts). */
  private async logout(
    req: IncomingMessage,
    res: ServerResponse,
    app: AppConfig,
    origin: string,
    view: SignInView,
  ): Promise<void> {
    const after = `${origin}${app.pathPrefix}.proxyctl/signed-out`;
    if (req.method === 'GET' || req.method === 'HEAD') {
      signOutPage(req, res, app, await view.oidc.endSessionUrl(app, after));
      return;
    }
    if (req.method !== 'POST') {
      throw new ProxyctlError('ERR_METHOD_NOT_ALLOWED', 'Sign out with the button on this page (POST).', {
        status: 405,
        details: { app: app.name },
      });
    }
    requireSameOrigin(req, origin);
    const s = await this.deps.authentication.sessionFrom(req, app);
    if (s) {
      const now = this.deps.now();
      await this.deps.store.sessions.revoke(s.sid, now);
      if (s.providerSid)
        await markProviderSignedOut(this.deps.store.sessions, this.deps.log, {
          providerSid: s.providerSid,
          app: app.name,
          now,
        });
      this.deps.log.info({ app: app.name, sid: s.sid, sub: s.sub }, 'signed out');
    }
    const end = await view.oidc.endSessionUrl(app, after);
    // 303: the browser follows with a GET, as the provider's end-session endpoint expects.
    res.writeHead(303, {
      location: end?.href ?? after,
      'set-cookie': clearCookie(cookieName(app)),
      'cache-control': 'no-store',
    });
    res.end();
  }

  private async me(req: IncomingMessage, res: ServerResponse, app: AppConfig): Promise<void> {
    const s = app.preauth === 'oidc' ? await this.deps.authentication.sessionFrom(req, app) : undefined;
    if (!s)
      throw new ProxyctlError('ERR_SIGNIN_REQUIRED', 'Not signed in.', { status: 401, details: { app: app.name } });
    const body = JSON.stringify({
      sub: s.sub,
      email: s.email,
      name: s.name,
      groups: s.groups,
      amr: s.amr,
      acr: s.acr,
      authTime: new Date(s.authTime).toISOString(),
      sid: s.sid,
      app: app.name,
      expiresAt: new Date(s.exp).toISOString(),
    });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
    });
    res.end(body);
  }
}
