// Open control channels from connectors, indexed by connector and group. The
// relay pings each one; a channel that misses a heartbeat is cut. Revocation
// closes every channel of the connector at once.
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { systemClock, type Clock, type Timer } from '../../clock.js';
import type { Logger } from '../../log.js';
import { CLOSE, type RelayMessage } from '../../protocol/connector-api.js';
import { sendBatched } from '../../net/batching.js';

export class Channel {
  readonly id = randomUUID();
  alive = true;
  /** The connector is shutting down: finish what it has, give it nothing new. */
  draining = false;
  constructor(
    readonly ws: WebSocket,
    readonly connectorId: string,
    readonly group: string,
    readonly serial: string,
    readonly version: string,
    /** When the client certificate that opened the channel expires (ms). */
    readonly certNotAfter: number = Infinity,
  ) {}

  send(message: RelayMessage): void {
    if (this.ws.readyState === this.ws.OPEN) sendBatched(this.ws, JSON.stringify(message), false);
  }
}

export interface ChannelEvents {
  onSeen(channel: Channel): void;
  onOpen?(channel: Channel): void;
  onClose?(channel: Channel): void;
}

export class ChannelRegistry {
  private readonly channels = new Map<string, Channel>();
  /** Open channels by connector group, kept in step with `channels` (read on every request). */
  private readonly groups = new Map<string, Set<Channel>>();
  private timer: Timer | undefined;
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
    channel.ws.on('pong', () => {
      channel.alive = true;
      for (const l of this.listeners) l.onSeen(channel);
    });
    channel.ws.on('close', (code, reason) => {
      this.channels.delete(channel.id);
      this.groups.get(channel.group)?.delete(channel);
      for (const l of this.listeners) l.onClose?.(channel);
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

  /** Pings every channel each interval; a channel silent for a whole interval is cut. */
  startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
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
    for (const ch of this.channels.values()) ch.ws.terminate();
    this.channels.clear();
    this.groups.clear();
  }
}
