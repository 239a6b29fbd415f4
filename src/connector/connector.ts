// The connector supervisor: keeps N control channels up with jittered backoff,
// pulls configuration (start, reconnect, announcement, periodically), renews its
// certificate in place, and stops for good only when the relay disowns it.
import { X509Certificate } from 'node:crypto';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { createKeyAndCsr } from '../crypto/csr.js';
import { ProxyctlError, isProxyctlError } from '../errors.js';
import type { Logger } from '../log.js';
import { CLOSE, type ConnectorConfig, type RelayMessage } from '../protocol/connector-api.js';
import { Backoff } from './backoff.js';
import { ControlChannel } from './channel.js';
import type { ConnectorMetrics } from './metrics.js';
import { FATAL_REMOTE, RelayClient } from './relay-client.js';
import { loadState, swapCertificate, type ConnectorState } from './state.js';
import { BackendProxy } from './proxy.js';

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
}

const MAX_TIMER = 2 ** 31 - 1;
/** After a renewal, how long to wait for a channel with the new certificate before draining the old ones anyway. */
const ROLL_OPEN_WAIT_MS = 10_000;
/** Upper bound on waiting for requests carried by a replaced channel (the relay's grace period is 10 minutes). */
const ROLL_DRAIN_MAX_MS = 5 * 60_000;

interface LiveChannel {
  /** Channels of an older generation were opened with a certificate a renewal replaced. */
  generation: number;
  retiring: boolean;
}

export class Connector {
  private state!: ConnectorState;
  private client!: RelayClient;
  private config: ConnectorConfig | undefined;
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
      relay: () => this.client,
      config: () => this.config,
      log: options.log,
      clock: this.clock,
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

  /** Open channels that take new requests (not those being retired after a renewal). */
  openChannels(): number {
    let n = 0;
    for (const [ch, live] of this.channels) if (ch.isOpen && !live.retiring) n++;
    return n;
  }

  async start(): Promise<void> {
    this.state = loadState(this.options.stateDir);
    this.client = this.makeClient();
    this.updateExpiryMetric();
    await this.initialPull();
    this.startChannels();
    this.scheduleRefresh();
    this.scheduleRenewal();
  }

  private makeClient(): RelayClient {
    return new RelayClient(this.state.relayUrl, {
      caPem: this.state.caPem,
      certPem: this.state.certPem,
      keyPem: this.state.keyPem,
    });
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
        this.options.log.warn(
          { code: (err as ProxyctlError).code, retry_ms: delay },
          `config pull failed: ${(err as Error).message}`,
        );
        await this.sleep(delay);
        if (this.stopped) return;
      }
    }
  }

  /** Coalesces concurrent triggers into one request. */
  pullConfig(reason: string): Promise<void> {
    this.pulling ??= (async () => {
      try {
        const cfg = await this.client.fetchConfig();
        const changed = cfg.version !== this.config?.version;
        this.config = cfg;
        this.options.metrics?.configPulls.inc({ result: 'ok' });
        this.options.log.info(
          { reason, version: cfg.version, changed, apps: cfg.apps.length, connector_id: cfg.connectorId },
          'configuration pulled',
        );
        if (changed) this.scheduleRefresh();
      } catch (err) {
        this.options.metrics?.configPulls.inc({ result: 'error' });
        throw err;
      } finally {
        this.pulling = undefined;
      }
    })();
    return this.pulling;
  }

  private backgroundPull(reason: string): void {
    this.pullConfig(reason).catch((err: unknown) => {
      if (this.isFatal(err)) this.stopFatal(err as ProxyctlError);
      else
        this.options.log.warn(
          { code: (err as ProxyctlError).code, reason },
          `config pull failed: ${(err as Error).message}`,
        );
    });
  }

  /** A generation of channel loops, dialling with the certificate held now. */
  private startChannels(): void {
    const generation = ++this.generation;
    const n = this.config?.channels ?? this.options.channels ?? 2;
    for (let i = 0; i < n; i++) void this.channelLoop(i, generation);
  }

  private async channelLoop(slot: number, generation: number): Promise<void> {
    const backoff = new Backoff({ random: this.options.random });
    let first = true;
    while (!this.stopped && generation === this.generation) {
      const heartbeat = this.config?.heartbeatIntervalMs ?? 15_000;
      const ch: ControlChannel = new ControlChannel(
        this.state.relayUrl,
        { caPem: this.state.caPem, certPem: this.state.certPem, keyPem: this.state.keyPem },
        heartbeat,
        this.options.log,
        {
          onOpen: () => {
            if (generation !== this.generation) {
              // Dialled with the replaced certificate while a renewal finished: hand over at once.
              this.options.log.info(
                { slot, connector_id: this.state.connectorId },
                'control channel opened with a replaced certificate; retiring it',
              );
              void this.retire(ch);
              return;
            }
            backoff.reset();
            this.options.metrics?.channelsUp.set(this.openChannels());
            this.options.log.info({ slot, connector_id: this.state.connectorId }, 'control channel open');
            if (!first) this.backgroundPull('reconnect');
            first = false;
          },
          onMessage: (msg, channel) => this.onMessage(msg, channel),
        },
        this.clock,
      );
      this.channels.set(ch, { generation, retiring: false });
      const end = await ch.run();
      this.channels.delete(ch);
      this.options.metrics?.channelsUp.set(this.openChannels());
      if (this.stopped) return;
      // A channel of a replaced certificate ends here, however it ended (even refused as
      // revoked: that certificate is not ours any more); the newer generation holds the slot.
      if (generation !== this.generation) return;
      if (end.kind === 'fatal') {
        this.stopFatal(end.error);
        return;
      }
      const delay = backoff.next();
      this.options.metrics?.reconnects.inc();
      this.options.log.warn(
        { slot, code: end.code, reason: end.reason, retry_ms: delay },
        end.wasOpen ? 'control channel closed; reconnecting' : 'cannot open control channel; retrying',
      );
      if (!end.wasOpen && backoff.attempts % 5 === 0) this.probeIdentity();
      await this.sleep(delay);
    }
  }

  /** A channel refused repeatedly without a reason: ask the API whether we are still known. */
  private probeIdentity(): void {
    this.backgroundPull('probe');
  }

  private onMessage(msg: RelayMessage, channel: ControlChannel): void {
    if (msg.type === 'request') {
      if (this.stopped) return;
      this.proxy.handle(msg, (frame) => channel.sendBinary(frame));
      return;
    }
    if (msg.type === 'cancel') {
      this.proxy.cancel(msg.id);
      return;
    }
    if (msg.type === 'hello' || msg.type === 'config-changed') {
      if (msg.configVersion !== this.config?.version)
        this.backgroundPull(msg.type === 'hello' ? 'hello' : 'announcement');
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
    const old = [...this.channels.keys()];
    this.startChannels();
    const generation = this.generation;
    const deadline = this.clock.now() + ROLL_OPEN_WAIT_MS;
    while (
      !this.stopped &&
      generation === this.generation &&
      this.clock.now() < deadline &&
      !this.hasOpenChannel(generation)
    )
      await this.sleep(20);
    if (this.stopped) return;
    await Promise.all(old.map((ch) => this.retire(ch)));
  }

  private hasOpenChannel(generation: number): boolean {
    for (const [ch, live] of this.channels) if (live.generation === generation && ch.isOpen) return true;
    return false;
  }

  /** Drains one channel of a replaced certificate and closes it. */
  private async retire(ch: ControlChannel): Promise<void> {
    const live = this.channels.get(ch);
    if (!live || live.retiring) return;
    live.retiring = true;
    this.options.metrics?.channelsUp.set(this.openChannels());
    ch.sendDraining();
    // Requests it carries finish within their backend timeout; nothing new arrives on it.
    const longest = Math.max(0, ...(this.config?.apps ?? []).map((a) => a.backendTimeoutMs));
    await this.proxy.drain(Math.min(ROLL_DRAIN_MAX_MS, longest + 5_000));
    ch.close(CLOSE.replaced, 'certificate renewed');
  }

  /** New key and CSR, a certificate over mutual TLS, then a swap and a roll of the channels: traffic keeps flowing. */
  renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        const { keyPem, csrPem } = await createKeyAndCsr(this.state.connectorId);
        const issued = await this.client.renew(csrPem);
        const notBefore = new Date(new X509Certificate(issued.certificate).validFrom);
        const issuedAt = new Date(Math.max(notBefore.getTime(), this.now()));
        const old = this.state.serial;
        this.state = swapCertificate(this.state, keyPem, issued.certificate, issued.serial, issuedAt);
        const previous = this.client;
        this.client = this.makeClient();
        void previous.close().catch(() => undefined);
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
    return isProxyctlError(err) && (FATAL_REMOTE.has(err.code) || err.code === 'ERR_RELAY_UNTRUSTED');
  }

  private stopFatal(err: ProxyctlError): void {
    if (this.stopped) return;
    this.fatal = err;
    this.options.log.error({ code: err.code, connector_id: this.state?.connectorId }, err.message);
    this.shutdown();
    this.rejectDone(err);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = this.clock.setTimeout(() => {
        this.waiters.delete(wake);
        resolve();
      }, ms);
      const wake = () => {
        this.clock.clearTimeout(t);
        resolve();
      };
      this.waiters.add(wake);
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
    void this.client?.close().catch(() => undefined);
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
