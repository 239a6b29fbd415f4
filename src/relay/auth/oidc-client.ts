// The relay as an OpenID Connect relying party, on openid-client: discovery,
// authorization code flow with PKCE, state and nonce, and ID token checks
// (signature against the JWKS, issuer, audience = the app's client id, expiry
// with skew, nonce). Provider failures become ProxyctlErrors naming the step.
import * as oidc from 'openid-client';
import type { AppConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';
import { isLoopbackHost } from '../../net/address.js';

export interface OidcOptions {
  issuer: () => URL;
  clockSkewMs: number;
  scopes: readonly string[];
  /** For a provider reached in a special way (the embedded one, test CAs). */
  fetch?: typeof fetch;
}

export interface AuthRequest {
  redirectUri: string;
  state: string;
  nonce: string;
  codeVerifier: string;
  /** Ask the provider for a fresh login with a second factor. */
  stepUp?: { acrValues?: string; prompt?: boolean };
}

export type IdClaims = Record<string, unknown> & { sub: string };

export class OidcClients {
  private readonly configs = new Map<string, Promise<oidc.Configuration>>();

  constructor(private readonly options: OidcOptions) {}

  private config(app: AppConfig): Promise<oidc.Configuration> {
    const issuer = this.options.issuer();
    const key = `${issuer.href}\u0000${app.clientId}\u0000${app.clientSecret ?? ''}`;
    let p = this.configs.get(key);
    if (!p) {
      p = oidc
        .discovery(
          issuer,
          app.clientId,
          {
            [oidc.clockTolerance]: Math.round(this.options.clockSkewMs / 1000),
            ...(app.clientSecret ? { client_secret: app.clientSecret } : { token_endpoint_auth_method: 'none' }),
          },
          undefined,
          {
            ...(issuer.protocol === 'http:' && isLoopbackHost(issuer.hostname)
              ? { execute: [oidc.allowInsecureRequests] }
              : {}),
            ...(this.options.fetch ? { [oidc.customFetch]: this.options.fetch } : {}),
            timeout: 10,
          },
        )
        .then((c) => {
          // ID tokens are checked against the provider's keys, not trusted for arriving over TLS.
          oidc.enableNonRepudiationChecks(c);
          return c;
        });
      p.catch(() => this.configs.delete(key));
      this.configs.set(key, p);
    }
    return p.catch((err: unknown) => {
      throw new ProxyctlError(
        'ERR_IDP_UNAVAILABLE',
        `the identity provider ${issuer.href} cannot be reached or its discovery document is unusable`,
        { status: 503, cause: err },
      );
    });
  }

  async authorizationUrl(app: AppConfig, r: AuthRequest): Promise<URL> {
    const config = await this.config(app);
    const params: Record<string, string> = {
      redirect_uri: r.redirectUri,
      scope: this.options.scopes.join(' '),
      response_type: 'code',
      state: r.state,
      nonce: r.nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(r.codeVerifier),
      code_challenge_method: 'S256',
    };
    if (r.stepUp?.acrValues) params['acr_values'] = r.stepUp.acrValues;
    if (r.stepUp?.prompt) params['prompt'] = 'login';
    return oidc.buildAuthorizationUrl(config, params);
  }

  /** Exchanges the code at the token endpoint and returns the verified ID token claims. */
  async exchange(
    app: AppConfig,
    callbackUrl: URL,
    checks: { state: string; nonce: string; codeVerifier: string },
  ): Promise<IdClaims> {
    const config = await this.config(app);
    let tokens;
    try {
      tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
        pkceCodeVerifier: checks.codeVerifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      throw classify(err);
    }
    const claims = tokens.claims();
    if (!claims)
      throw new ProxyctlError('ERR_SIGNIN_TOKEN', 'the identity provider returned no ID token', { status: 401 });
    return claims;
  }

  /** Where to send the browser to sign out at the provider, when it supports that. */
  async endSessionUrl(app: AppConfig, postLogoutRedirectUri: string): Promise<URL | undefined> {
    try {
      const config = await this.config(app);
      if (!config.serverMetadata().end_session_endpoint) return undefined;
      return oidc.buildEndSessionUrl(config, {
        client_id: app.clientId,
        post_logout_redirect_uri: postLogoutRedirectUri,
      });
    } catch {
      return undefined;
    }
  }
}

function classify(err: unknown): ProxyctlError {
  if (err instanceof oidc.AuthorizationResponseError) {
    return new ProxyctlError(
      'ERR_SIGNIN_PROVIDER',
      `the identity provider refused the sign-in: ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`,
      { status: 401, cause: err },
    );
  }
  if (err instanceof oidc.ResponseBodyError) {
    // invalid_grant: a code used twice, expired, or issued to someone else.
    return new ProxyctlError(
      'ERR_SIGNIN_CODE',
      `the identity provider did not accept the sign-in code (${err.error})`,
      { status: 401, cause: err },
    );
  }
  const code = (err as { code?: string }).code ?? '';
  if (
    code === 'OAUTH_INVALID_RESPONSE' ||
    code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED' ||
    code === 'OAUTH_JWS_SIGNATURE_VERIFICATION_FAILED' ||
    code === 'OAUTH_UNSUPPORTED_OPERATION' ||
    code.startsWith('OAUTH_') ||
    code.startsWith('ERR_JW')
  ) {
    // A nonce that is not this sign-in's: the ID token was replayed from another sign-in.
    // openid-client wraps oauth4webapi's error, whose cause names the claim.
    type Caused = { cause?: Caused; claim?: unknown };
    const cause = (err as Caused).cause;
    const claim = cause?.claim ?? cause?.cause?.claim;
    return new ProxyctlError('ERR_SIGNIN_TOKEN', `the ID token from the identity provider is not valid (${code})`, {
      status: 401,
      cause: err,
      ...(claim === 'nonce' ? { details: { check: 'nonce' } } : {}),
    });
  }
  return new ProxyctlError('ERR_IDP_UNAVAILABLE', 'the identity provider could not complete the sign-in', {
    status: 503,
    cause: err,
  });
}
