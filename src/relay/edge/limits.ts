// Abuse limits on the public listener, independent of HTTP routing:
//   * RateLimiter: token buckets per key (client address, app), O(1) per call,
//     bounded memory (least recently used keys are forgotten first); buckets
//     shared by replicas through Redis are in redis-limiter.ts;
//   * ConnectionCap: open sockets per remote address, refused before TLS;
//   * TrustedProxies: which address is the client when the relay sits behind
//     load balancers or CDNs that add X-Forwarded-For.
import type { Server as NetServer, Socket } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import { AddressSet, canonicalAddress, parseForwardedAddress } from '../../net/address.js';

export type TakeResult = { ok: true } | { ok: false; retryAfterS: number };

/**
 * What the request path asks of a rate limit. The per-replica RateLimiter always
 * answers at once; the shared one (redis-limiter.ts) answers at once when it
 * already knows the bucket is short, and otherwise after a round trip to Redis.
 */
export interface RateLimit {
  take(key: string, cost?: number): TakeResult | Promise<TakeResult>;
}

/** A rate limit that always answers at once (RateLimiter, or SharedRateLimiter.immediate()). */
export interface ImmediateRateLimit {
  take(key: string, cost?: number): TakeResult;
}

export interface RateLimiterOptions {
  /** Tokens added per second (may be fractional: 0.5 = one every two seconds). */
  ratePerSec: number;
  /** Bucket size: how many requests may arrive at once after a quiet period. */
  burst: number;
  /** Milliseconds on a monotonic clock; injected by tests. */
  now?: () => number;
  /** Keys remembered at most; beyond it the least recently used is forgotten. */
  maxKeys?: number;
}

interface Bucket {
  key: string;
  tokens: number;
  at: number;
  /** Recency list: `older` towards the least recently used, `newer` towards the most. */
  older: Bucket | undefined;
  newer: Bucket | undefined;
}

const OK: TakeResult = Object.freeze({ ok: true });

/**
 * Token bucket per key. A key not seen before (or forgotten) starts full.
 * Buckets sit in a Map for lookup and a doubly linked recency list for
 * eviction, both O(1). (Evicting through a Map's own insertion order is not:
 * V8 walks past every deleted entry to find the first live one.)
 */
export class RateLimiter implements RateLimit, ImmediateRateLimit {
  private readonly buckets = new Map<string, Bucket>();
  /** Least and most recently used. */
  private oldest: Bucket | undefined;
  private newest: Bucket | undefined;
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(opts: RateLimiterOptions) {
    if (!(Number.isFinite(opts.ratePerSec) && opts.ratePerSec > 0))
      throw new RangeError(`ratePerSec must be a positive number, got ${opts.ratePerSec}`);
    if (!(Number.isFinite(opts.burst) && opts.burst >= 1))
      throw new RangeError(`burst must be at least 1, got ${opts.burst}`);
    const maxKeys = opts.maxKeys ?? 100_000;
    if (!(Number.isInteger(maxKeys) && maxKeys >= 1))
      throw new RangeError(`maxKeys must be a positive whole number, got ${maxKeys}`);
    this.rate = opts.ratePerSec / 1000;
    this.burst = opts.burst;
    this.now = opts.now ?? (() => performance.now());
    this.maxKeys = maxKeys;
  }

  /** Keys currently remembered. */
  get size(): number {
    return this.buckets.size;
  }

  /**
   * Takes `cost` tokens from the key's bucket. When there are not enough,
   * nothing is taken and `retryAfterS` (whole seconds, at least 1, suitable
   * for Retry-After) says when there will be.
   */
  take(key: string, cost = 1): TakeResult {
    if (!(Number.isFinite(cost) && cost > 0 && cost <= this.burst)) {
      throw new RangeError(`cost must be a positive number no larger than burst (${this.burst}), got ${cost}`);
    }
    const now = this.now();
    let b = this.buckets.get(key);
    if (b) {
      // A clock that steps back refills nothing rather than draining the bucket.
      b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) * this.rate);
      b.at = now;
      this.unlink(b);
    } else {
      if (this.buckets.size >= this.maxKeys && this.oldest) {
        const gone = this.oldest;
        this.unlink(gone);
        this.buckets.delete(gone.key);
      }
      b = { key, tokens: this.burst, at: now, older: undefined, newer: undefined };
      this.buckets.set(key, b);
    }
    this.pushNewest(b);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return OK;
    }
    const waitMs = (cost - b.tokens) / this.rate;
    return { ok: false, retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)) };
  }

  /** Forgets every key. */
  clear(): void {
    this.buckets.clear();
    this.oldest = this.newest = undefined;
  }

  private unlink(b: Bucket): void {
    if (b.older) b.older.newer = b.newer;
    else this.oldest = b.newer;
    if (b.newer) b.newer.older = b.older;
    else this.newest = b.older;
    b.older = b.newer = undefined;
  }

  private pushNewest(b: Bucket): void {
    b.older = this.newest;
    b.newer = undefined;
    if (this.newest) this.newest.newer = b;
    else this.oldest = b;
    this.newest = b;
  }
}

/**
 * Caps open sockets per remote address. Counted on the server's 'connection'
 * event, which for TLS (and HTTPS) servers is the raw TCP socket, before any
 * handshake work; a socket beyond the cap is destroyed at once, unanswered.
 */
export class ConnectionCap {
  private readonly open = new Map<string, number>();

  constructor(
    private readonly maxPerAddress: number,
    private readonly onRefused?: (address: string) => void,
  ) {
    if (!(Number.isInteger(maxPerAddress) && maxPerAddress >= 1))
      throw new RangeError(`maxPerAddress must be a positive whole number, got ${maxPerAddress}`);
  }

  attach(server: NetServer | TlsServer): void {
    server.on('connection', (socket: Socket) => this.admit(socket));
  }

  /** Open sockets from this address (IPv4-mapped IPv6 counted as IPv4). */
  count(address: string): number {
    return this.open.get(canonicalAddress(address)) ?? 0;
  }

  private admit(socket: Socket): void {
    const remote = socket.remoteAddress;
    // No address: the peer is already gone.
    if (remote === undefined) return void socket.destroy();
    const address = canonicalAddress(remote);
    const n = this.open.get(address) ?? 0;
    if (n >= this.maxPerAddress) {
      socket.destroy();
      this.onRefused?.(address);
      return;
    }
    this.open.set(address, n + 1);
    socket.once('close', () => {
      const left = (this.open.get(address) ?? 1) - 1;
      if (left > 0) this.open.set(address, left);
      else this.open.delete(address);
    });
  }
}

/**
 * Which address is the client. X-Forwarded-For is believed only from a peer
 * in a trusted range, and only as far as it was written by trusted proxies:
 * walking from the right (the hop nearest the relay), trusted entries are
 * skipped and the first untrusted one is the client. Entries left of it were
 * written by the client itself and are dropped.
 */
export class TrustedProxies {
  private readonly list: AddressSet;

  constructor(cidrs: readonly string[]) {
    this.list = new AddressSet(cidrs);
  }

  isTrusted(address: string): boolean {
    return this.list.has(address);
  }

  /**
   * `client`: the address to log, rate-limit and evaluate policies on.
   * `trustedChain`: the vetted X-Forwarded-For (client first, then the trusted
   * hops, normalized) to which the socket address is appended for the backend;
   * undefined when the peer is not trusted or sent no usable header.
   */
  clientAddress(
    socketAddress: string,
    xForwardedFor: string | undefined,
  ): { client: string; trustedChain: string | undefined } {
    const peer = canonicalAddress(socketAddress);
    const untrusted = { client: peer, trustedChain: undefined };
    if (xForwardedFor === undefined || !this.isTrusted(peer)) return untrusted;
    const entries = xForwardedFor.split(',');
    const chain: string[] = [];
    for (let i = entries.length - 1; i >= 0; i--) {
      const entry = entries[i]!;
      // Empty elements ("a,,b", trailing commas) are allowed by the list syntax.
      if (entry.trim() === '') continue;
      const a = parseForwardedAddress(entry);
      if (a === undefined) return untrusted;
      chain.unshift(a);
      if (!this.isTrusted(a)) break;
    }
    // Every hop trusted: the furthest one is as close to the client as we can tell.
    if (chain.length === 0) return untrusted;
    return { client: chain[0]!, trustedChain: chain.join(', ') };
  }
}
