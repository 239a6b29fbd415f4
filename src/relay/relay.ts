// The relay process: provision (data dir, CA, store, certificates) → start
// (listeners, heartbeats, revocation watch) → close (drain, idempotent).
// Reload swaps one config reference; work in flight keeps the one it began with.
import { randomUUID } from 'node:crypto';
import type { Http2SecureServer } from 'node:http2';
import type { Server } from 'node:https';
import type { Duplex } from 'node:stream';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { loadOrCreateCa, type RelayCa } from '../crypto/ca.js';
import type { RelayConfig } from '../config/relay-config.js';
import { ProxyctlError } from '../errors.js';
import type { Logger } from '../log.js';
import { CLOSE, type RegisterRequest, type RegisterResponse, type ReplicaInfo } from '../protocol/connector-api.js';
import { issueConnectorIdentity } from './connectors/registration.js';
import { AdminTokenVerifier } from './auth/admin-token.js';
import { ChannelRegistry } from './connectors/channels.js';
import { createConnectorApi } from './connectors/connector-api.js';
import { groupConfigVersion } from './connectors/connector-config.js';
import { ensureServerCertificate, type ServerCertificate } from './edge/server-cert.js';
import { DataPlane } from './connectors/data-plane.js';
import { RequestQueue } from './connectors/queue.js';
import { createRequestPath, traceIdOf } from './edge/request-path.js';
import { createSecureContext } from 'node:tls';
import { TlsStore } from './edge/tls-store.js';
import { createHttpListener } from './edge/http-listener.js';
import { PublicListener } from './edge/public-listener.js';
import type { Server as HttpServer } from 'node:http';
import type { AcmeManager, AcmeTiming } from './acme/manager.js';
import { acmeHosts } from '../config/acme-config.js';
import { RateLimiter, TrustedProxies } from './edge/limits.js';
import { KeyRing } from '../crypto/keyring.js';
import { AssertionSigner } from './auth/assertion.js';
import { clientAddress } from './edge/client-address.js';
import { Authentication } from './auth/authenticate.js';
import { Authorizer } from './auth/authorize.js';
import { RelayOwned } from './auth/relay-owned.js';
import { SignIn } from './auth/sign-in.js';
import { SignInLog } from './auth/sign-in-log.js';
import type { EdgeLimits, RelayState, TokenVerifier } from './state.js';
import { OidcClients } from './auth/oidc-client.js';
// Loaded only when the configuration needs them (oidc-provider alone is about a second of
// the start): the embedded provider, Redis (limits.redis) and the export sinks (export:).
import type { EmbeddedIdp } from '../idp/provider.js';
import { CLI_CLIENT_ID } from '../idp/secrets.js';
import { LoginThrottle, SharedLoginThrottle } from '../idp/throttle.js';
import type { SharedLimits } from './edge/redis-limiter.js';
import { ReplicaRegistry } from './replicas.js';
import { Agent, fetch as undiciFetch } from 'undici';
import { openStore, type Store, type StoreTopic } from '../store/index.js';
import { ensurePrivateDir } from '../fs-private.js';
import { createAdminServer, type AdminServer, type Checks } from './admin/admin-server.js';
import { loadSharedCa, loadSharedIdpSecrets } from './shared-secrets.js';
import type { SecretWrap } from '../crypto/secret-wrap.js';
import { SERVER_TLS } from '../crypto/tls-policy.js';
import { systemClock, type Clock } from '../clock.js';
import { configChanges } from './config-audit.js';
import { LogRetention } from './retention.js';
import { RiskServices } from './auth/risk.js';
import { parserRefusal, renderRaw } from '../http/render.js';
import { RelayMetrics, notAfterOf, type CertificateExpiry } from './admin/metrics.js';
// SIEM export lifecycle (start with the relay, close after requests drained).
import type { Exporter } from '../export/exporter.js';
import { composeConfig, type Excluded } from '../admin/compose.js';
import { AdminOperations, type LiveRelay } from '../admin/operations.js';
import type { Caller } from '../admin/api-types.js';
import { createApiHandler } from './admin/api.js';
import { CONSOLE_APP, ConsoleHost, withConsole } from './admin/console.js';
import type { InProcessApp } from './edge/request-path.js';

export interface RelayOptions {
  log: Logger;
  now?: () => number;
  /** Timers of heartbeats, certificate expiry, queue deadlines and the drain; Node's by default. */
  clock?: Clock;
  /** How often the store is checked for changes made by other processes (SQLite). */
  storeWatchMs?: number;
  /** Wraps the secrets kept in the store (secrets.masterKeyFile or PROXYCTL_MASTER_KEY). */
  masterKey?: SecretWrap;
  /** The live replicas connectors keep channels to (the replica registry); this relay alone by default. */
  replicas?: () => ReplicaInfo[];
  /** ACME renewal and retry timing (tests): the clock renewals are judged by, and the backoff. */
  acme?: { clock?: Clock; timing?: AcmeTiming };
}

export class Relay {
  /** The one reference requests read (once each); reload builds a new state and swaps it. */
  private state: RelayState;
  private connectorApi: Server | undefined;
  private publicServer: Http2SecureServer | undefined;
  private publicListener: PublicListener | undefined;
  /** The public listener's request path: close() drains it. */
  private edgePath: ReturnType<typeof createRequestPath> | undefined;
  /** `public.httpListen`: ACME HTTP-01 answers and 308 to HTTPS. */
  private httpServer: HttpServer | undefined;
  /** Certificates from an ACME certificate authority (`acme:`). */
  private acme: AcmeManager | undefined;
  readonly queue: RequestQueue;
  private readonly dataPlane: DataPlane;
  private ring: KeyRing;
  private readonly assertions: AssertionSigner;
  /** Failed sign-ins, kept across rebuilds of the embedded provider on reload. */
  private loginThrottle: LoginThrottle | SharedLoginThrottle | undefined;
  /** Rate-limit buckets and sign-in counters shared by replicas through Redis (limits.redis). */
  private readonly shared: SharedLimits | undefined;
  private loopbackAgent: Agent | undefined;
  private readonly signIns: SignInLog;
  private readonly authentication: Authentication;
  private readonly signIn: SignIn;
  private readonly relayOwned: RelayOwned;
  private unwatch: (() => void) | undefined;
  private admin: AdminServer | undefined;
  private closing: Promise<void> | undefined;
  /** The SIEM export (`export:`); undefined without sinks. The request path only calls publish/notify. */
  private exporter: Exporter | undefined;
  readonly channels: ChannelRegistry;
  /** This process among the replicas: recorded in the store with its connector API URL. */
  private readonly registry: ReplicaRegistry;
  /** Prometheus metrics, served on the admin listener's /metrics. */
  readonly metrics: RelayMetrics;
  private readonly retention: LogRetention;
  /** Location, address lists, detections and users' risk (risk:, geo:). */
  readonly risk: RiskServices;
  /** The configuration file's (SIGHUP replaces it); the state's adds the API's objects and the console. */
  private fileConfig: RelayConfig;
  /** Reloads and object changes apply one at a time, in order. */
  private applying: Promise<unknown> = Promise.resolve();
  /** What the API objects in force were composed from, so an unrelated store change rebuilds nothing. */
  private objectsKey = '';
  /** Open event streams, woken when the store changes. */
  private readonly storeListeners = new Set<() => void>();
  /** The REST API (admin listener and console host). */
  private readonly api: ReturnType<typeof createApiHandler>;
  private readonly console: ConsoleHost;

  private constructor(
    fileConfig: RelayConfig,
    composed: { config: RelayConfig; excluded: Excluded[]; key: string },
    readonly store: Store,
    readonly ca: RelayCa,
    ring: KeyRing,
    private readonly options: RelayOptions,
    shared: SharedLimits | undefined,
  ) {
    const config = withConsole(composed.config);
    this.fileConfig = fileConfig;
    this.objectsKey = composed.key;
    this.ring = ring;
    this.registry = new ReplicaRegistry({
      store,
      log: options.log,
      url: () => this.withBoundUrl(this.state.config).connectorApi.url.href,
      onChange: () => this.announceReplicas(),
      now: () => this.now(),
      ...(options.clock ? { clock: options.clock } : {}),
    });
    this.shared = shared;
    this.metrics = new RelayMetrics({
      channels: () => this.channels.all(),
      queue: () => ({ waiting: this.queue.waiting, inFlight: this.queue.size }),
      certificates: () => this.certificatesForMetrics(),
      exportSinks: () => this.exporter?.stats() ?? [],
      acmeFailures: () => this.acme?.failures ?? new Map(),
    });
    this.channels = new ChannelRegistry(
      options.log,
      {
        onSeen: (ch) => {
          // The heartbeat's store write doubles as the store latency probe (one per beat).
          this.metrics
            .timeStore('connectors.touch', this.store.connectors.touch(ch.connectorId, ch.version, this.now()))
            .catch((err: unknown) =>
              options.log.warn(
                { connector_id: ch.connectorId, err: (err as Error).message },
                'cannot record heartbeat',
              ),
            );
        },
      },
      options.clock,
    );
    this.retention = new LogRetention({
      store,
      log: options.log,
      clock: options.clock ?? systemClock,
      retention: () => this.state.config.logs,
    });
    this.queue = new RequestQueue(this.channels, options.log, options.clock);
    this.dataPlane = new DataPlane(this.queue, options.log);
    this.assertions = new AssertionSigner(() => this.ring);
    const now = () => this.now();
    const common = { store: this.store, ring: () => this.ring, log: options.log, now };
    this.risk = new RiskServices(config.risk, config.geo, {
      store,
      log: options.log,
      clock: options.clock ?? { ...systemClock, now },
    });
    this.signIns = new SignInLog({
      ...common,
      risk: this.risk,
      embedded: () => !this.state.config.identity.issuer,
      traceOf: traceIdOf,
      // The SIEM export hears of each row at once (it polls the store besides); metrics count it.
      recorded: (record) => {
        this.exporter?.notify();
        this.metrics.signInRecorded(record);
      },
      detected: (type, level) => {
        this.exporter?.notify();
        this.metrics.detection(type, level);
      },
    });
    this.authentication = new Authentication({
      ...common,
      revokedSession: (req, app, subject, sid) => this.signIns.revokedSession(req, app, subject, sid),
    });
    this.signIn = new SignIn({ ...common, signIns: this.signIns });
    this.relayOwned = new RelayOwned({
      ...common,
      authentication: this.authentication,
      signIn: this.signIn,
      signIns: this.signIns,
    });
    this.state = {
      generation: 1,
      config,
      edge: edgeLimitsFor(config, this.shared),
      verifier: makeVerifier(config, options),
      oidc: this.oidcFor(config, undefined),
      idp: undefined,
      authorizer: this.authorizerFor(config),
      tls: undefined,
    };
    this.api = createApiHandler({
      operations: (caller) => this.operations(caller),
      verifyToken: (token) => this.state.verifier.verifyCaller(token),
      loginInfo: () => this.identityInfo(),
      log: options.log,
      ...(options.clock ? { clock: options.clock } : {}),
      onStoreChange: (listener) => {
        this.storeListeners.add(listener);
        return () => this.storeListeners.delete(listener);
      },
    });
    this.console = new ConsoleHost({
      api: (req, res, auth, requestId) => this.api.handle(req, res, auth, requestId),
      identity: () => this.state.config.identity,
      log: options.log,
    });
    logExcluded(options.log, composed.excluded);
  }

  /** The administration operations as `caller` may run them, with this relay's live view. */
  operations(caller: Caller): AdminOperations {
    return new AdminOperations({
      store: this.store,
      config: () => this.fileConfig,
      caller,
      now: () => this.now(),
      live: this.live,
      ...(this.options.masterKey ? { masterKey: this.options.masterKey } : {}),
    });
  }

  private readonly live: LiveRelay = {
    replicaId: () => this.registry.id,
    channels: (connectorId) =>
      this.channels
        .all()
        .filter((c) => c.connectorId === connectorId)
        .map((c) => ({ openedAt: c.openedAt, version: c.version, inFlight: c.inFlight })),
    requestBuckets: (now) => this.metrics.requestMinutes(now),
    objectsChanged: () => this.applyObjects(),
    connectorRevoked: (id) => {
      this.channels.revoke(id, 'connector revoked by an administrator');
      this.queue.failConnector(id);
    },
  };

  private identityInfo() {
    return {
      issuer: this.issuer().href.replace(/\/$/, ''),
      cliClientId: this.state.idp ? CLI_CLIENT_ID : undefined,
      adminAudience: this.state.config.identity.adminAudience,
    };
  }

  /** The console as the request path sees it: an app answered in-process. */
  private readonly consoleApp: InProcessApp = {
    name: CONSOLE_APP,
    ownAuthentication: (req) => ConsoleHost.isTokenApiRequest(req),
    answerOwn: (req, res, requestId) => this.api.handle(req, res, { kind: 'token' }, requestId),
    answer: (req, res, who, origin, requestId) =>
      this.console.handle(req, res, who.identity, who.sid, origin, requestId),
  };

  /**
   * The store's API objects changed (here, through the API, or on another replica): the
   * configuration in force is composed again and swapped in when it differs.
   */
  applyObjects(): Promise<void> {
    const next = this.applying.then(async () => {
      const objects = await this.store.objects.list();
      const key = objectsKeyOf(objects);
      if (key === this.objectsKey) return;
      const composed = composeConfig(this.fileConfig, objects);
      logExcluded(this.options.log, composed.excluded);
      await this.swap(withConsole(composed.config), false);
      this.objectsKey = key;
      this.options.log.info({ objects: objects.length }, 'API objects applied');
    });
    this.applying = next.catch(() => undefined);
    return next.catch((err: unknown) => {
      this.options.log.error(
        { err: (err as Error).message },
        'cannot apply the API objects; the configuration in force stays',
      );
    });
  }

  get keyRing(): KeyRing {
    return this.ring;
  }

  /** The identity provider's issuer URL: the configured one, or the embedded provider's. */
  issuer(): URL {
    return issuerOf(this.state.config, this.state.idp);
  }

  get embeddedIdp(): EmbeddedIdp | undefined {
    return this.state.idp;
  }

  /** The state in force (what a request starting now would take). */
  currentState(): RelayState {
    return this.state;
  }

  /** The configuration generation in force (1 at start; each state built adds one). */
  get generation(): number {
    return this.state.generation;
  }

  /** Reaches the embedded provider through our own public listener, trusting our CA. */
  private loopbackFetch(cfg: RelayConfig): typeof fetch {
    const target = ['0.0.0.0', '::', ''].includes(cfg.public.host) ? '127.0.0.1' : cfg.public.host;
    this.loopbackAgent ??= new Agent({
      connect: {
        ca: this.ca.certPem,
        lookup: (_h, _o, cb) => cb(null, [{ address: target, family: target.includes(':') ? 6 : 4 }]),
      },
    });
    const dispatcher = this.loopbackAgent;
    return (input: string | URL | Request, init?: RequestInit) =>
      undiciFetch(input as string, { ...(init as object), dispatcher });
  }

  private oidcFor(cfg: RelayConfig, idp: EmbeddedIdp | undefined, fetchFn?: typeof fetch): OidcClients {
    return new OidcClients({
      issuer: () => issuerOf(cfg, idp),
      clockSkewMs: cfg.identity.clockSkewMs,
      scopes: cfg.identity.scopes,
      ...(fetchFn ? { fetch: fetchFn } : {}),
    });
  }

  private authorizerFor(cfg: RelayConfig): Authorizer {
    return new Authorizer(cfg.access, !!cfg.devices, {
      log: this.options.log,
      now: () => this.now(),
      signIns: this.signIns,
    });
  }

  /**
   * A complete state for `cfg`, built beside the one in force, which it reuses where
   * nothing it depends on changed (rate-limiter buckets, verifier and provider caches,
   * certificates). Throws without touching the state in force.
   */
  private async buildState(cfg: RelayConfig, prev: RelayState): Promise<RelayState> {
    const identityChanged = JSON.stringify(cfg.identity) !== JSON.stringify(prev.config.identity);
    const tls = this.publicServer ? await this.buildTls(cfg, prev.tls) : prev.tls;
    let { verifier, oidc, idp } = prev;
    if (!cfg.identity.issuer && this.publicServer) {
      // The embedded provider's clients follow the apps: rebuild it (users, keys and sessions live in the store).
      if (!idp || identityChanged || JSON.stringify(cfg.apps) !== JSON.stringify(prev.config.apps)) {
        const port = cfg.identity.embedded.port ?? this.publicAddress().port;
        const issuer = `https://${cfg.identity.embedded.host}${port === 443 ? '' : `:${port}`}`;
        this.loginThrottle ??= this.shared
          ? new SharedLoginThrottle({ redis: this.shared, now: () => this.now() })
          : new LoginThrottle({ now: () => this.now() });
        const { EmbeddedIdp } = await import('../idp/provider.js');
        idp = await EmbeddedIdp.create({
          issuer,
          dataDir: cfg.dataDir,
          users: this.store.users,
          artifacts: this.store.idpArtifacts,
          identity: cfg.identity,
          apps: cfg.apps,
          publicPort: port,
          log: this.options.log,
          throttle: this.loginThrottle,
          clientAddress,
          attempt: (a) => this.signIns.providerAttempt(a),
          ...(this.state.config.store
            ? { loadSecrets: () => loadSharedIdpSecrets(this.store, this.options.masterKey) }
            : {}),
          ...(this.options.now ? { now: this.options.now } : {}),
        });
        const fetchFn = this.loopbackFetch(cfg);
        verifier = new AdminTokenVerifier(
          { ...cfg.identity, issuer: new URL(issuer) },
          { fetch: fetchFn, ...(this.options.now ? { now: this.options.now } : {}) },
        );
        oidc = this.oidcFor(cfg, idp, fetchFn);
      }
    } else if (identityChanged) {
      verifier = makeVerifier(cfg, this.options);
      oidc = this.oidcFor(cfg, idp);
    }
    const edge =
      JSON.stringify(cfg.limits) === JSON.stringify(prev.config.limits) ? prev.edge : edgeLimitsFor(cfg, this.shared);
    return {
      generation: prev.generation + 1,
      config: cfg,
      edge,
      verifier,
      oidc,
      idp,
      authorizer: this.authorizerFor(cfg),
      tls,
    };
  }

  /** Provision: data directory, CA, store. Nothing listens yet. */
  static async create(config: RelayConfig, options: RelayOptions): Promise<Relay> {
    if (config.store && !options.masterKey) {
      throw new ProxyctlError(
        'ERR_MASTER_KEY',
        'store.postgres needs a master key (secrets.masterKeyFile or PROXYCTL_MASTER_KEY): the CA key and signing keys are shared through the database and kept there encrypted',
      );
    }
    ensurePrivateDir(config.dataDir, 'data directory');
    const store = await openStore(
      config.store ? { kind: 'postgres', ...config.store.postgres } : { kind: 'sqlite', dataDir: config.dataDir },
    );
    try {
      // One machine keeps its CA in the data directory; replicas share theirs through the store.
      const ca = config.store
        ? await loadSharedCa(store, options.masterKey, config.dataDir)
        : await loadOrCreateCa(config.dataDir);
      const ring = await KeyRing.load(store.keys, options.masterKey);
      const objects = await store.objects.list();
      const composed = composeConfig(config, objects);
      const shared = config.limits.redis
        ? new (await import('./edge/redis-limiter.js')).SharedLimits({ url: config.limits.redis, log: options.log })
        : undefined;
      return new Relay(config, { ...composed, key: objectsKeyOf(objects) }, store, ca, ring, options, shared);
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  private now(): number {
    return this.options.now ? this.options.now() : this.options.clock ? this.options.clock.now() : Date.now();
  }

  get currentConfig(): RelayConfig {
    return this.state.config;
  }

  async start(): Promise<void> {
    const cfg = this.state.config;
    await this.risk.start();
    const hosts = [cfg.connectorApi.url.hostname.replace(/^\[|\]$/g, ''), 'localhost', '127.0.0.1', '::1'];
    const tls = await ensureServerCertificate(cfg.dataDir, this.ca, 'connector-api', hosts);
    this.connectorApi = createConnectorApi(
      {
        config: () => this.withBoundUrl(this.state.config),
        store: this.store,
        ca: this.ca,
        verifier: { verify: (t) => this.state.verifier.verify(t) },
        channels: this.channels,
        dataPlane: this.dataPlane,
        log: this.options.log,
        now: () => this.now(),
        clock: this.options.clock,
        identityInfo: () => this.identityInfo(),
        replicas: () => this.replicas(),
      },
      tls,
    );
    // Before users arrive: a new sink's starting cursor must come before the first event it exports.
    await this.startExport(cfg);
    await listen(this.connectorApi, cfg.connectorApi.host, cfg.connectorApi.port);
    await this.startPublic(cfg);
    if (cfg.admin) {
      this.admin = createAdminServer({
        checks: () => this.readiness(),
        log: this.options.log,
        metrics: this.metrics,
        api: (req, res) => this.api.handle(req, res, { kind: 'token' }),
      });
      await this.admin.start(cfg.admin.host, cfg.admin.port);
      this.options.log.info({ listen: this.admin.address() }, 'admin listener ready (/healthz, /readyz, /metrics)');
    }
    this.channels.startHeartbeat(cfg.connectors.heartbeatIntervalMs);
    await this.registry.start();
    this.unwatch = this.store.onChange((topics) => this.storeChanged(topics), this.options.storeWatchMs ?? 500);
    this.retention.start();
    this.options.log.info(
      { listen: this.connectorApiAddress(), url: this.withBoundUrl(cfg).connectorApi.url.href, data_dir: cfg.dataDir },
      'connector API listening',
    );
  }

  private readonly boundViews = new WeakMap<RelayConfig, RelayConfig>();

  /**
   * The configuration as connectors must see it: with `connectorApi.listen` on port 0 and
   * no `url` set, the URL the relay tells them names the port the system chose.
   */
  private withBoundUrl(cfg: RelayConfig): RelayConfig {
    if (cfg.connectorApi.url.port !== '0' || !this.connectorApi?.listening) return cfg;
    let view = this.boundViews.get(cfg);
    if (!view) {
      const url = new URL(cfg.connectorApi.url.href);
      url.port = String(this.connectorApiAddress().port);
      view = Object.freeze({ ...cfg, connectorApi: Object.freeze({ ...cfg.connectorApi, url }) });
      this.boundViews.set(cfg, view);
    }
    return view;
  }

  private hostsFor(cfg: RelayConfig): string[] {
    const hosts = new Set(['localhost', '127.0.0.1', '::1']);
    for (const app of cfg.apps) hosts.add(app.host);
    if (!cfg.identity.issuer) hosts.add(cfg.identity.embedded.host);
    return [...hosts].sort();
  }

  private async startPublic(cfg: RelayConfig): Promise<void> {
    const tls = await this.buildTls(cfg, undefined);
    this.state = { ...this.state, tls };
    const path = createRequestPath({
      state: () => this.state,
      metrics: this.metrics,
      queue: this.queue,
      assertions: this.assertions,
      authentication: this.authentication,
      signIn: this.signIn,
      relayOwned: this.relayOwned,
      publicPort: () => this.publicAddress().port,
      log: this.options.log,
      console: this.consoleApp,
    });
    // HTTP/2 (ALPN h2) and HTTP/1.1 on one port, the same request path (edge/public-listener.ts).
    const listener = new PublicListener({
      tls: {
        key: tls.keyPem,
        cert: tls.certPem,
        ...SERVER_TLS,
        // An ACME certificate (apps without their own) first, else the TLS store's choice.
        SNICallback: (name, cb) =>
          cb(
            null,
            this.acme?.challengeContext(name) ?? this.acme?.contextFor(name) ?? this.state.tls?.store.contextFor(name),
          ),
        // Device certificates (Conditional Access) are optional at the TLS layer; policies decide.
        ...(cfg.devices ? { requestCert: true, rejectUnauthorized: false, ca: cfg.devices.caPem } : {}),
      },
      // With acme: the TLS-ALPN-01 challenge certificate goes to `acme-tls/1` handshakes only (acme/manager.ts).
      ...(cfg.acme
        ? { acmeAlpn: (name: string, protocols: readonly string[]) => this.acme?.alpnSelect(name, protocols) }
        : {}),
      limits: cfg.limits,
      onRequest: (req, res) => void path.handleRequest(req, res),
      onUpgrade: (req, socket, head) => void path.handleUpgrade(req, socket, head),
      log: this.options.log,
      clock: this.options.clock ?? systemClock,
      onConnection: (protocol) => this.metrics.connection(protocol),
    });
    const server = listener.server;
    server.on('tlsClientError', (err: Error) =>
      this.options.log.debug({ err: err.message }, 'public TLS handshake failed'),
    );
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
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
      this.options.log.info(
        {
          request_id: requestId,
          client: (socket as { remoteAddress?: string }).remoteAddress,
          code: err.code,
          status: refusal.status,
        },
        'request refused by the HTTP parser',
      );
      renderRaw(socket, refusal, requestId);
    });
    this.publicServer = server;
    this.publicListener = listener;
    this.edgePath = path;
    await listen(server, cfg.public.host, cfg.public.port);
    if (!cfg.identity.issuer) {
      // The embedded provider's issuer names the port just bound: its state is built now.
      this.state = await this.buildState(cfg, this.state);
      this.options.log.info({ issuer: this.state.idp?.issuer }, 'embedded identity provider ready');
    }
    this.options.log.info({ listen: this.publicAddress() }, 'public listener ready');
    if (cfg.acme) {
      // acme-client takes about 0.6 s to load: only with `acme:`.
      const { AcmeManager } = await import('./acme/manager.js');
      this.acme = new AcmeManager({
        config: cfg.acme,
        secrets: this.store.secrets,
        wrap: this.options.masterKey,
        http: !!cfg.public.http,
        log: this.options.log,
        clock: this.options.acme?.clock ?? this.options.clock ?? systemClock,
        ...(this.options.acme?.timing ? { timing: this.options.acme.timing } : {}),
        clientCa: () => deviceCa(this.state.config).ca,
      });
    }
    if (cfg.public.http) await this.startHttp(cfg, cfg.public.http);
    this.acme?.setHosts(acmeHosts(cfg.acme, cfg.apps));
  }

  /** The ACME manager, when `acme:` is configured (tests force renewals through it). */
  get acmeManager(): AcmeManager | undefined {
    return this.acme;
  }

  private async startHttp(cfg: RelayConfig, at: { host: string; port: number }): Promise<void> {
    const server = createHttpListener({
      limits: cfg.limits,
      httpsPort: () => this.publicAddress().port,
      challenge: (token, host) => this.acme?.httpChallenge(token, host),
      log: this.options.log,
    });
    this.httpServer = server;
    await listen(server, at.host, at.port);
    this.options.log.info({ listen: this.httpAddress() }, 'HTTP listener ready (ACME HTTP-01, 308 to HTTPS)');
  }

  /** The plain-HTTP listener's address, when `public.httpListen` is configured. */
  httpAddress(): { host: string; port: number } | undefined {
    const addr = this.httpServer?.address() as AddressInfo | null | undefined;
    return addr ? { host: addr.address, port: addr.port } : undefined;
  }

  /** Ready: the listeners are up, the store answers, the configuration is loaded (for /readyz). */
  readiness(): Checks {
    const up = (s: NetServer | undefined) => ({ ok: !!s?.listening });
    const reachable = this.store.reachable();
    return {
      publicListener: up(this.publicServer),
      ...(this.state.config.public.http ? { httpListener: up(this.httpServer) } : {}),
      connectorApi: up(this.connectorApi),
      store: reachable ? { ok: true } : { ok: false, detail: `${this.store.kind} unreachable` },
      config: { ok: !this.closing, detail: `generation ${this.state.generation}` },
    };
  }

  /** For /metrics: the relay CA, the public listener's relay-CA certificate, and each app's own. */
  private certificatesForMetrics(): CertificateExpiry[] {
    const out: CertificateExpiry[] = [{ certificate: 'ca', notAfter: notAfterOf(this.ca.certPem) }];
    const { tls, config } = this.state;
    if (tls) out.push({ certificate: 'listener', notAfter: notAfterOf(tls.certPem) });
    for (const app of config.apps)
      if (app.tls) out.push({ certificate: `app:${app.host}`, notAfter: notAfterOf(app.tls.certPem) });
    for (const c of this.acme?.certificates() ?? [])
      out.push({ certificate: `acme:${c.host}`, notAfter: notAfterOf(c.certPem) });
    return out;
  }

  /** The admin listener's address, when `admin:` is configured. */
  adminAddress(): { host: string; port: number } | undefined {
    return this.admin?.address();
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

  /** Changes made by another process (the admin CLI, another replica) reach open channels and keys here. */
  private storeChanged(topics: ReadonlySet<StoreTopic> | 'all'): void {
    const has = (t: StoreTopic) => topics === 'all' || topics.has(t);
    if (has('connectors')) {
      this.store.bumpGeneration();
      this.enforceRevocations().catch((err: unknown) =>
        this.options.log.error({ err: (err as Error).message }, 'cannot check revocations'),
      );
    }
    // A replica joined or left: re-read the set now rather than at the next heartbeat ('all' —
    // SQLite's only signal, moved by every other replica's heartbeat — waits for the heartbeat).
    if (topics !== 'all' && topics.has('replicas')) void this.registry.beat();
    // A detection or an administrator's decision here or on another replica: users' risk is read again.
    if (has('risk')) this.risk.forgetUserRisks();
    // API objects published on another replica or by the CLI (SQLite reports 'all').
    if (has('objects')) void this.applyObjects();
    // A certificate another replica obtained is served here too.
    if (has('secrets'))
      this.acme
        ?.reloadFromStore()
        .catch((err: unknown) =>
          this.options.log.error({ err: (err as Error).message }, 'cannot read ACME certificates from the store'),
        );
    for (const wake of this.storeListeners) wake();
    this.exporter?.notify();
    // Keys rotated elsewhere take effect without a restart.
    if (has('keys'))
      this.reloadKeys().catch((err: unknown) =>
        this.options.log.error({ err: (err as Error).message }, 'cannot reload keys'),
      );
  }

  /** What the key ring was last built from: the ring is rebuilt (keys imported) only when it changes. */
  private keyRows = '';

  private async reloadKeys(): Promise<void> {
    const rows = JSON.stringify(await this.store.keys.all());
    if (rows === this.keyRows) return;
    this.ring = await KeyRing.load(this.store.keys, this.options.masterKey);
    this.keyRows = rows;
  }

  async enforceRevocations(): Promise<void> {
    const open = this.channels.all();
    const revoked = await this.store.connectors.revokedAmong(open.map((c) => c.serial));
    const connectors = new Set(open.filter((c) => revoked.has(c.serial)).map((c) => c.connectorId));
    for (const id of connectors) {
      const n = this.channels.revoke(id, 'connector revoked by an administrator');
      this.queue.failConnector(id);
      this.options.log.warn({ connector_id: id, channels: n }, 'connector revoked; channels closed');
    }
  }

  /** Registration by the relay's owner in-process (the demo): no token, recorded as `actor`. */
  registerLocal(request: RegisterRequest, actor: string): Promise<RegisterResponse> {
    return issueConnectorIdentity(
      { ca: this.ca, store: this.store, config: () => this.state.config, log: this.options.log, now: () => this.now() },
      request,
      `local:${actor}`,
    );
  }

  /** Revokes a connector in the store and cuts its channels at once. */
  async revokeConnector(idOrName: string, actor: string): Promise<void> {
    const c = await this.store.connectors.revoke(idOrName, actor, this.now());
    this.channels.revoke(c.id, 'connector revoked by an administrator');
    this.queue.failConnector(c.id);
  }

  /**
   * Swaps in a validated config: everything built from it (certificates and TLS
   * contexts, verifier, identity clients, the embedded provider, limits, the
   * authorization cache) is built first, beside the state in force; then one
   * reference swap. A failure on the way rejects and leaves the old state serving.
   * Requests already running keep the state they began with. Listener addresses
   * and the data directory are fixed for the life of the process.
   */
  async reload(nextFile: RelayConfig): Promise<{ restartNeeded: string[] }> {
    const run = this.applying.then(async () => {
      const objects = await this.store.objects.list();
      const composed = composeConfig(nextFile, objects);
      const result = await this.swap(withConsole(composed.config), true);
      this.fileConfig = nextFile;
      this.objectsKey = objectsKeyOf(objects);
      logExcluded(this.options.log, composed.excluded);
      return result;
    });
    this.applying = run.catch(() => undefined);
    return run;
  }

  private async swap(next: RelayConfig, audit: boolean): Promise<{ restartNeeded: string[] }> {
    const prevState = this.state;
    const prev = prevState.config;
    const restartNeeded: string[] = [];
    if (next.dataDir !== prev.dataDir) restartNeeded.push('dataDir');
    if (next.limits.redis !== prev.limits.redis) restartNeeded.push('limits.redis');
    if (next.secrets.masterKeyFile !== prev.secrets.masterKeyFile) restartNeeded.push('secrets.masterKeyFile');
    if (JSON.stringify(next.admin) !== JSON.stringify(prev.admin)) restartNeeded.push('admin.listen');
    if (JSON.stringify(next.store) !== JSON.stringify(prev.store)) restartNeeded.push('store');
    if (next.connectorApi.host !== prev.connectorApi.host || next.connectorApi.port !== prev.connectorApi.port)
      restartNeeded.push('connectorApi.listen');
    if (next.public.host !== prev.public.host || next.public.port !== prev.public.port)
      restartNeeded.push('public.listen');
    if (JSON.stringify(next.public.http) !== JSON.stringify(prev.public.http)) restartNeeded.push('public.httpListen');
    if (JSON.stringify(next.devices) !== JSON.stringify(prev.devices)) restartNeeded.push('devices');
    if (JSON.stringify(next.export) !== JSON.stringify(prev.export)) restartNeeded.push('export');
    if (JSON.stringify(next.acme) !== JSON.stringify(prev.acme)) restartNeeded.push('acme');
    for (const k of [
      'headersTimeoutMs',
      'idleTimeoutMs',
      'requestTimeoutMs',
      'maxHeaderBytes',
      'connectionsPerIp',
    ] as const) {
      if (next.limits[k] !== prev.limits[k]) restartNeeded.push(`limits.${k.replace(/Ms$/, '')}`);
    }
    if (!!next.identity.issuer !== !!prev.identity.issuer) restartNeeded.push('identity.issuer');
    restartNeeded.push(...(await this.risk.reconfigure(next.risk, next.geo)));
    const built = await this.buildState(next, prevState);
    // The certificate for connections without SNI follows the host list (open connections keep theirs).
    if (built.tls && built.tls.issued !== prevState.tls?.issued) {
      this.publicServer?.setSecureContext({
        key: built.tls.keyPem,
        cert: built.tls.certPem,
        ...SERVER_TLS,
        ...deviceCa(next),
      });
    }
    this.state = built;
    // Apps added or given their own certificate: the hosts ACME covers follow (in force from start only).
    if (this.acme) this.acme.setHosts(acmeHosts(this.acme.config, next.apps));
    if (built.idp && built.idp === prevState.idp) built.idp.reloadUsers();
    if (next.connectors.heartbeatIntervalMs !== prev.connectors.heartbeatIntervalMs)
      this.channels.startHeartbeat(next.connectors.heartbeatIntervalMs);
    this.announceConfigChange(prev);
    // An API change is audited by the operation that made it, with its caller.
    if (audit) this.auditReload(prev, next);
    return { restartNeeded };
  }

  /** Relay-CA certificate for every published host (reused while the host list holds), and per-host contexts by SNI. */
  private async buildTls(cfg: RelayConfig, prev: RelayState['tls']): Promise<NonNullable<RelayState['tls']>> {
    const hosts = this.hostsFor(cfg).join(',');
    let cert: Omit<NonNullable<RelayState['tls']>, 'store'> | undefined =
      prev && prev.hosts === hosts ? prev : undefined;
    if (!cert) {
      const tls: ServerCertificate = await ensureServerCertificate(cfg.dataDir, this.ca, 'public', hosts.split(','));
      cert = {
        hosts,
        keyPem: tls.keyPem,
        certPem: tls.certPem,
        issued: createSecureContext({ key: tls.keyPem, cert: tls.certPem, ...SERVER_TLS, ...deviceCa(cfg) }),
      };
    }
    return {
      hosts,
      keyPem: cert.keyPem,
      certPem: cert.certPem,
      issued: cert.issued,
      store: new TlsStore(cert.issued, cfg.apps, deviceCa(cfg).ca),
    };
  }

  /** Every setting a reload changed, before and after (secrets redacted), as one audit entry. */
  private auditReload(prev: RelayConfig, next: RelayConfig): void {
    const changes = configChanges(prev, next);
    if (changes.length === 0) return;
    this.store.audit
      .record({
        at: this.now(),
        actor: 'config-file',
        action: 'config.reload',
        connectorId: null,
        details: { file: next.file ?? null, replica: this.replicaId, changes },
      })
      .catch((err: unknown) =>
        this.options.log.error({ err: (err as Error).message }, 'cannot audit the configuration reload'),
      );
  }

  private announceConfigChange(prev: RelayConfig): void {
    let told = 0;
    const replicas = this.replicas();
    for (const ch of this.channels.all()) {
      const v = groupConfigVersion(this.withBoundUrl(this.state.config), ch.group, replicas);
      if (v !== groupConfigVersion(this.withBoundUrl(prev), ch.group, replicas)) {
        ch.send({ type: 'config-changed', configVersion: v });
        told++;
      }
    }
    this.options.log.info({ channels_told: told }, 'configuration reloaded');
  }

  get replicaId(): string {
    return this.registry.id;
  }

  private replicas(): ReplicaInfo[] {
    return this.options.replicas?.() ?? this.registry.live();
  }

  /** The replica set changed (the registry calls this): every connector is told to pull the new set. */
  announceReplicas(): void {
    const replicas = this.replicas();
    const cfg = this.withBoundUrl(this.state.config);
    const versions = new Map<string, string>();
    const open = this.channels.all();
    for (const ch of open) {
      let v = versions.get(ch.group);
      if (v === undefined) versions.set(ch.group, (v = groupConfigVersion(cfg, ch.group, replicas)));
      ch.send({ type: 'config-changed', configVersion: v });
    }
    this.options.log.info({ replicas: replicas.length, channels_told: open.length }, 'replica set announced');
  }

  // --- SIEM export lifecycle ---------------------------------------------------------

  private async startExport(cfg: RelayConfig): Promise<void> {
    const sinks = cfg.export;
    if (sinks.length === 0) return;
    const { Exporter } = await import('../export/exporter.js');
    this.exporter = new Exporter({
      store: this.store,
      sinks,
      log: this.options.log,
      ...(this.options.clock ? { clock: this.options.clock } : {}),
      owner: this.registry.id,
    });
    await this.exporter.start();
  }

  /** The running export (publish/notify after a store write, stats for metrics); undefined without sinks. */
  get export(): Exporter | undefined {
    return this.exporter;
  }

  /** Idempotent; safe after a partial start. Tells connectors to reconnect elsewhere. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const started = performance.now();
    const pub = this.publicServer;
    const listener = this.publicListener;
    const edge = this.edgePath;
    // Stop taking work at once (SIGTERM): no new connection, no new request on an open
    // one (503, Connection: close; HTTP/2: GOAWAY), idle keep-alive connections closed now.
    const closed = pub ? new Promise<void>((resolve) => pub.close(() => resolve())) : undefined;
    edge?.drain();
    listener?.goAway();
    this.unwatch?.();
    this.acme?.close();
    await this.retention.stop();
    // Leave the replica set first: connectors stop sending this replica new work.
    await this.registry.stop();
    // Not ready from here on: load balancers stop sending new users while requests drain.
    const admin = this.admin;
    const http = this.httpServer;
    if (http) {
      // Nothing in flight there is worth waiting for: challenge answers and redirects.
      const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await httpClosed;
    }
    if (pub) {
      // Answers in flight (long transfers included) finish, up to limits.drainTimeout.
      const log = this.options.log;
      const timeoutMs = this.state.config.limits.drainTimeoutMs;
      const left = Math.max(0, timeoutMs - (performance.now() - started));
      log.info(
        { in_flight: edge?.inFlight() ?? 0, drain_timeout_ms: timeoutMs },
        'relay draining: requests in flight may finish',
      );
      await Promise.all([edge?.idle(left, this.options.clock ?? systemClock), this.queue.drained(left)]);
      const cut = edge?.inFlight() ?? 0;
      if (cut > 0) log.warn({ in_flight: cut, drain_timeout_ms: timeoutMs }, 'drain deadline reached; cutting');
      this.queue.abortAll();
      listener?.closeAllConnections();
      await closed;
      log.info({ duration_ms: Math.round(performance.now() - started), cut }, 'relay drained');
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
    await admin?.close();
    await this.shared?.close();
    this.risk.close();
    // What the export holds in hand goes out (bounded), then its leases are released.
    await this.exporter?.close();
    await this.store.close();
  }
}

/** The configured issuer, or the embedded provider's once it runs. */
function issuerOf(cfg: RelayConfig, idp: EmbeddedIdp | undefined): URL {
  const issuer = cfg.identity.issuer ?? (idp ? new URL(idp.issuer) : undefined);
  if (!issuer)
    throw new ProxyctlError('ERR_IDP_UNAVAILABLE', 'the identity provider is not ready yet', { status: 503 });
  return issuer;
}

function makeVerifier(config: RelayConfig, options: RelayOptions): TokenVerifier {
  if (config.identity.issuer) return new AdminTokenVerifier(config.identity, options.now ? { now: options.now } : {});
  const none = () =>
    Promise.reject(
      new ProxyctlError(
        'ERR_IDP_UNAVAILABLE',
        'no identity provider is configured: set identity.issuer to your OpenID Connect provider',
        { status: 503 },
      ),
    );
  return { verify: none, verifyAccessToken: none, verifyCaller: none };
}

/**
 * Client certificates are verified against the device CA and nothing else:
 * every TLS context (SNI picks one per host) must carry it, or OpenSSL would
 * fall back to the default roots and any publicly issued certificate would pass.
 */
function deviceCa(cfg: RelayConfig): { ca?: string } {
  return cfg.devices ? { ca: cfg.devices.caPem } : {};
}

/** Per-replica buckets, or buckets shared through Redis (limits.redis) when `shared` is given. */
function edgeLimitsFor(cfg: RelayConfig, shared: SharedLimits | undefined): EdgeLimits {
  const l = cfg.limits;
  const bucket = (name: string, r: { ratePerSec: number; burst: number } | undefined) =>
    r
      ? shared
        ? shared.limiter(name, r).immediate()
        : new RateLimiter({ ratePerSec: r.ratePerSec, burst: r.burst })
      : undefined;
  return {
    perIp: bucket('ip', l.perIp),
    perApp: bucket('app', l.perApp),
    proxies: new TrustedProxies(l.trustedProxies),
  };
}

function listen(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Which API objects (and versions) a composition was made from. */
function objectsKeyOf(objects: readonly { kind: string; name: string; version: number }[]): string {
  return objects.map((o) => `${o.kind}/${o.name}@${o.version}`).join('\n');
}

function logExcluded(log: Logger, excluded: readonly Excluded[]): void {
  for (const e of excluded)
    log.error(
      { kind: e.kind, name: e.name, problem: e.problem },
      `API ${e.kind} ${e.name} is not in force: ${e.problem}`,
    );
}
