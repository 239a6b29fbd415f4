// The embedded identity provider alone, behind the relay's real request path
// (admit() decides the client address, trusted proxies included), with an
// injectable clock, and a scripted browser that signs in at it as a relying
// party would send one: authorization request, login form, consent, callback.
import { createServer as createHttpsServer, type Server } from 'node:https';
import { connect as netConnect, type AddressInfo } from 'node:net';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as oidc from 'openid-client';
import { Agent, request, type Dispatcher } from 'undici';
import { parseRelayConfig, type RelayConfig } from '../../src/config/relay-config.js';
import { loadOrCreateCa } from '../../src/crypto/ca.js';
import { SERVER_TLS } from '../../src/crypto/tls-policy.js';
import { EmbeddedIdp } from '../../src/idp/provider.js';
import { clientAddress } from '../../src/relay/edge/client-address.js';
import { TrustedProxies } from '../../src/relay/edge/limits.js';
import { createRequestPath } from '../../src/relay/edge/request-path.js';
import { ensureServerCertificate } from '../../src/relay/edge/server-cert.js';
import { openSqliteStore, type Store, type UserRecord } from '../../src/store/index.js';
import { BrowserSim, type SimResponse } from './browser-sim.js';
import { relayYaml, testLogger } from './harness.js';

export interface IdpServer {
  idp: EmbeddedIdp;
  store: Store;
  config: RelayConfig;
  issuer: string;
  port: number;
  /** Trusts the relay CA; every host resolves to the listener. */
  client: Dispatcher;
  /** The same, with connections from another loopback address (127.0.0.2…). */
  clientFrom(localAddress: string): Dispatcher;
  addUser(username: string, password: string, extra?: Partial<UserRecord>): Promise<void>;
  /** Where the demo app's callback is; sign-ins stop there. */
  callbackUrl: string;
}

export interface IdpServerOptions {
  now?: () => number;
  /** YAML for `limits:` (e.g. trustedProxies). */
  limits?: string;
}

export async function startIdpServer(
  t: { teardown(fn: () => unknown): void },
  opts: IdpServerOptions = {},
): Promise<IdpServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-idp-'));
  const log = testLogger();
  const config = parseRelayConfig(
    relayYaml(
      undefined,
      `apps:
  - { name: demo, externalUrl: "https://demo.localhost/", internalUrl: "http://127.0.0.1:9/", assignment: any }
limits: { perIp: false${opts.limits ? `, ${opts.limits}` : ''} }
`,
    ),
    path.join(dir, 'relay.yaml'),
  );
  const ca = await loadOrCreateCa(config.dataDir);
  const store = openSqliteStore(config.dataDir);
  const tls = await ensureServerCertificate(config.dataDir, ca, 'public', [
    'login.localhost',
    'demo.localhost',
    '127.0.0.1',
  ]);
  const server: Server = createHttpsServer({ key: tls.keyPem, cert: tls.certPem, ...SERVER_TLS });
  const agents: Agent[] = [];
  t.teardown(async () => {
    await Promise.all(agents.map((a) => a.close().catch(() => undefined)));
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  const issuer = `https://login.localhost:${port}`;
  const idp = await EmbeddedIdp.create({
    issuer,
    dataDir: config.dataDir,
    users: store.users,
    artifacts: store.idpArtifacts,
    identity: config.identity,
    apps: config.apps,
    publicPort: port,
    log,
    clientAddress,
    ...(opts.now ? { now: opts.now } : {}),
  });
  const edge = { perIp: undefined, perApp: undefined, proxies: new TrustedProxies(config.limits.trustedProxies) };
  // Only the provider's host is exercised here: nothing reaches an app.
  const state = {
    generation: 1,
    config,
    edge,
    idp,
    verifier: undefined as never,
    oidc: undefined as never,
    authorizer: undefined as never,
  };
  const requestPath = createRequestPath({
    state: () => state,
    log,
    publicPort: () => port,
    queue: undefined as never,
    authentication: undefined as never,
    signIn: undefined as never,
    relayOwned: undefined as never,
    assertions: undefined as never,
  });
  server.on('request', (req, res) => void requestPath.handleRequest(req, res));
  const agent = (connect: Agent.Options['connect']): Agent => {
    const a = new Agent({ connect });
    agents.push(a);
    return a;
  };
  return {
    idp,
    store,
    config,
    issuer,
    port,
    client: agent({ ca: ca.certPem, lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) }),
    clientFrom: (localAddress) =>
      agent((o, cb) => {
        const raw = netConnect({ host: '127.0.0.1', port: Number(o.port), localAddress });
        const sock = tlsConnect({ socket: raw, servername: o.hostname, ca: ca.certPem, ALPNProtocols: ['http/1.1'] });
        sock.once('secureConnect', () => cb(null, sock));
        sock.once('error', (err: Error) => cb(err, null));
      }),
    async addUser(username, password, extra = {}) {
      await store.users.put(
        {
          username,
          passwordHash: cheapPasswordHash(password),
          email: null,
          name: null,
          groups: [],
          roles: [],
          totpSecret: null,
          createdAt: Date.now(),
          ...extra,
        },
        'test',
        'user.add',
      );
    },
    callbackUrl: `https://demo.localhost:${port}/.proxyctl/callback`,
  };
}

/** One browser signing in at the provider for the demo app. */
export class IdpBrowser {
  readonly sim: BrowserSim;
  readonly verifier = oidc.randomPKCECodeVerifier();

  constructor(
    private readonly s: IdpServer,
    client: Dispatcher = s.client,
  ) {
    this.sim = new BrowserSim(client);
  }

  /** Sends the authorization request (acr "mfa" asks for the second factor; scope as the relay's default) and returns the login page. */
  async open(opts: { mfa?: boolean; scope?: string; resource?: string } = {}): Promise<SimResponse> {
    const q = new URLSearchParams({
      client_id: this.s.config.apps[0]!.clientId,
      redirect_uri: this.s.callbackUrl,
      response_type: 'code',
      scope: opts.scope ?? 'openid profile email',
      state: 'st',
      nonce: 'no',
      code_challenge: await oidc.calculatePKCECodeChallenge(this.verifier),
      code_challenge_method: 'S256',
      ...(opts.mfa ? { acr_values: 'mfa' } : {}),
      ...(opts.resource ? { resource: opts.resource } : {}),
    });
    const page = await this.sim.follow(`${this.s.issuer}/auth?${q.toString()}`);
    if (!/<form/.test(page.body)) throw new Error(`no form: ${page.status} ${page.body.slice(0, 300)}`);
    return page;
  }

  /** Posts the first form of `page` as-is, from `from` (an X-Forwarded-For value) when given; no redirects followed. */
  async post(page: SimResponse, fields: Record<string, string>, from?: string): Promise<SimResponse> {
    const action = /<form[^>]*action="([^"]+)"/.exec(page.body)?.[1];
    if (!action) throw new Error(`no form at ${page.url}`);
    const url = new URL(action.replace(/&amp;/g, '&'), page.url).href;
    const r = await this.sim.get(url, {
      method: 'POST',
      body: new URLSearchParams(fields).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(from ? { 'x-forwarded-for': from } : {}) },
    });
    return { ...r, url };
  }

  /** A fresh login page, then the password: the provider's answer to the POST. */
  async login(username: string, password: string, from?: string): Promise<SimResponse> {
    return this.post(await this.open(), { username, password }, from);
  }

  /** Follows a successful POST's redirects (consent included) to the app's callback; returns its URL. */
  async toCallback(posted: SimResponse): Promise<URL> {
    const loc = posted.headers['location'];
    if (typeof loc !== 'string') throw new Error(`not a redirect: ${posted.status} ${posted.body.slice(0, 300)}`);
    const end = await this.sim.follow(new URL(loc, posted.url).href, (next) =>
      next.href.startsWith(this.s.callbackUrl),
    );
    const url = new URL(end.url);
    if (!url.href.startsWith(this.s.callbackUrl))
      throw new Error(`did not reach the callback: ${end.status} ${end.url} ${end.body.slice(0, 300)}`);
    return url;
  }

  /** Redeems the callback's code at the token endpoint; returns the ID token's claims (unverified: the relay verifies). */
  async idTokenClaims(callback: URL): Promise<Record<string, unknown>> {
    return (await this.tokens(callback)).id;
  }

  /** Redeems the callback's code; the claims of the ID token and, when it is a JWT, of the access token (both unverified). */
  async tokens(callback: URL): Promise<{ id: Record<string, unknown>; access: Record<string, unknown> | undefined }> {
    const res = await request(`${this.s.issuer}/token`, {
      method: 'POST',
      dispatcher: this.s.client,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: callback.searchParams.get('code') ?? '',
        redirect_uri: this.s.callbackUrl,
        client_id: this.s.config.apps[0]!.clientId,
        code_verifier: this.verifier,
      }).toString(),
    });
    const body = (await res.body.json()) as { id_token?: string; access_token?: string };
    if (!body.id_token) throw new Error(`no ID token: ${res.statusCode} ${JSON.stringify(body)}`);
    const claims = (jwt: string) =>
      JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
    const access =
      body.access_token && body.access_token.split('.').length === 3 ? claims(body.access_token) : undefined;
    return { id: claims(body.id_token), access };
  }
}

/**
 * A password hash in the provider's stored format (scrypt$N$r$p$salt$hash) at a low cost
 * (N = 1024): verifying it takes milliseconds instead of the production cost's ~100 ms,
 * so tests that try hundreds of passwords stay fast. The verifier reads the cost from the
 * hash, so the code under test is the same; production hashes use N = 32768.
 */
export function cheapPasswordHash(password: string): string {
  const salt = randomBytes(16);
  const key = scryptSync(password.normalize('NFC'), salt, 32, { N: 1024, r: 8, p: 1 });
  return `scrypt$1024$8$1$${salt.toString('base64url')}$${key.toString('base64url')}`;
}
