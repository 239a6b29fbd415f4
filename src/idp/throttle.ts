// The embedded provider's sign-in throttle: growing delays, never a hard lock,
// counted per account, per source address, per network and per (account, address).
// Addresses are the relay's vetted client address (trusted proxies honoured).
import { isIP } from 'node:net';
import { canonicalAddress, networkOf } from '../net/address.js';
import { USERNAME_PATTERN } from './users.js';

/**
 * How one scope slows down. Each failure adds one to a level that leaks away,
 * one every `forgiveMs`. Once a failure brings the level to `free` or above, the
 * next attempt is not evaluated before `baseDelayMs · 2^(level − free)` (at most
 * `maxDelayMs`) has passed: with free 5 and base 1 s, the sixth attempt waits
 * 1 s, the seventh 2 s, then 4 s, 8 s… Attempts refused for waiting are not
 * counted, so hammering does not lengthen the wait.
 */
export interface DelayRule {
  free: number;
  forgiveMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export type ThrottleScope = 'pair' | 'account' | 'address' | 'network';

const MIN = 60_000;

/*
 * The numbers. Sustained, an attacker gets about one evaluated guess per key
 * per maxDelayMs, or per forgiveMs when that is shorter, once the free ones are spent:
 *   account  ~150 guesses a day against one account from the whole internet;
 *   address  ~300 a day from one address (spraying over many accounts);
 *   network  ~1500 a day from one IPv4 /24 or IPv6 /64;
 *   pair     the account rule again, for the one (account, address) pair, which
 *            is what still holds a source that bypasses the account rule (below).
 * A wait is never longer than 10 minutes: a stranger can slow an account down,
 * never lock it.
 */
export const DEFAULT_RULES: Readonly<Record<ThrottleScope, DelayRule>> = Object.freeze({
  pair: { free: 5, forgiveMs: 15 * MIN, baseDelayMs: 1000, maxDelayMs: 10 * MIN },
  account: { free: 5, forgiveMs: 15 * MIN, baseDelayMs: 1000, maxDelayMs: 10 * MIN },
  address: { free: 20, forgiveMs: 5 * MIN, baseDelayMs: 1000, maxDelayMs: 10 * MIN },
  network: { free: 50, forgiveMs: MIN, baseDelayMs: 1000, maxDelayMs: 10 * MIN },
});

export interface LoginThrottleOptions {
  rules?: Partial<Record<ThrottleScope, DelayRule>>;
  /** Keys tracked at most per scope, and accounts with known sources (20 000). */
  maxEntries?: number;
  /** How long a successful sign-in makes its source known to the account (30 days). */
  knownForMs?: number;
  /** Known sources remembered per account, most recent first (8). */
  knownPerAccount?: number;
  now?: () => number;
}

export type ThrottleVerdict = { allowed: true } | { allowed: false; retryAfterS: number; scope: ThrottleScope };

/** How many of the oldest entries a sweep or an eviction looks through. */
const EVICT_SCAN = 64;

interface Level {
  level: number;
  at: number;
  nextAt: number;
}

/** One scope's leaky counters, bounded; the least recently failed key is evicted first. */
class DelayCounter {
  private readonly entries = new Map<string, Level>();

  constructor(
    private readonly rule: DelayRule,
    private readonly maxEntries: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Milliseconds before `key` may be tried again (0: now). */
  wait(key: string, now: number): number {
    const e = this.live(key, now);
    return e ? Math.max(0, e.nextAt - now) : 0;
  }

  fail(key: string, now: number): void {
    const e = this.live(key, now);
    const level = (e ? this.decayed(e, now) : 0) + 1;
    const excess = Math.ceil(level) - this.rule.free; // a failure counts in full until wholly forgiven
    const delay = excess < 0 ? 0 : Math.min(this.rule.maxDelayMs, this.rule.baseDelayMs * 2 ** Math.min(excess, 40));
    this.entries.delete(key); // re-insert: Map order is least recently failed first
    this.sweep(now);
    this.evictIfFull(now);
    this.entries.set(key, { level, at: now, nextAt: now + delay });
  }

  clear(key: string): void {
    this.entries.delete(key);
  }

  private decayed(e: Level, now: number): number {
    return Math.max(0, e.level - (now - e.at) / this.rule.forgiveMs);
  }

  /** The entry for `key`, dropped once fully forgiven and its wait is over. */
  private live(key: string, now: number): Level | undefined {
    const e = this.entries.get(key);
    if (e && e.nextAt <= now && this.decayed(e, now) === 0) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Drops fully forgiven entries from the old end, so memory follows recent failures, not the cap. */
  private sweep(now: number): void {
    let scanned = 0;
    for (const [k, e] of this.entries) {
      if (++scanned > EVICT_SCAN || e.nextAt > now || this.decayed(e, now) > 0) break;
      this.entries.delete(k);
    }
  }

  private evictIfFull(now: number): void {
    if (this.entries.size < this.maxEntries) return;
    // Prefer an old entry that imposes no wait, so a flood of new keys cannot
    // cheaply lift the wait on a key under attack; fall back to the very oldest.
    let victim: string | undefined;
    let scanned = 0;
    for (const [k, e] of this.entries) {
      victim ??= k;
      if (e.nextAt <= now) {
        victim = k;
        break;
      }
      if (++scanned >= EVICT_SCAN) break;
    }
    if (victim !== undefined) this.entries.delete(victim);
  }
}

/** The key an address is counted under: its one spelling, junk truncated. */
function addressKey(address: string): string {
  return canonicalAddress(address).slice(0, 64) || '(unknown)';
}

/** What makes a source "the same place" for an account: the address, or for IPv6 its /64 (privacy addresses rotate within it). */
function sourceOf(address: string): string {
  const a = addressKey(address);
  return isIP(a) === 6 ? networkOf(a) : a;
}

/** Names that cannot be a user share one account key, so junk names cannot fill the table. */
function accountOf(username: string): string {
  return USERNAME_PATTERN.test(username) ? username : '(not a user name)';
}

/**
 * Why a known source bypasses the account rule: the account rule is what a
 * stranger anywhere can drive up, so on its own it would let anyone keep the
 * real user waiting. A source where this account signed in successfully within
 * `knownForMs` is exempt from the account, address and network rules (a shared
 * office or carrier address full of strangers does not hold its members back),
 * but never from the pair rule: whoever shares that address with the user still
 * gets no more than the account rule's rate, at that one address. Being known
 * needs a full sign-in, so it is never granted to a guesser; it is kept in
 * memory only, so after a restart every source starts unknown.
 */
export class LoginThrottle {
  private readonly counters: Record<ThrottleScope, DelayCounter>;
  private readonly known = new Map<string, Map<string, number>>();
  private readonly maxEntries: number;
  private readonly knownForMs: number;
  private readonly knownPerAccount: number;
  private readonly now: () => number;

  constructor(opts: LoginThrottleOptions = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 20_000);
    const rules = { ...DEFAULT_RULES, ...opts.rules };
    this.counters = {
      pair: new DelayCounter(rules.pair, this.maxEntries),
      account: new DelayCounter(rules.account, this.maxEntries),
      address: new DelayCounter(rules.address, this.maxEntries),
      network: new DelayCounter(rules.network, this.maxEntries),
    };
    this.knownForMs = opts.knownForMs ?? 30 * 24 * 60 * MIN;
    this.knownPerAccount = Math.max(1, opts.knownPerAccount ?? 8);
    this.now = opts.now ?? Date.now;
  }

  /** Keys tracked per scope, and accounts with known sources. */
  get sizes(): Record<ThrottleScope | 'known', number> {
    const c = this.counters;
    return {
      pair: c.pair.size,
      account: c.account.size,
      address: c.address.size,
      network: c.network.size,
      known: this.known.size,
    };
  }

  /** May an attempt for `username` from `address` be evaluated now? The same answer whether or not the user exists. */
  check(username: string, address: string): ThrottleVerdict {
    const now = this.now();
    const keys = this.keys(username, address);
    const exempt = this.isKnown(keys.account, keys.source, now);
    let worst: { ms: number; scope: ThrottleScope } = { ms: 0, scope: 'pair' };
    for (const scope of ['pair', 'account', 'address', 'network'] as const) {
      if (exempt && scope !== 'pair') continue;
      const ms = this.counters[scope].wait(keys[scope], now);
      if (ms > worst.ms) worst = { ms, scope };
    }
    return worst.ms > 0
      ? { allowed: false, retryAfterS: Math.max(1, Math.ceil(worst.ms / 1000)), scope: worst.scope }
      : { allowed: true };
  }

  /** A wrong password or code: counts in every scope, known source or not. */
  failure(username: string, address: string): void {
    const now = this.now();
    const keys = this.keys(username, address);
    for (const scope of ['pair', 'account', 'address', 'network'] as const) this.counters[scope].fail(keys[scope], now);
  }

  /**
   * A complete sign-in: the pair starts afresh and the source becomes known to
   * the account. The account, address and network levels stay: they also hold
   * strangers' failures, which one success says nothing about.
   */
  success(username: string, address: string): void {
    const now = this.now();
    const keys = this.keys(username, address);
    this.counters.pair.clear(keys.pair);
    const sources = this.known.get(keys.account) ?? new Map<string, number>();
    this.known.delete(keys.account);
    sources.delete(keys.source);
    sources.set(keys.source, now);
    for (const k of sources.keys()) {
      if (sources.size <= this.knownPerAccount) break;
      sources.delete(k); // oldest first
    }
    if (this.known.size >= this.maxEntries) {
      const oldest = this.known.keys().next().value;
      if (oldest !== undefined) this.known.delete(oldest);
    }
    this.known.set(keys.account, sources);
  }

  private isKnown(account: string, source: string, now: number): boolean {
    const at = this.known.get(account)?.get(source);
    return at !== undefined && now - at < this.knownForMs;
  }

  private keys(username: string, address: string): Record<ThrottleScope | 'source', string> {
    const account = accountOf(username);
    const a = addressKey(address);
    return { pair: `${account} ${a}`, account, address: a, network: networkOf(a), source: sourceOf(a) };
  }
}
