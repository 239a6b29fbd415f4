// TLS session tickets on the public listener, with keys every replica shares through the
// store, so a ticket one replica issued resumes on any other (`public.ticketRotation`).
//
// One random 48-byte key per rotation period, made (crypto.randomBytes) by whichever replica
// first needs it and stored wrapped by the master key; the others read the key that won
// (putIfAbsent). Each replica also loads the NEXT period's key during the current one, so at
// the boundary every replica switches from memory at the same instant, without a store
// round trip. A period's key is deleted from the store shortly after the period ends.
//
// Why random keys per period rather than keys derived from one long-lived secret: forward
// secrecy. A ticket carries the session's resumption secret encrypted under the ticket key;
// once a period's key is gone from memory and store, recorded tickets of that period (and
// the traffic of sessions resumed with them) cannot be opened by anyone who later steals the
// store, the master key or a replica's memory. A derived key can always be derived again.
//
// Node keeps one ticket key per TLS context (server.setTicketKeys), and OpenSSL both opens
// and seals tickets with the keys of the listener's own context, also when SNI switched the
// handshake to an app's certificate (edge/tls-store.ts, acme/manager.ts): installing the key
// on the listener covers every host. With one key at a time, a ticket lives until the end of
// the period it was issued in, which is why the listener's sessionTimeout is one period.
import { randomBytes } from 'node:crypto';
import type { Clock, Timer } from '../clock.js';
import type { SecretWrap } from '../crypto/secret-wrap.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import { sharedSecret } from './shared-secrets.js';

/** Store secrets holding ticket keys are named `tls-ticket-key:<period ms>:<period number>`. */
export const TICKET_SECRET_PREFIX = 'tls-ticket-key:';
/** What Node's setTicketKeys takes: 16 bytes key name, 16 HMAC key, 16 AES key. */
const KEY_BYTES = 48;

export interface SessionTicketsOptions {
  store: Pick<Store, 'secrets'>;
  wrap: SecretWrap | undefined;
  periodMs: number;
  clock: Clock;
  log: Logger;
  /** Puts a key in force on the public listener (server.setTicketKeys). */
  install: (key: Buffer) => void;
}

export class SessionTickets {
  /** Keys loaded from the store, by period number: the current one and the next. */
  private readonly keys = new Map<number, Buffer>();
  /** The key in force and its period; `local`: made here because the store did not answer. */
  private inForce: { period: number; key: Buffer; local: boolean } | undefined;
  private timer: Timer | undefined;
  private pruneTimer: Timer | undefined;
  private running: Promise<void> = Promise.resolve();
  private closed = false;
  /** After a store failure, the next attempt comes this soon (and never later than the boundary). */
  private readonly retryMs: number;
  /** How long after its period ends a key stays in the store, for replicas whose clock is a little behind. */
  private readonly graceMs: number;

  constructor(private readonly opts: SessionTicketsOptions) {
    this.retryMs = Math.min(30_000, Math.floor(opts.periodMs / 10));
    this.graceMs = Math.min(60_000, Math.floor(opts.periodMs / 10));
  }

  /** The listener's sessionTimeout (seconds): a ticket cannot outlive the period of its key. */
  get sessionTimeoutSeconds(): number {
    return Math.floor(this.opts.periodMs / 1000);
  }

  /** Puts the current period's key in force (before the listener takes connections), then keeps it rotating. */
  start(): Promise<void> {
    return this.step();
  }

  /** The key in force, again: after the listener's context was replaced (setSecureContext). */
  reinstall(): void {
    if (this.inForce) this.opts.install(this.inForce.key);
  }

  /** The period number in force and whether its key came from the store (tests, diagnostics). */
  get current(): { period: number; shared: boolean } | undefined {
    return this.inForce && { period: this.inForce.period, shared: !this.inForce.local };
  }

  close(): void {
    this.closed = true;
    this.opts.clock.clearTimeout(this.timer);
    this.opts.clock.clearTimeout(this.pruneTimer);
    for (const key of this.keys.values()) key.fill(0);
    this.keys.clear();
  }

  private periodAt(t: number): number {
    return Math.floor(t / this.opts.periodMs);
  }

  private secretName(period: number): string {
    return `${TICKET_SECRET_PREFIX}${this.opts.periodMs}:${period}`;
  }

  /** One step at a time: a timer firing while a store read is under way waits for it. */
  private step(): Promise<void> {
    this.running = this.running.then(() => this.rotate());
    return this.running;
  }

  private async rotate(): Promise<void> {
    if (this.closed) return;
    const now = this.opts.clock.now();
    const period = this.periodAt(now);
    // At the boundary the key is already in memory: every replica switches now, not after a store read.
    if (this.inForce?.period !== period || this.inForce.local) {
      const key = this.keys.get(period) ?? (await this.load(period));
      if (this.closed) return;
      if (key) this.use(period, key, false);
      else if (this.inForce?.period !== period) {
        // Never keep an old key past its period: a key of our own until the store answers
        // (tickets then resume on this replica only).
        this.use(period, randomBytes(KEY_BYTES), true);
        this.opts.log.warn({ period }, 'TLS ticket key not readable from the store; using a key of this replica');
      }
    }
    const next = this.keys.has(period + 1) || (await this.load(period + 1)) !== undefined;
    if (this.closed) return;
    for (const [p, key] of this.keys)
      if (p < period) {
        key.fill(0);
        this.keys.delete(p);
      }
    this.schedulePrune();
    const boundary = (period + 1) * this.opts.periodMs - this.opts.clock.now();
    const retry = next && !this.inForce?.local ? Infinity : this.retryMs;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = this.opts.clock.setTimeout(() => void this.step(), Math.max(1, Math.min(boundary, retry)));
    this.timer.unref();
  }

  private use(period: number, key: Buffer, local: boolean): void {
    this.opts.install(key);
    if (this.inForce?.local) this.inForce.key.fill(0);
    this.inForce = { period, key, local };
    this.opts.log.info({ period, shared: !local }, 'TLS session ticket key in force');
  }

  /** A period's key from the store, made here when no replica made it yet; undefined when the store fails. */
  private async load(period: number): Promise<Buffer | undefined> {
    try {
      const text = await sharedSecret(this.opts.store, this.secretName(period), this.opts.wrap, async () =>
        randomBytes(KEY_BYTES).toString('base64'),
      );
      const key = Buffer.from(text, 'base64');
      if (key.length !== KEY_BYTES) throw new Error(`the stored key is ${key.length} bytes, not ${KEY_BYTES}`);
      this.keys.set(period, key);
      return key;
    } catch (err) {
      this.opts.log.warn({ period, err: (err as Error).message }, 'cannot load a TLS ticket key from the store');
      return undefined;
    }
  }

  /** Deletes, a little after their period ended, the keys of past periods (of any period length). */
  private schedulePrune(): void {
    this.opts.clock.clearTimeout(this.pruneTimer);
    this.pruneTimer = this.opts.clock.setTimeout(() => void this.prune(), this.graceMs);
    this.pruneTimer.unref();
  }

  private async prune(): Promise<void> {
    if (this.closed) return;
    const now = this.opts.clock.now();
    try {
      for (const { name } of await this.opts.store.secrets.list()) {
        if (!name.startsWith(TICKET_SECRET_PREFIX)) continue;
        const [len, num] = name.slice(TICKET_SECRET_PREFIX.length).split(':').map(Number);
        if (!len || num === undefined || !Number.isSafeInteger(num)) continue;
        if ((num + 1) * len + this.graceMs <= now && (await this.opts.store.secrets.remove(name)))
          this.opts.log.info({ secret: name }, 'expired TLS ticket key deleted');
      }
    } catch (err) {
      this.opts.log.warn({ err: (err as Error).message }, 'cannot delete expired TLS ticket keys');
    }
  }
}
