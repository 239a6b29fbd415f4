// The request queue between users and connectors. Each allowed request becomes
// an Exchange placed on one open channel of the connector (in the app's group)
// with the fewest outstanding requests; it waits a bounded time when the group
// has no connector online, and fails fast when its connector goes away.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AppConfig, RelayConfig } from '../../config/relay-config.js';
import { systemClock, type Clock, type Timer } from '../../clock.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Channel, ChannelRegistry } from './channels.js';
import { renderError, renderRaw } from '../../http/render.js';

export type ExchangeState = 'queued' | 'responding' | 'done';

export class Exchange {
  state: ExchangeState = 'queued';
  bodyTaken = false;
  /** Streams of the data plane, destroyed when the user goes away (made on first use: most exchanges have none). */
  private links: Set<{ destroy(err?: Error): void }> | undefined;

  constructor(
    readonly id: string,
    readonly app: AppConfig,
    /** The configuration the request was admitted under: its response is handled under it too. */
    readonly config: RelayConfig,
    readonly channel: Channel,
    readonly req: IncomingMessage,
    readonly res: ServerResponse | undefined,
    readonly socket: Duplex | undefined,
    readonly head: Buffer | undefined,
    readonly hasBody: boolean,
    private readonly onDone: (ex: Exchange) => void,
    private readonly clock: Clock = systemClock,
  ) {}

  /** A data-plane stream that lives as long as the exchange. */
  link(stream: { destroy(err?: Error): void }): void {
    (this.links ??= new Set()).add(stream);
  }

  unlink(stream: { destroy(err?: Error): void }): void {
    this.links?.delete(stream);
  }

  get connectorId(): string {
    return this.channel.connectorId;
  }

  /** When the wait for response headers ends (the connector reports backend timeouts itself first); only a queued exchange can expire. */
  deadline = Infinity;

  /** Guards the wait for response headers; checked by the queue's sweeper, not a timer per request. */
  armTimeout(ms: number): void {
    this.deadline = this.clock.now() + ms;
  }

  /** Called by the sweeper. */
  expireIfDue(now: number): void {
    if (this.state === 'queued' && now >= this.deadline) {
      this.fail(
        new ProxyctlError(
          'ERR_BACKEND_TIMEOUT',
          `${this.app.name} did not answer within ${Math.round(this.app.backendTimeoutMs / 1000)} s`,
          { status: 504, details: { app: this.app.name } },
        ),
      );
    }
  }

  /** The connector is about to stream the response; no refusal page can follow. */
  startResponding(): boolean {
    if (this.state !== 'queued') return false;
    this.state = 'responding';
    return true;
  }

  /** Refuses with a page if nothing was sent yet, otherwise cuts the user's connection. */
  fail(err: ProxyctlError): void {
    if (this.state === 'done') return;
    const wasQueued = this.state === 'queued';
    this.finish();
    if (wasQueued && this.res && !this.res.headersSent) renderError(this.req, this.res, err, this.id);
    else if (wasQueued && this.socket) renderRaw(this.socket, err, this.id, { req: this.req });
    else this.abortUser();
  }

  /** The user went away or the response broke: tear everything down. */
  abortUser(): void {
    this.res?.destroy();
    this.socket?.destroy();
    this.finish();
  }

  finish(): void {
    if (this.state === 'done') return;
    this.state = 'done';
    const links = this.links;
    this.links = undefined;
    if (links) for (const l of links) l.destroy();
    this.onDone(this);
  }
}

export class RequestQueue {
  private readonly exchanges = new Map<string, Exchange>();
  private readonly outstanding = new Map<string, number>();
  private readonly waiters = new Map<string, Set<(ch: Channel) => void>>();
  private rr = 0;
  /** Given to every exchange: one function for all of them. */
  private readonly onExchangeDone = (ex: Exchange) => this.closed(ex);

  private readonly sweeper: Timer;
  private readonly idleWaiters = new Set<() => void>();

  constructor(
    private readonly channels: ChannelRegistry,
    private readonly log: Logger,
    private readonly clock: Clock = systemClock,
  ) {
    // Deadlines are checked four times a second: cheaper than a timer per request.
    this.sweeper = clock.setInterval(() => {
      const now = clock.now();
      for (const ex of this.exchanges.values()) ex.expireIfDue(now);
    }, 250);
    this.sweeper.unref();
    channels.subscribe({
      onSeen: () => undefined,
      onOpen: (ch) => this.wake(ch),
      onClose: (ch) => this.channelClosed(ch),
    });
  }

  get size(): number {
    return this.exchanges.size;
  }

  get(id: string): Exchange | undefined {
    return this.exchanges.get(id);
  }

  /**
   * The open channel of the least busy connector in the group (outstanding
   * requests per connector); ties, including a connector's own channels, are
   * served in turn. Two passes, no allocation: this runs on every request.
   */
  pick(group: string): Channel | undefined {
    let bestLoad = Infinity;
    let ties = 0;
    for (const ch of this.channels.inGroup(group)) {
      if (ch.ws.readyState !== ch.ws.OPEN || ch.draining) continue;
      const load = this.outstanding.get(ch.connectorId) ?? 0;
      if (load < bestLoad) {
        bestLoad = load;
        ties = 1;
      } else if (load === bestLoad) {
        ties++;
      }
    }
    if (ties === 0) return undefined;
    let turn = this.rr++ % ties;
    for (const ch of this.channels.inGroup(group)) {
      if (ch.ws.readyState !== ch.ws.OPEN || ch.draining || (this.outstanding.get(ch.connectorId) ?? 0) !== bestLoad)
        continue;
      if (turn-- === 0) return ch;
    }
    return undefined;
  }

  /** A channel of the group, waiting up to timeoutMs for one to come online. */
  async acquire(group: string, timeoutMs: number, signal: AbortSignal): Promise<Channel | undefined> {
    const now = this.pick(group);
    if (now || timeoutMs <= 0) return now;
    this.log.debug({ group, timeout_ms: timeoutMs }, 'request waiting for a connector');
    return new Promise((resolve) => {
      const set = this.waiters.get(group) ?? new Set();
      this.waiters.set(group, set);
      const done = (ch: Channel | undefined) => {
        this.clock.clearTimeout(timer);
        set.delete(waiter);
        signal.removeEventListener('abort', onAbort);
        resolve(ch);
      };
      const waiter = (ch: Channel) => done(ch);
      const onAbort = () => done(undefined);
      const timer = this.clock.setTimeout(() => done(undefined), timeoutMs);
      timer.unref();
      set.add(waiter);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private wake(ch: Channel): void {
    const set = this.waiters.get(ch.group);
    if (!set) return;
    for (const w of [...set]) {
      const picked = this.pick(ch.group);
      if (!picked) break;
      w(picked);
    }
  }

  open(init: {
    id: string;
    app: AppConfig;
    config: RelayConfig;
    channel: Channel;
    req: IncomingMessage;
    res?: ServerResponse;
    socket?: Duplex;
    head?: Buffer;
    hasBody: boolean;
  }): Exchange {
    const ex = new Exchange(
      init.id,
      init.app,
      init.config,
      init.channel,
      init.req,
      init.res,
      init.socket,
      init.head,
      init.hasBody,
      this.onExchangeDone,
      this.clock,
    );
    this.exchanges.set(ex.id, ex);
    this.outstanding.set(ex.connectorId, (this.outstanding.get(ex.connectorId) ?? 0) + 1);
    return ex;
  }

  private closed(ex: Exchange): void {
    if (!this.exchanges.delete(ex.id)) return;
    const n = (this.outstanding.get(ex.connectorId) ?? 1) - 1;
    if (n <= 0) this.outstanding.delete(ex.connectorId);
    else this.outstanding.set(ex.connectorId, n);
    if (this.exchanges.size === 0) for (const wake of [...this.idleWaiters]) wake();
  }

  /** Resolves when no exchange is open, or after timeoutMs (drain on shutdown). */
  drained(timeoutMs: number): Promise<void> {
    if (this.exchanges.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        this.clock.clearTimeout(timer);
        this.idleWaiters.delete(wake);
        resolve();
      };
      const timer = this.clock.setTimeout(wake, timeoutMs);
      this.idleWaiters.add(wake);
    });
  }

  /** In-flight requests on a channel that died fail fast instead of hanging. */
  private channelClosed(ch: Channel): void {
    let failed = 0;
    for (const ex of this.exchanges.values()) {
      if (ex.channel !== ch || ex.state !== 'queued') continue;
      ex.fail(
        new ProxyctlError(
          'ERR_CONNECTOR_LOST',
          `the connector serving ${ex.app.name} went away while handling this request`,
          { status: 502, details: { app: ex.app.name } },
        ),
      );
      failed++;
    }
    if (failed)
      this.log.warn(
        { connector_id: ch.connectorId, channel_id: ch.id, failed },
        'channel closed with requests in flight',
      );
  }

  /** Shutdown: whatever is still open is cut. */
  abortAll(): void {
    this.clock.clearInterval(this.sweeper);
    for (const ex of [...this.exchanges.values()]) ex.abortUser();
  }

  /** Every exchange of a connector (revocation). */
  failConnector(connectorId: string): void {
    for (const ex of this.exchanges.values()) {
      if (ex.connectorId !== connectorId) continue;
      if (ex.state === 'queued')
        ex.fail(
          new ProxyctlError('ERR_CONNECTOR_LOST', 'the connector was revoked', {
            status: 502,
            details: { app: ex.app.name },
          }),
        );
      else ex.abortUser();
    }
  }
}
