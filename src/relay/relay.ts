// The relay process: provision (data dir, CA, store, certificates) → start
// (listeners, heartbeats, revocation watch) → close (drain, idempotent).
// Reload swaps one config reference; work in flight keeps the one it began with.
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { loadOrCreateCa, type RelayCa } from '../crypto/ca.js';
import type { RelayConfig } from '../config/relay-config.js';
import { ProxyctlError } from '../errors.js';
import type { Logger } from '../log.js';
import { CLOSE, type RegisterRequest, type RegisterResponse } from '../protocol/connector-api.js';
import { issueConnectorIdentity } from './connectors/registration.js';
import { AdminTokenVerifier } from './auth/admin-token.js';
import { ChannelRegistry } from './connectors/channels.js';
import { createConnectorApi } from './connectors/connector-api.js';
import { groupConfigVersion } from './connectors/connector-config.js';
import { ensureServerCertificate, type ServerCertificate } from './edge/server-cert.js';
import { DataPlane } from './connectors/data-plane.js';
import { RequestQueue } from './connectors/queue.js';
import { createRequestPath } from './edge/request-path.js';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { TlsStore } from './edge/tls-store.js';
import { ConnectionCap, RateLimiter, TrustedProxies } from './edge/limits.js';
import type { EdgeLimits } from './edge/request-path.js';
import { KeyRing } from '../crypto/keyring.js';
import { AssertionSigner } from './auth/assertion.js';
import { Authenticator } from './auth/authenticator.js';
import { OidcClients } from './auth/oidc-client.js';
import { CLI_CLIENT_ID, EmbeddedIdp } from '../idp/provider.js';
import { LoginThrottle } from '../idp/throttle.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { Store } from './store.js';
import { SERVER_TLS } from '../crypto/tls-policy.js';
import { parserRefusal, renderRaw } from '../http/render.js';

export interface RelayOptions {
  log: Logger;
  now?: () => number;
  /** How often the store is checked for changes made by other processes. */
  storeWatchMs?: number;
}

export class Relay {
  private config: RelayConfig;
  private connectorApi: Server | undefined;
  private publicServer: Server | undefined;
  private publicHosts = '';
  private tlsStore: TlsStore | undefined;
  private edge: EdgeLimits;
  private relayIssued: SecureContext | undefined;
  readonly queue: RequestQueue;
  private readonly dataPlane: DataPlane;
  private ring: KeyRing;
  private readonly assertions: AssertionSigner;
  private oidc: OidcClients;
  private idp: EmbeddedIdp | undefined;
  /** Failed sign-ins, kept across rebuilds of the embedded provider on reload. */
  private loginThrottle: LoginThrottle | undefined;
  private loopbackAgent: Agent | undefined;
  readonly auth: Authenticator;
  private watchTimer: NodeJS.Timeout | undefined;
  private lastDataVersion = -1;
  private closing: Promise<void> | undefined;
  readonly channels: ChannelRegistry;

  private constructor(
    config: RelayConfig,
    readonly store: Store,
    readonly ca: RelayCa,
    private verifier: TokenVerifier,
    ring: KeyRing,
    private readonly options: RelayOptions,
  ) {
    this.ring = ring;
    this.config = config;
    this.channels = new ChannelRegistry(options.log, {
      onSeen: (ch) => {
        try {
          this.store.touch(ch.connectorId, ch.version, this.now());
        } catch (err) {
          options.log.warn({ connector_id: ch.connectorId, err: (err as Error).message }, 'cannot record heartbeat');
        }
      },
    });
    this.edge = edgeLimitsFor(config);
    this.queue = new RequestQueue(this.channels, options.log);
    this.dataPlane = new DataPlane(this.queue, options.log, () => this.config);
    this.assertions = new AssertionSigner(() => this.ring);
    this.oidc = new OidcClients({
      issuer: () => this.issuer(),
      clockSkewMs: config.identity.clockSkewMs,
      scopes: config.identity.scopes,
    });
    this.auth = new Authenticator({
      store: this.store,
      ring: () => this.ring,
      oidc: this.oidc,
      verifyBearer: (token, audience) => this.verifier.verifyAccessToken(token, audience),
      identity: () => this.config.identity,
      access: () => this.config.access,
      log: options.log,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  get keyRing(): KeyRing {
    return this.ring;
  }

  /** The identity provider's issuer URL: the configured one, or the embedded provider's. */
  issuer(): URL {
    const issuer = this.config.identity.issuer ?? (this.idp ? new URL(this.idp.issuer) : undefined);
    if (!issuer) throw new ProxyctlError('ERR_IDP_UNAVAILABLE', 'the identity provider is not ready yet', { status: 503 });
    return issuer;
  }

  get embeddedIdp(): EmbeddedIdp | undefined {
    return this.idp;
  }

  /** Reaches the embedded provider through our own public listener, trusting our CA. */
  private loopbackFetch(): typeof fetch {
    const target = ['0.0.0.0', '::', ''].includes(this.config.public.host) ? '127.0.0.1' : this.config.public.host;
    this.loopbackAgent ??= new Agent({
      connect: { ca: this.ca.certPem, lookup: (_h, _o, cb) => cb(null, [{ address: target, family: target.includes(':') ? 6 : 4 }]) },
    });
    const dispatcher = this.loopbackAgent;
    return ((input: string | URL | Request, init?: RequestInit) =>
      undiciFetch(input as string, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
  }

  private async startEmbeddedIdp(cfg: RelayConfig): Promise<void> {
    const port = this.publicAddress().port;
    const issuer = `https://${cfg.identity.embedded.host}${port === 443 ? '' : `:${port}`}`;
    this.loginThrottle ??= new LoginThrottle({ now: () => this.now() });
    this.idp = await EmbeddedIdp.create({
      issuer, dataDir: cfg.dataDir, store: this.store, identity: cfg.identity, apps: cfg.apps, publicPort: port, log: this.options.log,
      throttle: this.loginThrottle, ...(this.options.now ? { now: this.options.now } : {}),
    });
    const fetchFn = this.loopbackFetch();
    this.verifier = new AdminTokenVerifier({ ...cfg.identity, issuer: new URL(issuer) }, { fetch: fetchFn, ...(this.options.now ? { now: this.options.now } : {}) });
    this.oidc = new OidcClients({ issuer: () => this.issuer(), clockSkewMs: cfg.identity.clockSkewMs, scopes: cfg.identity.scopes, fetch: fetchFn });
    this.auth.setOidc(this.oidc);
    this.options.log.info({ issuer }, 'embedded identity provider ready');
  }

  /** Provision: data directory, CA, store. Nothing listens yet. */
  static async create(config: RelayConfig, options: RelayOptions): Promise<Relay> {
    const ca = await loadOrCreateCa(config.dataDir);
    const store = Store.open(config.dataDir);
    const verifier = makeVerifier(config, options);
    const ring = await KeyRing.load(store);
    return new Relay(config, store, ca, verifier, ring, options);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  get currentConfig(): RelayConfig {
    return this.config;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    const hosts = [cfg.connectorApi.url.hostname.replace(/^\[|\]$/g, ''), 'localhost', '127.0.0.1', '::1'];
    const tls = await ensureServerCertificate(cfg.dataDir, this.ca, 'connector-api', hosts);
    this.connectorApi = createConnectorApi(
      {
        config: () => this.config, store: this.store, ca: this.ca, verifier: { verify: (t) => this.verifier.verify(t) },
        channels: this.channels, dataPlane: this.dataPlane, log: this.options.log, now: () => this.now(),
        identityInfo: () => ({
          issuer: this.issuer().href.replace(/\/$/, ''),
          cliClientId: this.idp ? CLI_CLIENT_ID : undefined,
          adminAudience: this.config.identity.adminAudience,
        }),
      },
      tls,
    );
    await listen(this.connectorApi, cfg.connectorApi.host, cfg.connectorApi.port);
    await this.startPublic(cfg);
    this.channels.startHeartbeat(cfg.connectors.heartbeatIntervalMs);
    this.lastDataVersion = this.store.dataVersion();
    this.watchTimer = setInterval(() => this.watchStore(), this.options.storeWatchMs ?? 500);
    this.watchTimer.unref();
    this.options.log.info({ listen: this.connectorApiAddress(), data_dir: cfg.dataDir }, 'connector API listening');
  }

  private hostsFor(cfg: RelayConfig): string[] {
    const hosts = new Set(['localhost', '127.0.0.1', '::1']);
    for (const app of cfg.apps) hosts.add(app.host);
    if (!cfg.identity.issuer) hosts.add(cfg.identity.embedded.host);
    return [...hosts].sort();
  }

  private async startPublic(cfg: RelayConfig): Promise<void> {
    const tls = await this.issuePublicCertificate(cfg);
    this.tlsStore = new TlsStore(this.relayIssued!, cfg.apps, deviceCa(cfg).ca);
    const server = createHttpsServer({
      key: tls.keyPem,
      cert: tls.certPem,
      ...SERVER_TLS,
      SNICallback: (name, cb) => cb(null, this.tlsStore?.contextFor(name)),
      // Device certificates (Conditional Access) are optional at the TLS layer; policies decide.
      ...(cfg.devices ? { requestCert: true, rejectUnauthorized: false, ca: cfg.devices.caPem } : {}),
      noDelay: true,
      headersTimeout: cfg.limits.headersTimeoutMs,
      // Node checks header/request timeouts on this interval (default 30 s: too coarse for slowloris).
      connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(cfg.limits.headersTimeoutMs / 2))),
      requestTimeout: cfg.limits.requestTimeoutMs, // 0 by default: long transfers are legitimate; idle ones are cut below
      keepAliveTimeout: cfg.limits.idleTimeoutMs,
      maxHeaderSize: cfg.limits.maxHeaderBytes,
    });
    server.setTimeout(Math.max(cfg.limits.idleTimeoutMs, cfg.limits.bodyIdleTimeoutMs) + 5_000, (socket) => socket.destroy());
    new ConnectionCap(cfg.limits.connectionsPerIp, (address) => this.options.log.warn({ client: address }, 'too many connections from one address; refused')).attach(server);
    const path = createRequestPath({
      config: () => this.config, queue: this.queue, auth: this.auth, assertions: this.assertions,
      publicPort: () => this.publicAddress().port, log: this.options.log,
      identityProvider: () => this.idp, limits: () => this.edge,
    });
    server.on('request', (req, res) => void path.handleRequest(req, res));
    server.on('upgrade', (req, socket, head) => void path.handleUpgrade(req, socket, head));
    server.on('tlsClientError', (err: Error) => this.options.log.debug({ err: err.message }, 'public TLS handshake failed'));
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      // Requests the HTTP parser refuses never reach the request path: answer with the right status and close.
      if (!socket.writable || err.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      // Bytes after a close-refusal are not read as requests, nor answered: the refusal was the last answer.
      if (path.isClosing(socket)) {
        socket.end();
        return;
      }
      const refusal = parserRefusal(err.code);
      const requestId = randomUUID();
      this.options.log.info({ request_id: requestId, client: (socket as { remoteAddress?: string }).remoteAddress, code: err.code, status: refusal.status }, 'request refused by the HTTP parser');
      renderRaw(socket, refusal, requestId);
    });
    this.publicServer = server;
    await listen(server, cfg.public.host, cfg.public.port);
    if (!cfg.identity.issuer) await this.startEmbeddedIdp(cfg);
    this.options.log.info({ listen: this.publicAddress() }, 'public listener ready');
  }

  publicAddress(): { host: string; port: number } {
    const addr = this.publicServer?.address() as AddressInfo | null;
    if (!addr) throw new Error('public listener is not listening');
    return { host: addr.address, port: addr.port };
  }

  connectorApiAddress(): { host: string; port: number } {
    const addr = this.connectorApi?.address() as AddressInfo | null;
    if (!addr) throw new Error('connector API is not listening');
    return { host: addr.address, port: addr.port };
  }

  /** Revocations made by another process (the admin CLI) reach open channels here. */
  private watchStore(): void {
    try {
      const v = this.store.dataVersion();
      if (v === this.lastDataVersion) return;
      this.lastDataVersion = v;
      this.store.bumpGeneration();
      this.enforceRevocations();
      // Keys rotated by the admin CLI take effect without a restart.
      KeyRing.load(this.store).then((r) => (this.ring = r), (err: unknown) => this.options.log.error({ err: (err as Error).message }, 'cannot reload keys'));
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'store watch failed');
    }
  }

  enforceRevocations(): void {
    const open = this.channels.all();
    const revoked = this.store.revokedAmong(open.map((c) => c.serial));
    const connectors = new Set(open.filter((c) => revoked.has(c.serial)).map((c) => c.connectorId));
    for (const id of connectors) {
      const n = this.channels.revoke(id, 'connector revoked by an administrator');
      this.queue.failConnector(id);
      this.options.log.warn({ connector_id: id, channels: n }, 'connector revoked; channels closed');
    }
  }

  /** Registration by the relay's owner in-process (the demo): no token, recorded as `actor`. */
  registerLocal(request: RegisterRequest, actor: string): Promise<RegisterResponse> {
    return issueConnectorIdentity({ ca: this.ca, store: this.store, config: () => this.config, log: this.options.log, now: () => this.now() }, request, `local:${actor}`);
  }

  /** Revokes a connector in the store and cuts its channels at once. */
  revokeConnector(idOrName: string, actor: string): void {
    const c = this.store.revokeConnector(idOrName, actor, this.now());
    this.channels.revoke(c.id, 'connector revoked by an administrator');
    this.queue.failConnector(c.id);
  }

  /**
   * Swaps in a validated config. Listener addresses and the data directory are
   * fixed for the life of the process; a change to them needs a restart.
   */
  async reload(next: RelayConfig): Promise<{ restartNeeded: string[] }> {
    const prev = this.config;
    const restartNeeded: string[] = [];
    if (next.dataDir !== prev.dataDir) restartNeeded.push('dataDir');
    if (next.connectorApi.host !== prev.connectorApi.host || next.connectorApi.port !== prev.connectorApi.port) restartNeeded.push('connectorApi.listen');
    if (next.public.host !== prev.public.host || next.public.port !== prev.public.port) restartNeeded.push('public.listen');
    if (JSON.stringify(next.devices) !== JSON.stringify(prev.devices)) restartNeeded.push('devices');
    for (const k of ['headersTimeoutMs', 'idleTimeoutMs', 'requestTimeoutMs', 'maxHeaderBytes', 'connectionsPerIp'] as const) {
      if (next.limits[k] !== prev.limits[k]) restartNeeded.push(`limits.${k.replace(/Ms$/, '')}`);
    }
    // Certificates for new hosts first, so the new routes answer with a valid certificate at once.
    await this.refreshPublicCertificate(next);
    const identityChanged = JSON.stringify(next.identity) !== JSON.stringify(prev.identity);
    if (identityChanged && next.identity.issuer) this.verifier = makeVerifier(next, this.options);
    if (!!next.identity.issuer !== !!prev.identity.issuer) restartNeeded.push('identity.issuer');
    if (JSON.stringify(next.limits) !== JSON.stringify(prev.limits)) this.edge = edgeLimitsFor(next);
    // One reference swap: requests already running keep the config they started with.
    this.config = next;
    // The embedded provider's clients follow the apps: rebuild it (users, keys and sessions live in the store).
    if (this.idp && !next.identity.issuer && (identityChanged || JSON.stringify(next.apps) !== JSON.stringify(prev.apps))) {
      await this.startEmbeddedIdp(next).catch((err: unknown) => this.options.log.error({ err: (err as Error).message }, 'cannot rebuild the embedded identity provider'));
    } else {
      this.idp?.reloadUsers();
    }
    if (next.connectors.heartbeatIntervalMs !== prev.connectors.heartbeatIntervalMs) this.channels.startHeartbeat(next.connectors.heartbeatIntervalMs);
    this.announceConfigChange(prev);
    return { restartNeeded };
  }

  /** The relay-CA certificate for every published host (reused from the data directory when still right). */
  private async issuePublicCertificate(cfg: RelayConfig): Promise<ServerCertificate> {
    const hosts = this.hostsFor(cfg);
    const tls = await ensureServerCertificate(cfg.dataDir, this.ca, 'public', hosts);
    this.relayIssued = createSecureContext({ key: tls.keyPem, cert: tls.certPem, ...SERVER_TLS, ...deviceCa(cfg) });
    this.publicHosts = hosts.join(',');
    return tls;
  }

  /** New app hosts get a certificate, custom certificates are re-read; open connections keep theirs. */
  private async refreshPublicCertificate(cfg: RelayConfig): Promise<void> {
    if (!this.publicServer || !this.relayIssued) return;
    const hosts = this.hostsFor(cfg);
    if (hosts.join(',') !== this.publicHosts) {
      try {
        const tls = await this.issuePublicCertificate(cfg);
        this.publicServer.setSecureContext({ key: tls.keyPem, cert: tls.certPem, ...SERVER_TLS, ...deviceCa(cfg) });
      } catch (err) {
        this.options.log.error({ err: (err as Error).message }, 'cannot issue a certificate for the new hosts');
      }
    }
    this.tlsStore = new TlsStore(this.relayIssued, cfg.apps, deviceCa(cfg).ca);
  }

  private announceConfigChange(prev: RelayConfig): void {
    let told = 0;
    for (const ch of this.channels.all()) {
      const v = groupConfigVersion(this.config, ch.group);
      if (v !== groupConfigVersion(prev, ch.group)) {
        ch.send({ type: 'config-changed', configVersion: v });
        told++;
      }
    }
    this.options.log.info({ channels_told: told }, 'configuration reloaded');
  }

  /** Idempotent; safe after a partial start. Tells connectors to reconnect elsewhere. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.watchTimer) clearInterval(this.watchTimer);
    const pub = this.publicServer;
    if (pub) {
      // Stop taking users, let requests in flight finish (bounded), then close channels.
      const closed = new Promise<void>((resolve) => pub.close(() => resolve()));
      pub.closeIdleConnections();
      const deadline = Date.now() + 10_000;
      while (this.queue.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      this.queue.abortAll();
      pub.closeAllConnections();
      await closed;
    }
    this.channels.closeAll(CLOSE.shutdown, 'relay shutting down');
    const server = this.connectorApi;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => {
          this.channels.terminateAll();
          server.closeAllConnections();
        }, 2000).unref();
      });
    }
    this.channels.terminateAll();
    await this.loopbackAgent?.close().catch(() => undefined);
    this.store.close();
  }
}

type TokenVerifier = Pick<AdminTokenVerifier, 'verify' | 'verifyAccessToken'>;

function makeVerifier(config: RelayConfig, options: RelayOptions): TokenVerifier {
  if (config.identity.issuer) return new AdminTokenVerifier(config.identity, options.now ? { now: options.now } : {});
  const none = () => Promise.reject(new ProxyctlError('ERR_IDP_UNAVAILABLE',
    'no identity provider is configured: set identity.issuer to your OpenID Connect provider', { status: 503 }));
  return { verify: none, verifyAccessToken: none };
}

/**
 * Client certificates are verified against the device CA and nothing else:
 * every TLS context (SNI picks one per host) must carry it, or OpenSSL would
 * fall back to the default roots and any publicly issued certificate would pass.
 */
function deviceCa(cfg: RelayConfig): { ca?: string } {
  return cfg.devices ? { ca: cfg.devices.caPem } : {};
}

function edgeLimitsFor(cfg: RelayConfig): EdgeLimits {
  const l = cfg.limits;
  return {
    perIp: l.perIp ? new RateLimiter({ ratePerSec: l.perIp.ratePerSec, burst: l.perIp.burst }) : undefined,
    perApp: l.perApp ? new RateLimiter({ ratePerSec: l.perApp.ratePerSec, burst: l.perApp.burst }) : undefined,
    proxies: new TrustedProxies(l.trustedProxies),
  };
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
