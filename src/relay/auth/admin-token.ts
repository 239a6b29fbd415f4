// Decides whether a connector's registration request comes from an administrator, and checks
// the bearer tokens native clients send to apps: the relay trusts only access tokens (never ID
// tokens) its configured OpenID provider signed, for the expected audience, right now.
import {
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTHeaderParameters,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { IdentityConfig } from '../../config/relay-config.js';
import { isLoopbackHost } from '../../net/address.js';
import { ProxyctlError, isProxyctlError, type ErrorCode } from '../../errors.js';

export interface AdminIdentity {
  subject: string;
  name: string | undefined;
  issuer: string;
}

export interface AdminTokenVerifierOptions {
  /** Clock in milliseconds since the epoch; injectable so tests need not sleep. */
  now?: () => number;
  discoveryTtlMs?: number;
  /** How to reach the provider (the embedded one is reached over loopback with the relay CA). */
  fetch?: typeof fetch;
}

// Asymmetric only: with a symmetric algorithm anyone holding the (public) JWKS could mint tokens.
const ACCEPTED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const ACCEPTED = new Set(ACCEPTED_ALGORITHMS);
const MAX_TOKEN_LENGTH = 16 * 1024;
const FETCH_TIMEOUT_MS = 5_000;
const DEFAULT_DISCOVERY_TTL_MS = 60 * 60 * 1000;
const MAX_DISCOVERY_BYTES = 512 * 1024;

type RemoteKeys = ReturnType<typeof createRemoteJWKSet>;

interface Discovery {
  /** Exactly as the provider spells it; tokens must carry this very string in `iss`. */
  readonly issuer: string;
  readonly jwksUri: string;
  readonly fetchedAt: number;
}

export class AdminTokenVerifier {
  readonly #identity: IdentityConfig;
  readonly #issuer: URL;
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #fetch: typeof fetch;
  #discovery: Discovery | undefined;
  #pendingDiscovery: Promise<Discovery> | undefined;
  #keys: { readonly uri: string; readonly set: RemoteKeys } | undefined;

  constructor(identity: IdentityConfig, options: AdminTokenVerifierOptions = {}) {
    if (identity.issuer === undefined) {
      // The embedded provider's issuer is only known once it listens; callers resolve it first.
      throw new ProxyctlError(
        'ERR_INTERNAL',
        'AdminTokenVerifier needs a resolved identity issuer (start the embedded identity provider first and pass its issuer)',
      );
    }
    const issuer = new URL(identity.issuer.href);
    if (issuer.search !== '' || issuer.hash !== '' || issuer.username !== '' || issuer.password !== '') {
      throw new ProxyctlError(
        'ERR_CONFIG_INVALID',
        `identity issuer ${issuer.origin}${issuer.pathname} must not carry a query, fragment or credentials`,
      );
    }
    this.#identity = identity;
    this.#issuer = issuer;
    this.#now = options.now ?? Date.now;
    this.#ttlMs = options.discoveryTtlMs ?? DEFAULT_DISCOVERY_TTL_MS;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /** Resolves to the administrator the token names, or rejects with a ProxyctlError. */
  async verify(token: string): Promise<AdminIdentity> {
    const { payload, issuer } = await this.#verifyJwt(token, this.#identity.adminAudience);
    return this.#requireAdmin(payload, issuer);
  }

  /**
   * For the administration API: the token as for `verify`, with the role it carries —
   * admin (adminValues) or reader (readerValues); neither is ERR_TOKEN_NOT_ADMIN (403).
   */
  async verifyCaller(token: string): Promise<AdminIdentity & { role: 'admin' | 'reader' }> {
    const { payload, issuer } = await this.#verifyJwt(token, this.#identity.adminAudience);
    const held = claimValues(payload[this.#identity.adminClaim]);
    if (
      !held.some((v) => this.#identity.adminValues.includes(v)) &&
      held.some((v) => this.#identity.readerValues.includes(v))
    )
      return { ...this.#requireAdmin(payload, issuer, this.#identity.readerValues), role: 'reader' };
    return { ...this.#requireAdmin(payload, issuer), role: 'admin' };
  }

  /** Verifies an access token for another audience (an app's client id): same checks, no role. */
  async verifyAccessToken(token: string, audience: string): Promise<JWTPayload> {
    return (await this.#verifyJwt(token, audience)).payload;
  }

  async #verifyJwt(token: string, audience: string): Promise<{ payload: JWTPayload; issuer: string }> {
    // A misconfigured issuer is reported before anything, and before any request leaves the relay.
    requireSecureUrl(this.#issuer, 'identity issuer');
    const kid = checkShape(token);
    const discovery = await this.#discover();
    const getKey = this.#keyResolver(discovery);
    const nowMs = this.#now();
    let payload: JWTPayload;
    let header: JWTHeaderParameters;
    try {
      ({ payload, protectedHeader: header } = await jwtVerify(token, getKey, {
        algorithms: ACCEPTED_ALGORITHMS,
        issuer: discovery.issuer,
        audience,
        clockTolerance: this.#identity.clockSkewMs / 1000,
        currentDate: new Date(nowMs),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw this.#mapVerifyError(err, discovery, nowMs, kid, audience);
    }
    requireAccessToken(header, payload);
    return { payload, issuer: discovery.issuer };
  }

  async #discover(): Promise<Discovery> {
    const cached = this.#discovery;
    if (cached && this.#now() - cached.fetchedAt < this.#ttlMs) return cached;
    this.#pendingDiscovery ??= fetchDiscovery(this.#issuer, this.#now, this.#fetch).finally(() => {
      this.#pendingDiscovery = undefined;
    });
    try {
      this.#discovery = await this.#pendingDiscovery;
      return this.#discovery;
    } catch (err) {
      // A provider blip after the TTL should not lock administrators out; a changed
      // (mismatched or insecure) document must, so only unavailability falls back.
      if (cached && isProxyctlError(err, 'ERR_IDP_UNAVAILABLE')) return cached;
      throw err;
    }
  }

  #keyResolver(discovery: Discovery): JWTVerifyGetKey {
    // Reusing jose's remote set keeps its key cache and its refetch-on-unknown-kid behaviour.
    if (this.#keys?.uri !== discovery.jwksUri) {
      this.#keys = {
        uri: discovery.jwksUri,
        set: createRemoteJWKSet(new URL(discovery.jwksUri), {
          timeoutDuration: FETCH_TIMEOUT_MS,
          [customFetch]: this.#fetch,
        }),
      };
    }
    const { uri, set } = this.#keys;
    return async (header, input) => {
      try {
        return await set(header, input);
      } catch (err) {
        if (hasJoseCode(err, 'ERR_JWKS_NO_MATCHING_KEY') || hasJoseCode(err, 'ERR_JWKS_MULTIPLE_MATCHING_KEYS'))
          throw err;
        // Anything else is the key endpoint failing, not the token: callers may retry.
        throw new ProxyctlError(
          'ERR_IDP_UNAVAILABLE',
          `cannot load the identity provider's signing keys from ${uri}: ${describeFailure(err)}`,
          {
            status: 503,
            cause: err,
            details: { jwksUri: uri },
          },
        );
      }
    };
  }

  #mapVerifyError(err: unknown, discovery: Discovery, nowMs: number, kid: unknown, audience: string): ProxyctlError {
    if (err instanceof ProxyctlError) return err;
    if (!(err instanceof joseErrors.JOSEError)) {
      return tokenError('ERR_TOKEN_INVALID', 'token could not be verified', err);
    }
    const skew = `allowed clock skew ${this.#identity.clockSkewMs / 1000}s`;
    switch (err.code) {
      case 'ERR_JWT_EXPIRED': {
        const { payload } = err as joseErrors.JWTExpired;
        return tokenError(
          'ERR_TOKEN_EXPIRED',
          `token expired at ${formatTime(payload['exp'])} (relay time ${formatMs(nowMs)}, ${skew})`,
          err,
        );
      }
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
        const { claim, reason, payload } = err as joseErrors.JWTClaimValidationFailed;
        if (claim === 'iss')
          return tokenError(
            'ERR_TOKEN_ISSUER',
            `token issuer is ${show(payload['iss'])}, expected ${discovery.issuer}`,
            err,
          );
        if (claim === 'aud')
          return tokenError(
            'ERR_TOKEN_AUDIENCE',
            `token audience is ${show(payload['aud'])}, expected ${audience}`,
            err,
          );
        if (claim === 'nbf' && reason === 'check_failed') {
          return tokenError(
            'ERR_TOKEN_NOT_YET_VALID',
            `token is not valid before ${formatTime(payload['nbf'])} (relay time ${formatMs(nowMs)}, ${skew})`,
            err,
          );
        }
        if (claim === 'exp' && reason === 'missing')
          return tokenError(
            'ERR_TOKEN_INVALID',
            'token has no expiry (exp claim); tokens that never expire are refused',
            err,
          );
        if (claim === 'sub' && reason === 'missing')
          return tokenError('ERR_TOKEN_INVALID', 'token names no subject (sub claim)', err);
        return tokenError(
          'ERR_TOKEN_INVALID',
          `token claim ${show(claim)} is ${reason === 'missing' ? 'missing' : 'invalid'}`,
          err,
        );
      }
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
        return tokenError(
          'ERR_TOKEN_ALG',
          `token algorithm is not accepted; expected one of ${ACCEPTED_ALGORITHMS.join(', ')}`,
          err,
        );
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return tokenError(
          'ERR_TOKEN_SIGNATURE',
          `token signature does not verify against the signing keys of ${discovery.issuer}`,
          err,
        );
      case 'ERR_JWKS_NO_MATCHING_KEY':
        return tokenError(
          'ERR_TOKEN_SIGNATURE',
          `token was signed with a key (kid ${show(kid)}) that ${discovery.issuer} does not publish`,
          err,
        );
      case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
        return tokenError(
          'ERR_TOKEN_SIGNATURE',
          `token names no key id (kid) and ${discovery.issuer} publishes several candidate keys`,
          err,
        );
      default:
        return tokenError('ERR_TOKEN_INVALID', 'token is not a well-formed signed JWT', err);
    }
  }

  #requireAdmin(
    payload: JWTPayload,
    issuer: string,
    adminValues: readonly string[] = this.#identity.adminValues,
  ): AdminIdentity {
    const subject = payload.sub;
    if (typeof subject !== 'string' || subject === '')
      throw tokenError('ERR_TOKEN_INVALID', 'token subject (sub claim) is not a non-empty string');
    const { adminClaim } = this.#identity;
    const held = claimValues(payload[adminClaim]);
    if (!held.some((value) => adminValues.includes(value))) {
      const found = payload[adminClaim] === undefined ? 'absent' : show(held);
      throw new ProxyctlError(
        'ERR_TOKEN_NOT_ADMIN',
        `token of ${show(subject)} does not carry the administrator role: claim ${adminClaim} is ${found}, expected one of ${adminValues.join(', ')}`,
        {
          status: 403,
          details: { subject },
        },
      );
    }
    const name =
      typeof payload['name'] === 'string'
        ? payload['name']
        : typeof payload['preferred_username'] === 'string'
          ? payload['preferred_username']
          : undefined;
    return { subject, name, issuer };
  }
}

/** Claims only an ID token carries (OIDC Core §2, §3.1.3.6, §3.3.2.11; FAPI s_hash). */
const ID_TOKEN_CLAIMS = ['nonce', 'at_hash', 'c_hash', 's_hash'] as const;

/**
 * A bearer token must be an access token, never an ID token: an ID token is issued to the
 * client (its audience is the app's client id, the same string an app's access tokens
 * carry), so anyone holding one from a sign-in could otherwise replay it to the app as an API
 * credential. The rule, applied after the signature, issuer, audience and expiry checks:
 *   1. `cnf` (a token bound to a DPoP key or client certificate) is refused: the relay checks
 *      no such proof, and honouring it as a plain bearer token would void the binding;
 *   2. header `typ` `at+jwt` / `application/at+jwt` (RFC 9068 §2.1, any case) is an access token;
 *   3. any other `typ` except `JWT` / `application/jwt` names another kind of JWT (an ID token
 *      typed as such, logout+jwt, secevent+jwt, dpop+jwt…) and is refused;
 *   4. an untyped or `JWT`-typed token is refused when it carries a claim only ID tokens have
 *      (nonce, at_hash, c_hash, s_hash), or a payload `typ` other than `Bearer` (Keycloak marks
 *      its ID tokens "ID", refresh tokens "Refresh").
 * Every ID token from the relay's own sign-ins carries the nonce the relay sent, so rule 4
 * stops those for certain. A provider that types neither kind and omits nonce and at_hash from
 * ID tokens cannot be told apart: have it issue RFC 9068 (at+jwt) access tokens.
 */
function requireAccessToken(header: JWTHeaderParameters, payload: JWTPayload): void {
  if (payload['cnf'] !== undefined) {
    throw tokenError(
      'ERR_TOKEN_TYPE',
      'token is bound to a key (cnf claim) whose proof the relay does not check; send an unbound access token',
    );
  }
  const typ = typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : undefined;
  if (typ === 'at+jwt') return;
  if (header.typ !== undefined && typ !== 'jwt') {
    throw tokenError(
      'ERR_TOKEN_TYPE',
      `token type (typ header) is ${show(header.typ)}; only access tokens (at+jwt) are accepted`,
    );
  }
  const idClaim = ID_TOKEN_CLAIMS.find((claim) => payload[claim] !== undefined);
  if (idClaim) {
    throw tokenError(
      'ERR_TOKEN_TYPE',
      `token is an ID token (it carries ${idClaim}); send an access token issued for this audience`,
    );
  }
  const bodyTyp = payload['typ'];
  if (bodyTyp !== undefined && (typeof bodyTyp !== 'string' || bodyTyp.toLowerCase() !== 'bearer')) {
    throw tokenError('ERR_TOKEN_TYPE', `token is of type ${show(bodyTyp)} (typ claim), not an access token`);
  }
}

/** Refuses what is plainly not an asymmetrically signed JWT before any network traffic; returns the header's kid. */
function checkShape(token: unknown): unknown {
  if (typeof token !== 'string' || token.length === 0) throw tokenError('ERR_TOKEN_INVALID', 'no token was presented');
  if (token.length > MAX_TOKEN_LENGTH)
    throw tokenError(
      'ERR_TOKEN_INVALID',
      `token is ${token.length} characters long, at most ${MAX_TOKEN_LENGTH} are accepted`,
    );
  if (token.split('.').length !== 3)
    throw tokenError('ERR_TOKEN_INVALID', 'token is not a signed JWT (expected three dot-separated parts)');
  let alg: unknown;
  let kid: unknown;
  try {
    ({ alg, kid } = decodeProtectedHeader(token));
  } catch (err) {
    throw tokenError('ERR_TOKEN_INVALID', 'token header is not base64url-encoded JSON', err);
  }
  if (typeof alg !== 'string' || alg === '')
    throw tokenError('ERR_TOKEN_INVALID', 'token header names no signing algorithm (alg)');
  if (!ACCEPTED.has(alg)) {
    throw tokenError(
      'ERR_TOKEN_ALG',
      `token algorithm ${show(alg)} is not accepted; expected one of ${ACCEPTED_ALGORITHMS.join(', ')}`,
    );
  }
  return kid;
}

async function fetchDiscovery(issuer: URL, now: () => number, fetch: typeof globalThis.fetch): Promise<Discovery> {
  // OpenID Connect Discovery 1.0 §4: the issuer with any terminating "/" removed, then the well-known path.
  const url = new URL(`${stripSlash(issuer.href)}/.well-known/openid-configuration`);
  let response: Response;
  let text: string;
  try {
    // Redirects are refused so that an https discovery can never be bounced to plain http.
    response = await fetch(url, {
      redirect: 'manual',
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
    const length = Number(response.headers.get('content-length') ?? 0);
    if (length > MAX_DISCOVERY_BYTES) {
      await response.body?.cancel();
      throw unavailable(url, `document is ${length} bytes, more than the ${MAX_DISCOVERY_BYTES} accepted`);
    }
    text = await response.text();
  } catch (err) {
    if (err instanceof ProxyctlError) throw err;
    throw unavailable(url, describeFailure(err), err);
  }
  if (response.status !== 200) throw unavailable(url, `answered HTTP ${response.status}, expected 200`);
  if (text.length > MAX_DISCOVERY_BYTES)
    throw unavailable(url, `document is larger than the ${MAX_DISCOVERY_BYTES} bytes accepted`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw unavailable(url, 'document is not JSON', err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw unavailable(url, 'document is not a JSON object');
  const { issuer: docIssuer, jwks_uri: jwksText } = doc as Record<string, unknown>;
  if (typeof docIssuer !== 'string') throw unavailable(url, 'document has no issuer');
  if (stripSlash(docIssuer) !== stripSlash(issuer.href)) {
    // Accepting another issuer's metadata would let one provider vouch for another (mix-up).
    throw new ProxyctlError(
      'ERR_IDP_ISSUER_MISMATCH',
      `discovery document at ${url.href} names issuer ${show(docIssuer)}, expected ${stripSlash(issuer.href)}`,
      {
        status: 502,
        details: { discoveryUrl: url.href },
      },
    );
  }
  if (typeof jwksText !== 'string') throw unavailable(url, 'document has no jwks_uri');
  let jwksUri: URL;
  try {
    jwksUri = new URL(jwksText);
  } catch (err) {
    throw unavailable(url, `jwks_uri ${show(jwksText)} is not a URL`, err);
  }
  requireSecureUrl(jwksUri, 'identity provider jwks_uri');
  return { issuer: docIssuer, jwksUri: jwksUri.href, fetchedAt: now() };
}

/** Plain http is tolerated only where nobody else can be on the wire: loopback. */
function requireSecureUrl(url: URL, what: string): void {
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return;
  throw new ProxyctlError(
    'ERR_IDP_INSECURE',
    `${what} ${url.href} must use https (http is accepted only on loopback addresses)`,
    {
      status: 502,
      details: { url: url.href },
    },
  );
}

function claimValues(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter((v) => v !== '');
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}

function tokenError(code: ErrorCode, message: string, cause?: unknown): ProxyctlError {
  return new ProxyctlError(code, message, { status: 401, cause });
}

function unavailable(url: URL, reason: string, cause?: unknown): ProxyctlError {
  return new ProxyctlError(
    'ERR_IDP_UNAVAILABLE',
    `cannot use the identity provider's discovery document ${url.href}: ${reason}`,
    {
      status: 503,
      cause,
      details: { discoveryUrl: url.href },
    },
  );
}

function hasJoseCode(err: unknown, code: string): boolean {
  return err instanceof joseErrors.JOSEError && err.code === code;
}

function describeFailure(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || hasJoseCode(err, 'ERR_JWKS_TIMEOUT'))) {
    return `no answer within ${FETCH_TIMEOUT_MS / 1000}s`;
  }
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    const detail =
      typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : undefined;
    return detail ? `${err.message} (${detail})` : err.message;
  }
  return String(err);
}

function stripSlash(text: string): string {
  return text.endsWith('/') ? text.slice(0, -1) : text;
}

/** Renders attacker-controlled claim values for a log line: bounded and free of control characters. */
function show(value: unknown): string {
  let text: string;
  if (value === undefined) text = 'missing';
  else if (typeof value === 'string') text = value;
  else if (Array.isArray(value) && value.every((v) => typeof v === 'string'))
    text = value.length === 0 ? '(empty)' : value.join(', ');
  else text = JSON.stringify(value) ?? typeof value; // undefined only for functions and symbols
  // eslint-disable-next-line no-control-regex
  text = text.replace(/[\u0000-\u001f\u007f]/g, '?');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

function formatTime(seconds: unknown): string {
  return typeof seconds === 'number' ? formatMs(seconds * 1000) : show(seconds);
}

function formatMs(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}
