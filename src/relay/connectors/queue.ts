// The request queue between users and connectors. Each allowed request becomes
// an Exchange placed on one open channel of the connector (in the app's group)
// with the fewest outstanding requests; it waits a bounded time when the group
// has no connector online. When its channel dies, a request the connector cannot
// have acted on moves to another channel (mayResend); the others fail fast.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AppConfig, RelayConfig } from '../../config/relay-config.js';
import { systemClock, type Clock, type Timer } from '../../clock.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { QueuedRequest } from '../../protocol/connector-api.js';
import { requestFits } from '../../protocol/binary-frames.js';
import type { Channel, ChannelRegistry, Delivery } from './channels.js';
import { renderError, renderRaw } from '../../http/render.js';

export type ExchangeState = 'queued' | 'responding' | 'done';

/** Methods whose intended effect is the same however often the request is made (RFC 9110 §9.2.2). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** How often a request that may have reached a connector is sent again. */
const MAX_RESENDS = 1;

/**
 * Whether a request whose channel died may be sent on another channel. The rule:
 * - never once the connector has started the exchange (pulled the body, answered, reported a
 *   failure, opened a tunnel): the backend has, or may have, the request;
 * - always when it was never handed to a socket (`unsent`): no connector saw it;
 * - otherwise it may have reached the connector (`unacknowledged`: written to a socket that
 *   then died; `received`: the connector is known to have read it, see channels.ts). It moves
 *   at most MAX_RESENDS times, so a request that kills the connector reading it cannot take
 *   the whole group down, and only if the backend cannot have acted on it, or may act twice:
 *   - a request with a body the connector has not pulled: a connector calls the backend only
 *     once the relay has started sending it the body, and the relay sends the body once, to
 *     the connector the request is on now (a connector that was only cut off is refused);
 *   - a request without a body that the connector is not known to have read, if its method is
 *     idempotent (RFC 9110 §9.2.2: repeating it is allowed).
 * Every other request fails with ERR_CONNECTOR_LOST: one without a body that the connector
 * read is on its way to the backend, and a POST without a body may have been.
 */
export function mayResend(r: {
  method: string;
  delivery: Delivery;
  started: boolean;
  hasBody: boolean;
  resent: number;
}): boolean {
  if (r.started) return false;
  if (r.delivery === 'unsent') return true;
  if (r.resent >= MAX_RESENDS) return false;
  if (r.hasBody) return true;
  return r.delivery === 'unacknowledged' && IDEMPOTENT.has(r.method);
}

export class Exchange {
  state: ExchangeState = 'queued';
  bodyTaken = false;
  /** The channel the request is on; none while a request moved off a dead channel waits for one. */
  channel: Channel | undefined;
  /** Times the request moved after it may have reached a connector. */
  resent = 0;
  /** Sent on another channel than its first (the request path tells only the first one of a cancel). */
  moved = false;
  /** Streams of the data plane, destroyed when the user goes away (made on first use: most exchanges have none). */
  private links: Set<{ destroy(err?: Error): void }> | undefined;

  constructor(
    readonly id: string,
    readonly app: AppConfig,
    /** The configuration the request was admitted under: its response is handled under it too. */
    readonly config: RelayConfig,
    channel: Channel,
    readonly req: IncomingMessage,
    readonly res: ServerResponse | undefined,
    readonly socket: Duplex | undefined,
    readonly head: Buffer | undefined,
    readonly hasBody: boolean,
    private readonly onDone: (ex: Exchange) => void,
    private readonly clock: Clock = systemClock,
  ) {
    this.channel = channel;
  }

  /** A data-plane stream that lives as long as the exchange. */
  link(stream: { destroy(err?: Error): void }): void {
    (this.links ??= new Set()).add(stream);
  }

  unlink(stream: { destroy(err?: Error): void }): void {
    this.links?.delete(stream);
  }

  /** The connector that may answer: the one the request is on now. */
  get connectorId(): string | undefined {
    return this.channel?.connectorId;
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
    if (this.moved && this.state !== 'done') this.channel?.send({ type: 'cancel', id: this.id });
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
      onUnsent: (ch, id) => this.unsent(ch, id),
    });
  }

  get size(): number {
    return this.exchanges.size;
  }

  /** Requests waiting for a channel of their group (read by /metrics, not per request). */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  get(id: string): Exchange | undefined {
    return this.exchanges.get(id);
  }

  /**
   * The open channel of the least busy connector in the group (outstanding
   * requests per connector); ties, including a connector's own channels, are
   * served in turn. Two passes, no allocation: this runs on every request.
   * `avoid`: a connector to use only if no other has an open channel.
   */
  pick(group: string, avoid?: string): Channel | undefined {
    let bestLoad = Infinity;
    let ties = 0;
    for (const ch of this.channels.inGroup(group)) {
      if (!ch.open || ch.draining || ch.connectorId === avoid) continue;
      const load = this.outstanding.get(ch.connectorId) ?? 0;
      if (load < bestLoad) {
        bestLoad = load;
        ties = 1;
      } else if (load === bestLoad) {
        ties++;
      }
    }
    if (ties === 0) return avoid === undefined ? undefined : this.pick(group);
    let turn = this.rr++ % ties;
    for (const ch of this.channels.inGroup(group)) {
      if (
        !ch.open ||
        ch.draining ||
        ch.connectorId === avoid ||
        (this.outstanding.get(ch.connectorId) ?? 0) !== bestLoad
      )
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
    this.count(init.channel.connectorId, 1);
    return ex;
  }

  private count(connectorId: string, delta: number): void {
    const n = (this.outstanding.get(connectorId) ?? 0) + delta;
    if (n <= 0) this.outstanding.delete(connectorId);
    else this.outstanding.set(connectorId, n);
  }

  private closed(ex: Exchange): void {
    if (!this.exchanges.delete(ex.id)) return;
    if (ex.channel) {
      ex.channel.forget(ex.id);
      this.count(ex.channel.connectorId, -1);
    }
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

  /**
   * Requests waiting for an answer on a channel that died: those the connector cannot have
   * acted on move to another channel, the others fail fast instead of hanging.
   */
  private channelClosed(ch: Channel): void {
    let failed = 0;
    let requeued = 0;
    for (const ex of [...this.exchanges.values()]) {
      if (ex.channel !== ch || ex.state !== 'queued') continue;
      if (this.resend(ex, ch)) requeued++;
      else {
        ex.fail(lost(ex));
        failed++;
      }
    }
    if (failed || requeued)
      this.log.warn(
        { connector_id: ch.connectorId, channel_id: ch.id, failed, requeued },
        'channel closed with requests in flight',
      );
  }

  /** A request was sent on a channel that had already been dropped: it reached no one. */
  private unsent(ch: Channel, id: string): void {
    // Reported from inside the request path's send: act once it has finished with the exchange.
    queueMicrotask(() => {
      const ex = this.exchanges.get(id);
      if (!ex || ex.channel !== ch || ex.state !== 'queued') return;
      if (!this.resend(ex, ch)) ex.fail(lost(ex));
    });
  }

  /** Moves a request off a dead channel if the rule allows it (mayResend) and its deadline has not passed. */
  private resend(ex: Exchange, from: Channel): boolean {
    const delivery = from.delivery(ex.id);
    const message = from.message(ex.id);
    if (!message || this.clock.now() >= ex.deadline) return false;
    const method = ex.req.method ?? 'GET';
    if (!mayResend({ method, delivery, started: ex.bodyTaken, hasBody: ex.hasBody, resent: ex.resent })) return false;
    if (delivery !== 'unsent') ex.resent++;
    from.forget(ex.id);
    this.count(from.connectorId, -1);
    ex.channel = undefined;
    void this.redispatch(ex, message, from.connectorId);
    return true;
  }

  /**
   * Puts a moved request on another open channel of its group, preferring another connector
   * (the dead channel's siblings are likely dying too); with none, it waits as a new request
   * would, within its own deadline.
   */
  private async redispatch(ex: Exchange, message: QueuedRequest, from: string): Promise<void> {
    const group = ex.app.connectorGroup;
    let channel = this.pick(group, from);
    if (!channel) {
      const stop = new AbortController();
      const waiting = { destroy: () => stop.abort() };
      ex.link(waiting);
      const wait = Math.min(ex.config.connectors.queueTimeoutMs, ex.deadline - this.clock.now());
      channel = await this.acquire(group, wait, stop.signal);
      ex.unlink(waiting);
    }
    // The user left, or the deadline passed, while it waited.
    if (ex.state !== 'queued') return;
    if (!channel) {
      ex.fail(
        new ProxyctlError(
          'ERR_NO_CONNECTOR',
          `No connector is available for ${ex.app.name} (connector group "${group}"). Try again shortly; if this persists, tell your administrator.`,
          { status: 503, details: { app: ex.app.name } },
        ),
      );
      return;
    }
    // A request that fitted its first channel's framing may not fit this one's (a protocol-1
    // connector gets JSON, which escaping can make larger): refused, never sent to close it.
    if (!requestFits(message, channel.binary)) {
      ex.fail(
        new ProxyctlError('ERR_HEADERS_TOO_LARGE', 'The request headers are too large to forward.', {
          status: 431,
          details: { app: ex.app.name },
        }),
      );
      return;
    }
    ex.channel = channel;
    ex.moved = true;
    this.count(channel.connectorId, 1);
    this.log.info(
      { request_id: ex.id, app: ex.app.name, connector_id: channel.connectorId, from_connector_id: from },
      'request moved to another channel',
    );
    channel.send(message);
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

function lost(ex: Exchange): ProxyctlError {
  return new ProxyctlError(
    'ERR_CONNECTOR_LOST',
    `the connector serving ${ex.app.name} went away while handling this request`,
    { status: 502, details: { app: ex.app.name } },
  );
}
