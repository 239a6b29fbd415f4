// Syslog over TCP or TLS (RFC 5425), records framed by octet counting (RFC 6587).
// TCP carries no acknowledgement from the receiver, so a batch counts as delivered only
// once the connection has stayed up for `confirmMs` after the write: a receiver that
// went away during that time resets the connection, the batch is failed and sent again
// from the stored cursor (duplicates, which receivers drop by event id, never a loss).
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { isIP } from 'node:net';
import type { Clock, Timer } from '../clock.js';
import type { SyslogSinkConfig } from '../config/export-config.js';
import { CLIENT_TLS } from '../crypto/tls-policy.js';
import type { SecurityEvent } from '../store/types.js';
import { octetFrame, syslogLine, type SyslogFields } from './format.js';
import { DeliveryError, type Sink } from './sink.js';

const CONNECT_TIMEOUT_MS = 10_000;

/** One connection and the deliveries waiting to see whether it stays up. */
class Connection {
  failure: DeliveryError | undefined;
  private readonly waiters = new Set<(err: DeliveryError) => void>();

  constructor(readonly socket: Socket) {
    socket.on('error', (err) => this.fail(new DeliveryError('closed', `syslog connection failed: ${err.message}`)));
    socket.on('close', () => this.fail(new DeliveryError('closed', 'syslog receiver closed the connection')));
    socket.on('end', () => socket.destroy());
    // A syslog receiver sends nothing; whatever comes is read and dropped so it cannot fill buffers.
    socket.on('data', () => undefined);
  }

  fail(err: DeliveryError): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.destroy();
    for (const w of this.waiters) w(err);
    this.waiters.clear();
  }

  write(payload: string): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiters.add(reject);
      this.socket.write(payload, (err) => {
        this.waiters.delete(reject);
        if (err) reject(this.failure ?? new DeliveryError('closed', `syslog write failed: ${err.message}`));
        else if (this.failure) reject(this.failure);
        else resolve();
      });
    });
  }

  /** Resolves after ms if the connection is still up then; rejects as soon as it fails. */
  hold(ms: number, clock: Clock): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onFail = (err: DeliveryError) => {
        clock.clearTimeout(timer);
        reject(err);
      };
      const timer = clock.setTimeout(() => {
        this.waiters.delete(onFail);
        if (this.failure) reject(this.failure);
        else resolve();
      }, ms);
      this.waiters.add(onFail);
    });
  }
}

export class SyslogSink implements Sink {
  readonly maxInFlight = 16;
  private conn: Connection | undefined;
  private connecting: Promise<Connection> | undefined;
  private closed = false;
  private readonly fields: SyslogFields;

  constructor(
    private readonly cfg: SyslogSinkConfig,
    private readonly clock: Clock,
  ) {
    this.fields = { facility: cfg.facility, appName: cfg.appName, format: cfg.format };
  }

  async deliver(events: readonly SecurityEvent[]): Promise<void> {
    let payload = '';
    for (const e of events) payload += octetFrame(syslogLine(e, this.fields));
    const conn = await this.connection();
    await conn.write(payload);
    await conn.hold(this.cfg.confirmMs, this.clock);
  }

  close(): Promise<void> {
    this.closed = true;
    this.conn?.fail(new DeliveryError('closed', 'syslog sink closed'));
    this.conn = undefined;
    return Promise.resolve();
  }

  private connection(): Promise<Connection> {
    if (this.closed) return Promise.reject(new DeliveryError('closed', 'syslog sink closed'));
    if (this.conn && !this.conn.failure) return Promise.resolve(this.conn);
    this.conn = undefined;
    this.connecting ??= this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private open(): Promise<Connection> {
    const { host, port, protocol } = this.cfg;
    return new Promise<Connection>((resolve, reject) => {
      const socket =
        protocol === 'tls'
          ? tlsConnect({
              host,
              port,
              ...CLIENT_TLS,
              ...(this.cfg.serverName ? { servername: this.cfg.serverName } : isIP(host) ? {} : { servername: host }),
              ...(this.cfg.caPem ? { ca: this.cfg.caPem } : {}),
              ...(this.cfg.certPem && this.cfg.keyPem ? { cert: this.cfg.certPem, key: this.cfg.keyPem } : {}),
            })
          : tcpConnect({ host, port });
      const ready = protocol === 'tls' ? 'secureConnect' : 'connect';
      const fail = (err: Error) => {
        this.clock.clearTimeout(timer);
        socket.destroy();
        reject(
          new DeliveryError('connect', `syslog connect to ${this.cfg.url} failed: ${err.message}`, { cause: err }),
        );
      };
      const timer: Timer = this.clock.setTimeout(() => fail(new Error('timed out')), CONNECT_TIMEOUT_MS);
      socket.once('error', fail);
      socket.once(ready, () => {
        this.clock.clearTimeout(timer);
        socket.off('error', fail);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        const conn = new Connection(socket);
        if (this.closed) {
          const closed = new DeliveryError('closed', 'syslog sink closed');
          conn.fail(closed);
          reject(closed);
          return;
        }
        this.conn = conn;
        resolve(conn);
      });
    });
  }
}
