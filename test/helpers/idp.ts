// A real OpenID provider (oidc-provider@8) running in-process with keys fresh per run, so token
// tests exercise genuine discovery, JWKS and token-endpoint behaviour rather than mocks.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import Provider from 'oidc-provider';

export interface TestIdp {
  /** `http://127.0.0.1:<port>`, exactly as the provider puts it in discovery and tokens. */
  issuer: string;
  /** A genuine access token from the token endpoint (client_credentials + resource indicator). */
  adminToken(opts?: { roles?: string[]; audience?: string }): Promise<string>;
  /** Signs arbitrary claims with the provider's own private key (ES256 by default, or RS256); typ is JWT unless given (null: none). */
  signToken(
    claims: Record<string, unknown>,
    header?: { alg?: string; kid?: string; typ?: string | null },
  ): Promise<string>;
  /** The provider's private signing JWKs (ES256 first, then RS256), each with its kid. */
  jwks: { keys: object[] };
  /** Registers a web client (an app at the relay) for the authorization code flow. */
  registerClient(c: {
    clientId: string;
    clientSecret: string;
    redirectUris: string[];
    postLogoutRedirectUris?: string[];
  }): void;
  /**
   * Adds or replaces a user that can sign in with the login form (any password). `email_verified`
   * is true when an email is given, unless set (null: the claim is left out).
   */
  setUser(sub: string, claims: UserClaims): void;
  close(): Promise<void>;
}

/** Claims as the provider sends them; values are deliberately loose so tests can send hostile shapes. */
export interface UserClaims {
  email?: string;
  email_verified?: unknown;
  name?: string;
  preferred_username?: string;
  upn?: string;
  groups?: unknown;
}

export interface StartIdpOptions {
  /** Listen on this port instead of an ephemeral one, e.g. to bring up an issuer a verifier already knows. */
  port?: number;
}

interface OidcProvider {
  callback(): http.RequestListener;
}
type OidcProviderClass = new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;

interface SigningKey {
  readonly alg: 'ES256' | 'RS256';
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly jwk: JWK;
}

// Roles are encoded in the client id (`proxyctl-test.<base64url(JSON roles)>`) and clients are
// resolved on demand by the adapter, so any role set gets a real client without pre-registration.
const CLIENT_PREFIX = 'proxyctl-test.';

function clientIdFor(roles: readonly string[]): string {
  return CLIENT_PREFIX + Buffer.from(JSON.stringify(roles)).toString('base64url');
}

function rolesOf(clientId: unknown): string[] | undefined {
  if (typeof clientId !== 'string' || !clientId.startsWith(CLIENT_PREFIX)) return undefined;
  try {
    const roles: unknown = JSON.parse(Buffer.from(clientId.slice(CLIENT_PREFIX.length), 'base64url').toString('utf8'));
    return Array.isArray(roles) && roles.every((r) => typeof r === 'string') ? roles : undefined;
  } catch {
    return undefined;
  }
}

/** Per-provider storage (the built-in memory adapter is process-global and warns on use). */
function adapterFor(
  clientSecret: string,
  webClients: Map<string, Record<string, unknown>>,
): new (model: string) => object {
  const store = new Map<string, Record<string, unknown>>();
  return class TestAdapter {
    readonly #model: string;
    constructor(model: string) {
      this.#model = model;
    }

    #key(id: string): string {
      return `${this.#model}:${id}`;
    }

    async find(id: string): Promise<Record<string, unknown> | undefined> {
      if (this.#model === 'Client') {
        const web = webClients.get(id);
        if (web) return web;
        if (rolesOf(id) === undefined) return undefined;
        return {
          client_id: id,
          client_secret: clientSecret,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_post',
        };
      }
      return store.get(this.#key(id));
    }

    async upsert(id: string, payload: Record<string, unknown>): Promise<void> {
      store.set(this.#key(id), payload);
    }

    async consume(id: string): Promise<void> {
      const payload = store.get(this.#key(id));
      if (payload) payload['consumed'] = Math.floor(Date.now() / 1000);
    }

    async destroy(id: string): Promise<void> {
      store.delete(this.#key(id));
    }

    async findByUid(uid: string): Promise<Record<string, unknown> | undefined> {
      for (const [key, value] of store) if (key.startsWith(`${this.#model}:`) && value['uid'] === uid) return value;
      return undefined;
    }

    async findByUserCode(): Promise<undefined> {
      return undefined;
    }

    async revokeByGrantId(): Promise<void> {}
  };
}

async function signingKey(alg: 'ES256' | 'RS256'): Promise<SigningKey> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const kid = `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`;
  const jwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  return { alg, kid, privateKey, jwk };
}

export async function startIdp(options: StartIdpOptions = {}): Promise<TestIdp> {
  const [es256, rs256] = await Promise.all([signingKey('ES256'), signingKey('RS256')]);
  const clientSecret = randomBytes(24).toString('base64url');
  const webClients = new Map<string, Record<string, unknown>>();
  const users = new Map<string, UserClaims>();
  const claimsOf = (u: UserClaims): Record<string, unknown> => {
    const out: Record<string, unknown> = { ...u };
    if (!('email_verified' in u) && u.email !== undefined) out['email_verified'] = true;
    for (const [k, v] of Object.entries(out)) if (v === null || v === undefined) delete out[k];
    return out;
  };

  // The issuer needs the port, so the server listens first and gets the provider's handler after.
  let handler: http.RequestListener = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new (Provider as unknown as OidcProviderClass)(issuer, {
    adapter: adapterFor(clientSecret, webClients),
    conformIdTokenClaims: false,
    // auth_time and sid as standalone claims: ID tokens carry them, as most providers' do.
    claims: {
      openid: ['sub', 'amr', 'acr'],
      auth_time: null,
      sid: null,
      email: ['email', 'email_verified'],
      profile: ['name', 'groups', 'preferred_username', 'upn'],
    },
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    jwks: { keys: [es256.jwk, rs256.jwk] },
    // Set explicitly only to keep oidc-provider's development-default warnings out of test output.
    cookies: { keys: [randomBytes(32).toString('hex')] },
    findAccount: async (_ctx: unknown, id: string) => {
      const u = users.get(id);
      return u && { accountId: id, claims: async () => ({ ...claimsOf(u), sub: id }) };
    },
    clientBasedCORS: () => false,
    ttl: {
      ClientCredentials: 600,
      AccessToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      IdToken: 600,
      AuthorizationCode: 60,
    },
    routes: { token: '/token', jwks: '/jwks' },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resourceIndicator: string) => ({
          scope: 'proxyctl.admin',
          audience: resourceIndicator,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: async (_ctx: unknown, token: { clientId?: unknown; accountId?: unknown; sid?: unknown }) => {
      const roles = rolesOf(token.clientId);
      if (roles !== undefined) return { roles };
      // A user's access token (code flow with a resource) carries who and, like Keycloak's, the provider session id.
      const u = typeof token.accountId === 'string' ? users.get(token.accountId) : undefined;
      return u && { ...claimsOf(u), sid: token.sid };
    },
  });
  // Like Keycloak or Entra ID, name the provider session (sid) in every client's tokens;
  // oidc-provider itself does so only for clients registered for back-channel logout.
  (provider as unknown as { Client: { prototype: { includeSid(): boolean } } }).Client.prototype.includeSid = () =>
    true;
  const oidcHandler = provider.callback();
  const full = provider as unknown as InteractionApi;
  // A minimal login form: username (must be a known user), password (any), optional "mfa" box.
  handler = (req, res) => {
    const m = /^\/interaction\/([\w-]+)(\/login)?$/.exec((req.url ?? '').split('?')[0] ?? '');
    if (!m) return oidcHandler(req, res);
    void (async () => {
      try {
        const details = await full.interactionDetails(req, res);
        if (req.method === 'GET') {
          if (details.prompt.name === 'consent') {
            await finishConsent(full, req, res, details);
            return;
          }
          res.writeHead(200, { 'content-type': 'text/html' });
          res.end(`<!doctype html><title>Test IdP login</title><form method="post" action="/interaction/${details.uid}/login">
<input name="username" id="username"><input name="password" id="password" type="password"><label><input type="checkbox" name="mfa" id="mfa" value="1">mfa</label>
<button type="submit" id="submit">Sign in</button></form>`);
          return;
        }
        const form = new URLSearchParams(await readBody(req));
        const username = form.get('username') ?? '';
        if (!users.has(username)) {
          res.writeHead(401, { 'content-type': 'text/plain' });
          res.end('unknown user');
          return;
        }
        const amr = form.get('mfa') ? ['pwd', 'mfa'] : ['pwd'];
        await full.interactionFinished(
          req,
          res,
          { login: { accountId: username, amr, acr: form.get('mfa') ? 'mfa' : 'pwd' } },
          { mergeWithLastSubmission: false },
        );
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`interaction failed: ${(err as Error).message}`);
      }
    })();
  };

  async function adminToken(opts: { roles?: string[]; audience?: string } = {}): Promise<string> {
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: clientIdFor(opts.roles ?? ['ProxyAdministrator']),
        client_secret: clientSecret,
        resource: opts.audience ?? 'api://proxyctl',
        scope: 'proxyctl.admin',
      }),
    });
    const body = (await response.json()) as { access_token?: unknown; error?: unknown; error_description?: unknown };
    if (response.status !== 200 || typeof body.access_token !== 'string') {
      throw new Error(
        `test IdP token endpoint answered ${response.status}: ${String(body.error)} ${String(body.error_description)}`,
      );
    }
    return body.access_token;
  }

  async function signToken(
    claims: Record<string, unknown>,
    header: { alg?: string; kid?: string; typ?: string | null } = {},
  ): Promise<string> {
    const alg = header.alg ?? 'ES256';
    const key = alg === es256.alg ? es256 : alg === rs256.alg ? rs256 : undefined;
    if (!key) throw new Error(`test IdP signs only with ES256 or RS256, not ${alg}`);
    const typ = header.typ === undefined ? 'JWT' : header.typ;
    return new SignJWT(claims)
      .setProtectedHeader({ alg, kid: header.kid ?? key.kid, ...(typ === null ? {} : { typ }) })
      .sign(key.privateKey);
  }

  async function close(): Promise<void> {
    const closed = new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    server.closeAllConnections();
    await closed;
  }

  function registerClient(c: {
    clientId: string;
    clientSecret: string;
    redirectUris: string[];
    postLogoutRedirectUris?: string[];
  }): void {
    webClients.set(c.clientId, {
      client_id: c.clientId,
      client_secret: c.clientSecret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: c.redirectUris,
      post_logout_redirect_uris: c.postLogoutRedirectUris ?? [],
      token_endpoint_auth_method: 'client_secret_basic',
      // ID tokens say when the user authenticated, as Keycloak's and Entra ID's always do.
      require_auth_time: true,
    });
  }

  function setUser(sub: string, claims: UserClaims): void {
    users.set(sub, claims);
  }

  return { issuer, adminToken, signToken, jwks: { keys: [es256.jwk, rs256.jwk] }, registerClient, setUser, close };
}

interface InteractionDetails {
  uid: string;
  prompt: { name: string; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string };
  grantId?: string;
}
interface GrantLike {
  addOIDCScope(scope: string): void;
  addOIDCClaims(claims: string[]): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}
interface InteractionApi {
  interactionDetails(req: http.IncomingMessage, res: http.ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    result: Record<string, unknown>,
    options?: Record<string, unknown>,
  ): Promise<void>;
  Grant: new (init: { accountId: string; clientId: string }) => GrantLike;
}

const param = (v: unknown): string => (typeof v === 'string' ? v : '');

async function finishConsent(
  p: InteractionApi,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  details: InteractionDetails,
): Promise<void> {
  // Consent is implied for the relay's clients: grant what was asked for.
  const grant = new p.Grant({ accountId: details.session!.accountId!, clientId: String(details.params['client_id']) });
  grant.addOIDCScope(param(details.params['scope']) || 'openid');
  grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups', 'preferred_username', 'upn']);
  // A resource (an app's client id) asked for at authorization gets a JWT access token (at+jwt).
  if (param(details.params['resource']))
    grant.addResourceScope(param(details.params['resource']), param(details.params['scope']) || 'openid');
  const grantId = await grant.save();
  await p.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (d: Buffer) => (text += d.toString()));
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}
