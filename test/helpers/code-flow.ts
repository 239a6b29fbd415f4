// A native client's own sign-in at the test IdP (authorization code + PKCE, openid-client),
// in a BrowserSim so it shares the provider session of that browser's relay sign-ins:
// yields a genuine ID token and, with a resource (an app's client id), a JWT access token.
import * as oidc from 'openid-client';
import type { BrowserSim } from './browser-sim.js';

export interface CodeFlowOptions {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Registered for the client; never contacted (the flow stops at the redirect). */
  redirectUri: string;
  username: string;
  /** Ask for a JWT access token for this audience (RFC 8707 resource indicator). */
  resource?: string;
  mfa?: boolean;
}

export async function codeFlow(sim: BrowserSim, o: CodeFlowOptions): Promise<{ idToken: string; accessToken: string }> {
  const config = await oidc.discovery(new URL(o.issuer), o.clientId, o.clientSecret, undefined, {
    execute: [oidc.allowInsecureRequests],
  });
  const verifier = oidc.randomPKCECodeVerifier();
  const nonce = oidc.randomNonce();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: o.redirectUri,
    scope: 'openid profile email',
    response_type: 'code',
    nonce,
    state,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...(o.resource ? { resource: o.resource } : {}),
  });
  const atRedirect = (next: URL) => next.href.startsWith(o.redirectUri);
  let page = await sim.follow(url.href, atRedirect);
  if (!atRedirect(new URL(page.url))) {
    // No provider session in this browser yet: the login form.
    const action = /action="([^"]+)"/.exec(page.body)?.[1];
    if (!action) throw new Error(`no login form at ${page.url}: ${page.status} ${page.body.slice(0, 200)}`);
    const form = new URLSearchParams({ username: o.username, password: 'x', ...(o.mfa ? { mfa: '1' } : {}) });
    const posted = await sim.get(new URL(action, page.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    page = await sim.follow(new URL(String(posted.headers['location']), posted.url).href, atRedirect);
  }
  const tokens = await oidc.authorizationCodeGrant(
    config,
    new URL(page.url),
    { pkceCodeVerifier: verifier, expectedNonce: nonce, expectedState: state, idTokenExpected: true },
    o.resource ? { resource: o.resource } : undefined,
  );
  if (!tokens.id_token) throw new Error('the test IdP returned no ID token');
  return { idToken: tokens.id_token, accessToken: tokens.access_token };
}
