// The connector supervisor: keeps N control channels up to every relay replica
// with jittered backoff (each replica on its own), pulls configuration (start,
// reconnect, announcement, periodically), follows the replica set it names, renews
// its certificate in place, and stops for good only when the relay disowns it.
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { createKeyAndCsr } from '../crypto/csr.js';
import { ProxyctlError, isProxyctlError } from '../errors.js';
import type { Logger } from '../log.js';
import {
  CLOSE,
  parseReplicaSet,
  type ConnectorConfig,
  type RelayMessage,
  type ReplicaInfo,
} from '../protocol/connector-api.js';
import { Backoff } from './backoff.js';
import { ControlChannel } from './channel.js';
import type { ConnectorMetrics } from './metrics.js';
import { FATAL_REMOTE, RelayClient } from './relay-client.js';
import { answersNot, askOrder, originOf, relayTargets, type RelayTarget } from './replicas.js';
import { loadState, swapCertificate, type ConnectorState } from './state.js';
import { BackendProxy, type Route } from './proxy.js';

export interface ConnectorOptions {
  stateDir: string;
  log: Logger;
  metrics?: ConnectorMetrics;
  /** Backoff sleeps, config refresh, renewal and channel watchdogs; Node's by default. */
  clock?: Clock;
  /** Overrides clock.now() (kept for callers that inject only the time). */
  now?: () => number;
  random?: () => number;
  /** Channel count until the first config pull says otherwise. */
  channels?: number;
  /** A CA (PEM) trusted for https backends besides Node's store (tests; see ProxyDeps). */
  backendCa?: string;
}

const MAX_TIMER = 2 ** 31 - 1;
/** After a renewal, how long to wait for a channel with the new certificate before draining the old ones anyway. */
const ROLL_OPEN_WAIT_MS = 10_000;
/** Upper bound on waiting for requests carried by a replaced channel (the relay's grace period is 10 minutes). */
const ROLL_DRAIN_MAX_MS = 5 * 60_000;

/** A relay the connector keeps channels to, while it is in the set. */
interface Endpoint extends RelayTarget {
  /** It left the set: its loops stop and its channels drain. */
  left: boolean;
  /** Wakes its loops from their backoff when it leaves. */
  sleepers: Set<() => void>;
}

interface LiveChannel {
  endpoint: Endpoint;
  /** Channels of an older generation were opened with a certificate a renewal replaced. */
  generation: number;
  retiring: boolean;
  /** Requests that arrive on it: their data connections go to its relay. */
  route: Route;
}

export class Connector {
  private state!: ConnectorState;
  private config: ConnectorConfig | undefined;
  /** The replica set in force: the last valid one pulled; undefined = unknown (the registration URL). */
  private replicaSet: ReplicaInfo[] | undefined;
  /** Whether the last config pull was answered at the registration URL (see relayTargets). */
  private answeredAtRegistration = true;
  /** Relays with channel loops, by origin; those that left are dropped at once and drain on their own. */
  private readonly endpoints = new Map<string, Endpoint>();
  /** One client (connection pool, current certificate) per relay origin, made on first use. */
  private readonly clients = new Map<string, RelayClient>();
  private channelsStarted = false;
  /** An announcement came while a pull was in flight, so that pull may predate it. */
  private pullAgain: string | undefined;
  /** Every channel object until its run ends: the current generation's and those being retired. */
  private readonly channels = new Map<ControlChannel, LiveChannel>();
  private generation = 0;
  private stopped = false;
  private fatal: ProxyctlError | undefined;
  private refreshTimer: Timer | undefined;
  private renewTimer: Timer | undefined;
  private readonly clock: Clock;
  private pulling: Promise<void> | undefined;
  private renewing: Promise<void> | undefined;
  private readonly waiters = new Set<() => void>();
  private readonly proxy: BackendProxy;
  private resolveDone!: () => void;
  private rejectDone!: (err: ProxyctlError) => void;
  /** Settles when the connector stops: resolves on close(), rejects when the relay disowns it. */
  readonly done: Promise<void>;

  constructor(private readonly options: ConnectorOptions) {
    this.clock = options.clock ?? systemClock;
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
    this.proxy = new BackendProxy({
      config: () => this.config,
      log: options.log,
      clock: this.clock,
      metrics: options.metrics,
      backendCa: options.backendCa,
    });
  }

  /** Requests being served right now. */
  get activeRequests(): number {
    return this.proxy.active;
  }

  private now(): number {
    return this.options.now ? this.options.now() : this.clock.now();
  }

  get connectorId(): string {
    return this.state.connectorId;
  }

  get currentConfig(): ConnectorConfig | undefined {
    return this.config;
  }

  get serial(): string {
    return this.state.serial;
  }

  /** Open channels that take new requests (not those being retired after a renewal or a replica's leaving). */
  openChannels(): number {
    let n = 0;
    for (const [ch, live] of this.channels) if (ch.isOpen && !live.retiring) n++;
    return n;
  }

  /** openChannels() per relay origin (scheme://host:port). */
  openChannelsByRelay(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [ch, live] of this.channels)
      if (ch.isOpen && !live.retiring) out.set(live.endpoint.origin, (out.get(live.endpoint.origin) ?? 0) + 1);
    return out;
  }

  async start(): Promise<void> {
    this.state = loadState(this.options.stateDir, (fields, message) => this.options.log.warn(fields, message));
    this.updateExpiryMetric();
    await this.initialPull();
    this.startChannels();
    this.scheduleRefresh();
    this.scheduleRenewal();
  }

  /** The client for a relay origin, with the certificate held now. */
  private clientFor(url: string): RelayClient {
    const origin = originOf(url);
    let client = this.clients.get(origin);
    if (!client) {
      client = new RelayClient(url, this.credentials());
      this.clients.set(origin, client);
    }
    return client;
  }

  /** The identity held now, and what to tell the operator when a relay's certificate does not verify. */
  private credentials() {
    const ca = path.join(this.state.dir, 'ca.pem');
    return {
      caPem: this.state.caPem,
      certPem: this.state.certPem,
      keyPem: this.state.keyPem,
      untrustedRemedy:
        `it must verify against the relay CA pinned at registration in ${ca}. Check that the URL reaches this ` +
        `connector's relay (not another host behind a load balancer, not a relay started with another data ` +
        `directory). If the relay's CA was replaced on purpose, put its new ca.pem in ${ca} or register again. ` +
        `Retrying with backoff`,
    };
  }

  /** Clients of relays no longer in use (a replica that left and whose channels have drained). */
  private pruneClients(): void {
    const keep = new Set([originOf(this.state.relayUrl), ...this.endpoints.keys()]);
    for (const r of this.replicaSet ?? []) keep.add(originOf(r.url));
    for (const live of this.channels.values()) keep.add(live.endpoint.origin);
    for (const [origin, client] of this.clients) {
      if (keep.has(origin)) continue;
      this.clients.delete(origin);
      void client.close().catch(() => undefined);
    }
  }

  /**
   * Asks the registration URL, then each other known replica while the one before does not
   * answer (down, or a load balancer with nothing behind it). A refusal that disowns the
   * connector is final wherever it comes from. Rejects with the registration URL's error
   * when nobody answers.
   */
  private async askRelay<T>(
    what: string,
    call: (client: RelayClient) => Promise<T>,
  ): Promise<{ value: T; url: string }> {
    const order = askOrder(this.state.relayUrl, this.replicaSet, (origin) => this.hasOpenChannelTo(origin));
    let first: unknown;
    for (const [i, url] of order.entries()) {
      try {
        return { value: await call(this.clientFor(url)), url };
      } catch (err) {
        if (!answersNot(err, i === 0)) throw err;
        first ??= err;
        if (i < order.length - 1)
          this.options.log.info(
            { relay: originOf(url), code: (err as ProxyctlError).code, next: originOf(order[i + 1]!) },
            `${what} got no answer; asking the next replica`,
          );
      }
    }
    throw first;
  }

  private hasOpenChannelTo(origin: string): boolean {
    for (const [ch, live] of this.channels) if (live.endpoint.origin === origin && ch.isOpen) return true;
    return false;
  }

  /** The first pull retries until the relay answers; only a disowning answer is final. */
  private async initialPull(): Promise<void> {
    const backoff = new Backoff({ random: this.options.random });
    for (;;) {
      try {
        await this.pullConfig('start');
        return;
      } catch (err) {
        if (this.stopped) return;
        if (this.isFatal(err)) {
          this.stopFatal(err as ProxyctlError);
          throw err;
        }
        const delay = backoff.next();
        this.logPullFailure(err, { retry_ms: delay });
        await this.sleep(delay);
        if (this.stopped) return;
      }
    }
  }

  /** Coalesces concurrent triggers into one request. */
  pullConfig(reason: string): Promise<void> {
    this.pulling ??= (async () => {
      try {
        const { value: pulled, url } = await this.askRelay('config pull', (c) => c.fetchConfig());
        const changed = pulled.version !== this.config?.version;
        this.takeReplicaSet(pulled, url);
        // The set in force, not what was sent: a refused set leaves the previous one.
        const cfg: ConnectorConfig = { ...pulled, replicas: this.replicaSet ?? [] };
        this.config = cfg;
        this.options.metrics?.configPulls.inc({ result: 'ok' });
        this.options.log.info(
          {
            reason,
            version: cfg.version,
            changed,
            apps: cfg.apps.length,
            replicas: this.replicaSet?.length,
            connector_id: cfg.connectorId,
          },
          'configuration pulled',
        );
        if (changed) this.scheduleRefresh();
        if (this.channelsStarted) this.syncEndpoints();
      } catch (err) {
        this.options.metrics?.configPulls.inc({ result: 'error' });
        throw err;
      } finally {
        this.pulling = undefined;
        const again = this.pullAgain;
        this.pullAgain = undefined;
        if (again && !this.stopped) this.backgroundPull(again);
      }
    })();
    return this.pulling;
  }

  /** Validates the pulled replica set; a bad one is logged and the previous set stays. */
  private takeReplicaSet(pulled: ConnectorConfig, answeredBy: string): void {
    this.answeredAtRegistration = originOf(answeredBy) === originOf(this.state.relayUrl);
    const parsed = parseReplicaSet((pulled as { replicas?: unknown }).replicas);
    if (!parsed.ok) {
      this.options.log.warn(
        { relay: originOf(answeredBy), error: parsed.error, kept: this.replicaSet?.length ?? 0 },
        'the relay sent an invalid replica set; keeping the previous one',
      );
      return;
    }
    this.replicaSet = parsed.message;
  }

  private backgroundPull(reason: string): void {
    this.pullConfig(reason).catch((err: unknown) => {
      if (this.isFatal(err)) this.stopFatal(err as ProxyctlError);
      else this.logPullFailure(err, { reason });
    });
  }

  /** An untrusted relay is logged as an error on every attempt: someone must look at it. */
  private logPullFailure(err: unknown, fields: Record<string, unknown>): void {
    const code = (err as ProxyctlError).code;
    const level = code === 'ERR_RELAY_UNTRUSTED' || code === 'ERR_PROTOCOL_VERSION' ? 'error' : 'warn';
    this.options.log[level]({ code, ...fields }, `config pull failed: ${(err as Error).message}`);
  }

  /** A generation of channel loops to every relay, dialling with the certificate held now. */
  private startChannels(): void {
    const generation = ++this.generation;
    this.channelsStarted = true;
    for (const endpoint of this.endpoints.values()) this.startLoops(endpoint, generation);
    this.syncEndpoints();
  }

  /** Opens channels to relays that joined the set and drains those to relays that left it. */
  private syncEndpoints(): void {
    if (this.stopped) return;
    const wanted = new Map(
      relayTargets(this.replicaSet, this.state.relayUrl, this.answeredAtRegistration).map((t) => [t.origin, t]),
    );
    for (const [origin, endpoint] of this.endpoints) {
      const target = wanted.get(origin);
      // The same address under a new id is the same relay restarted: its channels stay.
      if (target) endpoint.replicaId = target.replicaId;
      else {
        this.endpoints.delete(origin);
        void this.leave(endpoint);
      }
    }
    for (const [origin, target] of wanted) {
      if (this.endpoints.has(origin)) continue;
      const endpoint: Endpoint = { ...target, left: false, sleepers: new Set() };
      this.endpoints.set(origin, endpoint);
      this.options.log.info(
        { relay: origin, replica: target.replicaId, connector_id: this.state.connectorId },
        'opening channels to a relay replica',
      );
      this.startLoops(endpoint, this.generation);
    }
  }

  private startLoops(endpoint: Endpoint, generation: number): void {
    const n = this.config?.channels ?? this.options.channels ?? 2;
    for (let i = 0; i < n; i++) void this.channelLoop(endpoint, i, generation);
  }

  /** A relay left the set: its loops stop, and its channels finish what they carry and close. */
  private async leave(endpoint: Endpoint): Promise<void> {
    endpoint.left = true;
    for (const wake of endpoint.sleepers) wake();
    const mine = [...this.channels].filter(([, live]) => live.endpoint === endpoint).map(([ch]) => ch);
    this.options.log.info(
      { relay: endpoint.origin, replica: endpoint.replicaId, channels: mine.length },
      'relay replica left the set; draining its channels',
    );
    await Promise.all(mine.map((ch) => this.retire(ch, CLOSE.shutdown, 'relay replica left the set')));
    this.pruneClients();
  }

  private async channelLoop(endpoint: Endpoint, slot: number, generation: number): Promise<void> {
    // Each loop backs off on its own: a dead replica does not slow reconnection to the others.
    const backoff = new Backoff({ random: this.options.random });
    const where = { slot, relay: endpoint.origin };
    let first = true;
    while (!this.stopped && generation === this.generation && !endpoint.left) {
      const heartbeat = this.config?.heartbeatIntervalMs ?? 15_000;
      const ch: ControlChannel = new ControlChannel(
        endpoint.url,
        this.credentials(),
        heartbeat,
        this.options.log,
        {
          onOpen: () => {
            if (generation !== this.generation || endpoint.left) {
              // Dialled with the replaced certificate while a renewal finished, or to a relay
              // that left the set meanwhile: hand over at once.
              this.options.log.info(
                { ...where, connector_id: this.state.connectorId },
                endpoint.left
                  ? 'control channel opened to a relay that left the set; retiring it'
                  : 'control channel opened with a replaced certificate; retiring it',
              );
              void this.retire(ch);
              return;
            }
            backoff.reset();
            this.options.metrics?.channelsUp.set(this.openChannels());
            this.options.log.info({ ...where, connector_id: this.state.connectorId }, 'control channel open');
            if (!first) this.backgroundPull('reconnect');
            first = false;
          },
          onMessage: (msg, channel) => this.onMessage(msg, channel),
        },
        this.clock,
      );
      const route: Route = {
        relay: () => this.clientFor(endpoint.url),
        reply: (head, body) => ch.sendResponse(head, body),
      };
      this.channels.set(ch, { endpoint, generation, retiring: false, route });
      const end = await ch.run();
      this.channels.delete(ch);
      this.options.metrics?.channelsUp.set(this.openChannels());
      if (this.stopped || endpoint.left) return;
      // A channel of a replaced certificate ends here, however it ended (even refused as
      // revoked: that certificate is not ours any more); the newer generation holds the slot.
      if (generation !== this.generation) return;
      if (end.kind === 'fatal') {
        // Revoked or unknown is final. A relay whose certificate does not verify may be a load
        // balancer briefly pointing elsewhere: retried, loudly. An incompatible protocol at the
        // registration URL will not heal by waiting; at another replica (a rolling upgrade) it may.
        const otherReplica = endpoint.origin !== originOf(this.state.relayUrl);
        if (FATAL_REMOTE.has(end.error.code) || (end.error.code === 'ERR_PROTOCOL_VERSION' && !otherReplica)) {
          this.stopFatal(end.error);
          return;
        }
        this.options.log.error({ ...where, code: end.error.code }, end.error.message);
      }
      const delay = backoff.next();
      this.options.metrics?.reconnects.inc();
      this.options.log.warn(
        end.kind === 'closed'
          ? { ...where, code: end.code, reason: end.reason, retry_ms: delay }
          : { ...where, code: end.error.code, retry_ms: delay },
        end.kind === 'closed' && end.wasOpen
          ? 'control channel closed; reconnecting'
          : 'cannot open control channel; retrying',
      );
      if (end.kind === 'closed' && !end.wasOpen && backoff.attempts % 5 === 0) this.probeIdentity();
      await this.sleep(delay, endpoint.sleepers);
    }
  }

  /** A channel refused repeatedly without a reason: ask the API whether we are still known. */
  private probeIdentity(): void {
    this.backgroundPull('probe');
  }

  private onMessage(msg: RelayMessage, channel: ControlChannel): void {
    if (msg.type === 'request') {
      const live = this.channels.get(channel);
      if (this.stopped || !live) return;
      this.proxy.handle(msg, live.route);
      return;
    }
    if (msg.type === 'cancel') {
      this.proxy.cancel(msg.id);
      return;
    }
    // A change of the replica set comes as config-changed too: the set is part of the version.
    if (msg.type === 'hello' || msg.type === 'config-changed') {
      if (msg.configVersion === this.config?.version) return;
      const reason = msg.type === 'hello' ? 'hello' : 'announcement';
      if (this.pulling) this.pullAgain = reason;
      else this.backgroundPull(reason);
    }
  }

  private scheduleRefresh(): void {
    this.clock.clearTimeout(this.refreshTimer);
    if (this.stopped) return;
    const every = this.config?.configRefreshMs ?? 300_000;
    this.refreshTimer = this.clock.setTimeout(
      () => {
        this.backgroundPull('periodic');
        this.scheduleRefresh();
      },
      Math.min(every, MAX_TIMER),
    );
    this.refreshTimer.unref();
  }

  private scheduleRenewal(delayOverride?: number): void {
    this.clock.clearTimeout(this.renewTimer);
    if (this.stopped || !this.config) return;
    const due = Date.parse(this.state.certificateIssuedAt) + this.config.renewAfterMs;
    const delay = delayOverride ?? Math.max(0, due - this.now());
    this.renewTimer = this.clock.setTimeout(
      () => {
        if (Date.parse(this.state.certificateIssuedAt) + (this.config?.renewAfterMs ?? Infinity) > this.now()) {
          this.scheduleRenewal(); // a long timer woke early (capped at ~24 days) or settings changed
          return;
        }
        this.renew().then(
          () => this.scheduleRenewal(),
          (err: unknown) => {
            if (this.isFatal(err)) return this.stopFatal(err as ProxyctlError);
            this.options.log.warn(
              { code: (err as ProxyctlError).code },
              `certificate renewal failed; retrying: ${(err as Error).message}`,
            );
            this.scheduleRenewal(Math.min(60_000, Math.max(1000, (this.config?.renewAfterMs ?? 60_000) / 10)));
          },
        );
      },
      Math.min(delay, MAX_TIMER),
    );
    this.renewTimer.unref();
  }

  /**
   * Moves traffic to channels opened with the new certificate: dial them first, then
   * have the relay send nothing new on the old ones, let what they carry finish, and
   * close them. The relay accepts the old certificate only until the new one is used
   * (or its grace period ends), so old channels must not linger or reconnect.
   */
  private async rollChannels(): Promise<void> {
    const byRelay = new Map<Endpoint, ControlChannel[]>();
    for (const [ch, live] of this.channels) byRelay.set(live.endpoint, [...(byRelay.get(live.endpoint) ?? []), ch]);
    this.startChannels();
    const generation = this.generation;
    const deadline = this.clock.now() + ROLL_OPEN_WAIT_MS;
    // Each relay's old channels go once a new one to the same relay is open: a slow replica holds up only its own.
    await Promise.all(
      [...byRelay].map(async ([endpoint, old]) => {
        while (
          !this.stopped &&
          generation === this.generation &&
          !endpoint.left &&
          this.clock.now() < deadline &&
          !this.hasOpenChannel(generation, endpoint)
        )
          await this.sleep(20);
        if (this.stopped) return;
        await Promise.all(old.map((ch) => this.retire(ch)));
      }),
    );
  }

  private hasOpenChannel(generation: number, endpoint: Endpoint): boolean {
    for (const [ch, live] of this.channels)
      if (live.generation === generation && live.endpoint === endpoint && ch.isOpen) return true;
    return false;
  }

  /** Drains one channel (of a replaced certificate, or to a relay that left the set) and closes it. */
  private async retire(
    ch: ControlChannel,
    code: number = CLOSE.replaced,
    reason = 'certificate renewed',
  ): Promise<void> {
    const live = this.channels.get(ch);
    if (!live || live.retiring) return;
    live.retiring = true;
    this.options.metrics?.channelsUp.set(this.openChannels());
    ch.sendDraining();
    // Requests it carries finish within their backend timeout; nothing new arrives on it.
    const longest = Math.max(0, ...(this.config?.apps ?? []).map((a) => a.backendTimeoutMs));
    await this.proxy.drain(Math.min(ROLL_DRAIN_MAX_MS, longest + 5_000), live.route);
    ch.close(code, reason);
  }

  /** New key and CSR, a certificate over mutual TLS, then a swap and a roll of the channels: traffic keeps flowing. */
  renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        const { keyPem, csrPem } = await createKeyAndCsr(this.state.connectorId);
        const { value: issued } = await this.askRelay('certificate renewal', (c) => c.renew(csrPem));
        const notBefore = new Date(new X509Certificate(issued.certificate).validFrom);
        const issuedAt = new Date(Math.max(notBefore.getTime(), this.now()));
        const old = this.state.serial;
        this.state = swapCertificate(this.state, keyPem, issued.certificate, issued.serial, issuedAt);
        // Every relay's client is made again with the new certificate on first use.
        const previous = [...this.clients.values()];
        this.clients.clear();
        for (const client of previous) void client.close().catch(() => undefined);
        this.rollChannels().catch((err: unknown) =>
          this.options.log.warn({ err: (err as Error).message }, 'cannot move channels to the renewed certificate'),
        );
        this.updateExpiryMetric();
        this.options.metrics?.renewals.inc({ result: 'ok' });
        this.options.log.info(
          { connector_id: this.state.connectorId, serial: issued.serial, old_serial: old, not_after: issued.notAfter },
          'certificate renewed',
        );
      } catch (err) {
        this.options.metrics?.renewals.inc({ result: 'error' });
        throw err;
      } finally {
        this.renewing = undefined;
      }
    })();
    return this.renewing;
  }

  private updateExpiryMetric(): void {
    try {
      this.options.metrics?.certExpiry.set(Date.parse(new X509Certificate(this.state.certPem).validTo) / 1000);
    } catch {
      // metric only
    }
  }

  private isFatal(err: unknown): boolean {
    // An untrusted relay is retried (see channelLoop); a protocol mismatch reaches here only from a
    // relay that answered for the registration URL or one it named, which waiting will not change.
    return isProxyctlError(err) && (FATAL_REMOTE.has(err.code) || err.code === 'ERR_PROTOCOL_VERSION');
  }

  private stopFatal(err: ProxyctlError): void {
    if (this.stopped) return;
    this.fatal = err;
    this.options.log.error({ code: err.code, connector_id: this.state?.connectorId }, err.message);
    this.shutdown();
    this.rejectDone(err);
  }

  /** Woken early by shutdown, and by `also` (a relay's leaving) when given. */
  private sleep(ms: number, also?: Set<() => void>): Promise<void> {
    return new Promise((resolve) => {
      const t = this.clock.setTimeout(() => {
        this.waiters.delete(wake);
        also?.delete(wake);
        resolve();
      }, ms);
      const wake = () => {
        this.clock.clearTimeout(t);
        this.waiters.delete(wake);
        also?.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
      also?.add(wake);
    });
  }

  private shutdown(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.refreshTimer);
    this.clock.clearTimeout(this.renewTimer);
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    for (const ch of this.channels.keys()) ch.close();
    this.options.metrics?.channelsUp.set(0);
    void this.proxy.close();
    for (const client of this.clients.values()) void client.close().catch(() => undefined);
    this.clients.clear();
  }

  /**
   * Drains: tells the relay to send nothing new, lets requests in flight finish
   * (up to drainMs), then closes channels. Idempotent.
   */
  async close(drainMs = 30_000): Promise<void> {
    if (!this.stopped && !this.closing) {
      this.closing = true;
      this.options.log.info(
        { connector_id: this.state?.connectorId, in_flight: this.proxy.active },
        'connector draining',
      );
      for (const ch of this.channels.keys()) ch.sendDraining();
      await this.proxy.drain(drainMs);
      if (!this.stopped) {
        this.shutdown();
        this.resolveDone();
      }
    }
    await this.done.catch(() => undefined);
  }

  private closing = false;

  get fatalError(): ProxyctlError | undefined {
    return this.fatal;
  }
}
