// The change feed: one connection of its own (not from the pool) LISTENs on the
// store's channel and hands on the topics other connections NOTIFY, coalesced per
// batch the socket delivers. When the connection drops (PostgreSQL restarting, a
// network cut, a ping unanswered) it reconnects by itself, backing off from 100 ms
// to 5 s with jitter, and reports 'all': notifications sent meanwhile are lost.
import pg from 'pg';
import type { StoreTopic } from '../types.js';
import { quoteIdent, type PgTarget } from './database.js';

const TOPICS: ReadonlySet<string> = new Set<StoreTopic>([
  'connectors',
  'keys',
  'sessions',
  'users',
  'replicas',
  'secrets',
  'risk',
  'objects',
]);

export interface FeedTiming {
  minBackoffMs: number;
  maxBackoffMs: number;
  /** A silent network is only noticed by asking: a ping this often... */
  pingEveryMs: number;
  /** ...that must be answered within this. */
  pingTimeoutMs: number;
}

const DEFAULT_TIMING: FeedTiming = {
  minBackoffMs: 100,
  maxBackoffMs: 5_000,
  pingEveryMs: 10_000,
  pingTimeoutMs: 5_000,
};

export class ChangeFeed {
  private client: pg.Client | undefined;
  private up = false;
  private started = false;
  private closed = false;
  private attempt = 0;
  private retry: NodeJS.Timeout | undefined;
  private ping: NodeJS.Timeout | undefined;
  private pending = new Set<StoreTopic>();
  private pendingAll = false;
  private flushing = false;

  constructor(
    private readonly target: PgTarget,
    private readonly deliver: (topics: ReadonlySet<StoreTopic> | 'all') => void,
    /** Told when the connection comes up or goes down. */
    private readonly state: (up: boolean) => void,
    private readonly timing: FeedTiming = DEFAULT_TIMING,
  ) {}

  get connected(): boolean {
    return this.up;
  }

  /** The first connection; its failure is the caller's (the store does not open). */
  async start(): Promise<void> {
    await this.connect();
    this.started = true;
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ ...this.target.client, application_name: 'proxyctl-listen' });
    this.client = client;
    client.on('error', () => this.dropped(client));
    client.on('end', () => this.dropped(client));
    client.on('notification', (n) => {
      if (n.channel === this.target.channel) this.queue(n.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.target.channel)}`);
    } catch (err) {
      this.dropped(client);
      throw err;
    }
    if (this.client !== client) throw new Error('the change feed connection dropped while it started');
    this.up = true;
    this.attempt = 0;
    this.ping = setInterval(() => this.sendPing(client), this.timing.pingEveryMs).unref();
    this.state(true);
  }

  private sendPing(client: pg.Client): void {
    const watchdog = setTimeout(() => this.dropped(client), this.timing.pingTimeoutMs).unref();
    client.query('SELECT 1').then(
      () => clearTimeout(watchdog),
      () => {
        clearTimeout(watchdog);
        this.dropped(client);
      },
    );
  }

  /** The connection is gone (or given up on): close it for good and, once started, try again. */
  private dropped(client: pg.Client): void {
    if (client !== this.client) return;
    this.client = undefined;
    clearInterval(this.ping);
    client.removeAllListeners('notification');
    client.end().catch(() => undefined);
    if (this.up) {
      this.up = false;
      this.state(false);
    }
    if (this.started && !this.closed) this.reconnectLater();
  }

  private reconnectLater(): void {
    const ceiling = Math.min(this.timing.maxBackoffMs, this.timing.minBackoffMs * 2 ** this.attempt++);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.closed) return;
      // A failed attempt has already scheduled the next one (dropped()).
      this.connect().then(
        () => this.queue('all'),
        () => undefined,
      );
    }, delay).unref();
  }

  private queue(payload: string | undefined): void {
    // A topic this version does not know (a newer replica's) may matter to something: say 'all'.
    if (payload !== undefined && TOPICS.has(payload)) this.pending.add(payload as StoreTopic);
    else this.pendingAll = true;
    if (this.flushing) return;
    this.flushing = true;
    // Notifications parsed from one socket read arrive synchronously: one delivery for them all.
    queueMicrotask(() => {
      this.flushing = false;
      const topics = this.pendingAll ? 'all' : this.pending;
      this.pending = new Set();
      this.pendingAll = false;
      if (!this.closed) this.deliver(topics);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.ping);
    const client = this.client;
    this.client = undefined;
    this.up = false;
    if (client) {
      client.removeAllListeners('notification');
      client.removeAllListeners('end');
      await client.end().catch(() => undefined);
    }
  }
}
