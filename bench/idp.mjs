// A real OpenID provider (oidc-provider@8) on 127.0.0.1, for the benchmark's one
// connector registration and the realistic app's bearer token. Plain-JS twin of
// test/helpers/idp.ts (which is TypeScript and not built into dist/):
// client_credentials + resource indicators, ES256 JWT access tokens carrying a
// `roles` or a `groups` claim.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

const CLIENT_PREFIX = 'proxyctl-bench.';

/** The claims a client's tokens carry ({ roles, groups }) are spelled in its id, so any set is a client. */
function clientIdFor(claims) {
  return CLIENT_PREFIX + Buffer.from(JSON.stringify(claims)).toString('base64url');
}

function claimsOf(clientId) {
  if (typeof clientId !== 'string' || !clientId.startsWith(CLIENT_PREFIX)) return undefined;
  const strings = (v) => v === undefined || (Array.isArray(v) && v.every((r) => typeof r === 'string'));
  try {
    const claims = JSON.parse(Buffer.from(clientId.slice(CLIENT_PREFIX.length), 'base64url').toString('utf8'));
    if (typeof claims !== 'object' || claims === null || !strings(claims.roles) || !strings(claims.groups))
      return undefined;
    return claims;
  } catch {
    return undefined;
  }
}

/** Per-provider storage; clients are resolved on demand from their id. */
function adapterFor(clientSecret) {
  const store = new Map();
  return class BenchAdapter {
    constructor(model) {
      this.model = model;
    }

    key(id) {
      return `${this.model}:${id}`;
    }

    async find(id) {
      if (this.model === 'Client') {
        if (claimsOf(id) === undefined) return undefined;
        return {
          client_id: id,
          client_secret: clientSecret,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'client_secret_post',
        };
      }
      return store.get(this.key(id));
    }

    async upsert(id, payload) {
      store.set(this.key(id), payload);
    }

    async consume(id) {
      const payload = store.get(this.key(id));
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id) {
      store.delete(this.key(id));
    }

    async findByUid() {
      return undefined;
    }

    async findByUserCode() {
      return undefined;
    }

    async revokeByGrantId() {}
  };
}

async function signingJwk(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return {
    ...(await exportJWK(privateKey)),
    kid: `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}`,
    alg,
    use: 'sig',
  };
}

/** Starts the provider; resolves with { issuer, adminToken(), appToken(), close() }. */
export async function startIdp() {
  const [es256, rs256] = await Promise.all([signingJwk('ES256'), signingJwk('RS256')]);
  const clientSecret = randomBytes(24).toString('base64url');
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    adapter: adapterFor(clientSecret),
    jwks: { keys: [es256, rs256] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    findAccount: async () => undefined,
    clientBasedCORS: () => false,
    ttl: { ClientCredentials: 600, AccessToken: 600 },
    routes: { token: '/token', jwks: '/jwks' },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => ({
          scope: 'proxyctl.admin',
          audience: resourceIndicator,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      const claims = claimsOf(token.clientId);
      if (claims === undefined) return undefined;
      return {
        ...(claims.roles ? { roles: claims.roles } : {}),
        ...(claims.groups ? { groups: claims.groups } : {}),
      };
    },
  });
  handler = provider.callback();

  /** An access token for the administration API (audience api://proxyctl) carrying `roles`. */
  function adminToken({ roles = ['ProxyAdministrator'], audience = 'api://proxyctl' } = {}) {
    return accessToken({ roles }, audience, 'proxyctl.admin');
  }

  /** An access token for an app (audience: its client id) whose `groups` claim names `groups`: a native client's bearer token. */
  function appToken({ groups = [], audience }) {
    return accessToken({ groups }, audience, 'proxyctl.admin');
  }

  async function accessToken(claims, audience, scope) {
    const response = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: clientIdFor(claims),
        client_secret: clientSecret,
        resource: audience,
        scope,
      }),
    });
    const body = await response.json();
    if (response.status !== 200 || typeof body.access_token !== 'string') {
      throw new Error(`bench IdP token endpoint answered ${response.status}: ${body.error} ${body.error_description}`);
    }
    return body.access_token;
  }

  async function close() {
    const closed = new Promise((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  return { issuer, adminToken, appToken, close };
}
