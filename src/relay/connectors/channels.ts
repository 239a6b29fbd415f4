// Open control channels from connectors, indexed by connector and group. A
// channel leaves the registry the moment its socket ends, fails or closes (not
// after the WebSocket close handshake), or when it misses a heartbeat; each
// request sent on it is tracked until the connector is known to have read it.
// Revocation closes every channel of the connector at once.
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { systemClock, type Clock, type Timer } from '../../clock.js';
import type { Logger } from '../../log.js';
import {
  CLOSE,
  PROTOCOL_BINARY_FRAMES,
  PROTOCOL_IMPLIED,
  type QueuedRequest,
  type RelayMessage,
} from '../../protocol/connector-api.js';
import { encodeRequestFrame } from '../../protocol/binary-frames.js';
import { sendBatched } from '../../net/batching.js';

/**
 * What the relay knows about a request it put on a channel:
 * - `unsent`: never handed to the socket (the channel was already dead), so no connector saw it;
 * - `unacknowledged`: written, but the connector has not answered a ping sent after it, so it
 *   may or may not have read it;
 * - `received`: the connector answered a ping sent after it. It reads frames in order and acts
 *   on a request as it reads it, so it had taken the request (a request without a body is on
 *   its way to the backend by then).
 */
export type Delivery = 'unsent' | 'unacknowledged' | 'received';

export class Channel {
  readonly id = randomUUID();
  /** When the channel opened (ms), for administrators. */
  readonly openedAt = Date.now();
  alive = true;
  /** The connector is shutting down: finish what it has, give it nothing new. */
  draining = false;
  /** The registry has dropped the channel: nothing sent on it arrives. */
  gone = false;
  /** Set by the registry: a request was sent on the channel after it was dropped. */
  onUnsent: ((channel: Channel, requestId: string) => void) | undefined;
  /**
   * Requests written on the channel and not yet settled, each with the sequence number of the
   * ping that acknowledges it. At most one acknowledging ping is outstanding: requests sent
   * meanwhile wait for the next, so a busy channel costs one ping and pong per round trip.
   */
  private readonly sent = new Map<string, { message: QueuedRequest; seq: number }>();
  private readonly unsent = new Map<string, QueuedRequest>();
  private ackSent = 0;
  private ackReceived = 0;
  /** The ping the latest request waits for. */
  private ackWanted = 0;
  private ackScheduled = false;

  constructor(
    readonly ws: WebSocket,
    readonly connectorId: string,
    readonly group: string,
    readonly serial: string,
    readonly version: string,
    /** When the client certificate that opened the channel expires (ms). */
    readonly certNotAfter: number = Infinity,
    /** The protocol version the channel speaks (agreedProtocol): 2 and above, binary request frames. */
    readonly protocol: number = PROTOCOL_IMPLIED,
  ) {
    this.binary = protocol >= PROTOCOL_BINARY_FRAMES;
  }

  /** Requests go out as binary frames (protocol 2), not JSON text. */
  readonly binary: boolean;

  /** Requests sent on the channel or waiting to be, not yet settled. */
  get inFlight(): number {
    return this.sent.size + this.unsent.size;
  }

  /** The TCP/TLS socket under the WebSocket (ws keeps it in a private field, as net/batching.ts reads it). */
  get socket(): Socket | undefined {
    return (this.ws as unknown as { _socket?: Socket })._socket;
  }

  /** Open for new frames: not dropped, the WebSocket open and its socket still writable. */
  get open(): boolean {
    return !this.gone && this.ws.readyState === this.ws.OPEN && this.socket?.writable !== false;
  }

  send(message: RelayMessage): void {
    if (message.type !== 'request') {
      if (this.open) sendBatched(this.ws, JSON.stringify(message), false);
      return;
    }
    if (!this.open) {
      this.unsent.set(message.id, message);
      // A channel still registered reports it when it is dropped; a dropped one, now.
      if (this.gone) this.onUnsent?.(this, message.id);
      return;
    }
    this.ackWanted = this.ackSent + 1;
    this.sent.set(message.id, { message, seq: this.ackWanted });
    // Scheduled before the frame is sent, so the ping joins the same corked write when it can.
    this.scheduleAck();
    if (this.binary) sendBatched(this.ws, encodeRequestFrame(message), true);
    else sendBatched(this.ws, JSON.stringify(message), false);
  }

  /** What is known of the delivery of a request sent on this channel (`received` when unknown). */
  delivery(id: string): Delivery {
    if (this.unsent.has(id)) return 'unsent';
    return (this.sent.get(id)?.seq ?? 0) > this.ackReceived ? 'unacknowledged' : 'received';
  }

  /** A request sent on this channel, until forgotten. */
  message(id: string): QueuedRequest | undefined {
    return this.unsent.get(id) ?? this.sent.get(id)?.message;
  }

  /** The request is settled (answered, failed, or moved to another channel). */
  forget(id: string): void {
    this.sent.delete(id);
    this.unsent.delete(id);
  }

  /** A pong with a payload answers an acknowledging ping: every request sent before that ping was read. */
  acknowledged(payload: Buffer): void {
    const seq = Number(payload.toString('latin1'));
    if (!Number.isInteger(seq) || seq <= this.ackReceived || seq > this.ackSent) return;
    this.ackReceived = seq;
    if (this.ackWanted > seq) this.scheduleAck();
  }

  private scheduleAck(): void {
    if (this.ackScheduled || this.ackSent > this.ackReceived) return;
    this.ackScheduled = true;
    setImmediate(this.sendAck);
  }

  private readonly sendAck = (): void => {
    this.ackScheduled = false;
    if (!this.open || this.ackSent > this.ackReceived) return;
    // Heartbeat pings carry nothing; this one carries its sequence number, echoed in the pong.
    this.ws.ping(String(++this.ackSent));
  };
}

export interface ChannelEvents {
  onSeen(channel: Channel): void;
  onOpen?(channel: Channel): void;
  /** The channel was dropped: it takes nothing new, and requests on it are settled. */
  onClose?(channel: Channel): void;
  /** A request was sent on a channel already dropped (picked before its socket died). */
  onUnsent?(channel: Channel, requestId: string): void;
}

export class ChannelRegistry {
  private readonly channels = new Map<string, Channel>();
  /** Open channels by connector group, kept in step with `channels` (read on every request). */
  private readonly groups = new Map<string, Set<Channel>>();
  private timer: Timer | undefined;
  private intervalMs = 0;
  /** When each connector's presence was last reported (one store write per heartbeat, not per channel). */
  private readonly lastSeen = new Map<string, number>();
  private readonly listeners: ChannelEvents[] = [];

  constructor(
    private readonly log: Logger,
    events: ChannelEvents,
    private readonly clock: Clock = systemClock,
  ) {
    this.listeners.push(events);
  }

  subscribe(events: ChannelEvents): void {
    this.listeners.push(events);
  }

  add(channel: Channel): void {
    this.channels.set(channel.id, channel);
    const group = this.groups.get(channel.group) ?? new Set<Channel>();
    group.add(channel);
    this.groups.set(channel.group, group);
    channel.onUnsent = (ch, id) => {
      for (const l of this.listeners) l.onUnsent?.(ch, id);
    };
    channel.ws.on('pong', (data: Buffer) => {
      channel.alive = true;
      if (data.length > 0) return channel.acknowledged(data);
      this.seen(channel);
    });
    // A connector that dies (killed, crashed, its host reset) leaves a socket that ends or
    // fails at once; the WebSocket 'close' comes later, after ws has finished with it. The
    // channel must take nothing new from the first sign: drop it then.
    const socket = channel.socket;
    const lost = () => this.drop(channel);
    socket?.once('end', lost);
    socket?.once('error', lost);
    socket?.once('close', lost);
    channel.ws.on('close', (code, reason) => {
      this.drop(channel);
      this.log.info(
        { connector_id: channel.connectorId, channel_id: channel.id, code, reason: reason.toString() },
        'connector channel closed',
      );
    });
    this.log.info(
      { connector_id: channel.connectorId, channel_id: channel.id, group: channel.group },
      'connector channel open',
    );
    for (const l of this.listeners) l.onOpen?.(channel);
  }

  /** Removes a channel that died or closed, once, and tells the listeners (the queue settles its requests). */
  private drop(channel: Channel): void {
    if (channel.gone) return;
    channel.gone = true;
    this.channels.delete(channel.id);
    this.groups.get(channel.group)?.delete(channel);
    if (!this.byConnector(channel.connectorId).length) this.lastSeen.delete(channel.connectorId);
    for (const l of this.listeners) l.onClose?.(channel);
  }

  private seen(channel: Channel): void {
    const now = this.clock.now();
    const last = this.lastSeen.get(channel.connectorId);
    // Half an interval: a connector's channels answer the same beat a few ms apart.
    if (last !== undefined && now - last < this.intervalMs / 2) return;
    this.lastSeen.set(channel.connectorId, now);
    for (const l of this.listeners) l.onSeen(channel);
  }

  /**
   * Pings every channel each interval; a channel that has not answered the previous ping is
   * cut. A silent peer (no FIN: a partition, a host gone) is found within two intervals.
   */
  startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
    this.intervalMs = intervalMs;
    this.timer = this.clock.setInterval(() => {
      const now = this.clock.now();
      for (const ch of this.channels.values()) {
        if (ch.certNotAfter <= now) {
          // A channel lives no longer than the certificate that opened it.
          this.log.warn(
            { connector_id: ch.connectorId, channel_id: ch.id },
            'connector certificate expired; closing its channel',
          );
          ch.ws.close(CLOSE.unknown, 'certificate expired');
          this.clock.setTimeout(() => ch.ws.terminate(), 1000).unref();
          continue;
        }
        if (!ch.alive) {
          this.log.warn(
            { connector_id: ch.connectorId, channel_id: ch.id },
            'connector channel missed its heartbeat; closing',
          );
          ch.ws.terminate();
          this.drop(ch);
          continue;
        }
        ch.alive = false;
        ch.ws.ping();
      }
    }, intervalMs);
    this.timer.unref();
  }

  stopHeartbeat(): void {
    this.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  all(): Channel[] {
    return [...this.channels.values()];
  }

  /** The group's channels, without copying (do not keep the iterable). */
  inGroup(group: string): Iterable<Channel> {
    return this.groups.get(group) ?? [];
  }

  byConnector(connectorId: string): Channel[] {
    return this.all().filter((c) => c.connectorId === connectorId);
  }

  broadcast(message: RelayMessage): void {
    for (const ch of this.channels.values()) ch.send(message);
  }

  /** Cuts the channels of a revoked connector; tells it why first. */
  revoke(connectorId: string, reason: string): number {
    const list = this.byConnector(connectorId);
    for (const ch of list) {
      ch.send({ type: 'revoked', reason });
      ch.ws.close(CLOSE.revoked, 'certificate revoked');
      // A connector that ignores the close frame still loses the socket.
      this.clock.setTimeout(() => ch.ws.terminate(), 1000).unref();
    }
    return list.length;
  }

  closeAll(code: number, reason: string): void {
    this.stopHeartbeat();
    for (const ch of this.channels.values()) ch.ws.close(code, reason);
  }

  terminateAll(): void {
    for (const ch of this.channels.values()) {
      ch.gone = true;
      ch.ws.terminate();
    }
    this.channels.clear();
    this.groups.clear();
  }
}
