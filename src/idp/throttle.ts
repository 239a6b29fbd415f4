// The embedded provider's sign-in throttle: growing delays, never a hard lock,
// counted per account, per source address, per network and per (account, address).
// Addresses are the relay's vetted client address (trusted proxies honoured).
// LoginThrottle counts in this process; SharedLoginThrottle counts in Redis, for
// every replica at once, with LoginThrottle to fall back on while Redis is away.
import { createHash } from 'node:crypto';
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
    const keys = throttleKeys(username, address);
    const exempt = this.isKnown(keys.account, keys.source, now);
    return verdictOf(exempt, (scope) => this.counters[scope].wait(keys[scope], now));
  }

  /** A wrong password or code: counts in every scope, known source or not. */
  failure(username: string, address: string): void {
    const now = this.now();
    const keys = throttleKeys(username, address);
    for (const scope of SCOPES) this.counters[scope].fail(keys[scope], now);
  }

  /**
   * A complete sign-in: the pair starts afresh and the source becomes known to
   * the account. The account, address and network levels stay: they also hold
   * strangers' failures, which one success says nothing about.
   */
  success(username: string, address: string): void {
    const now = this.now();
    const keys = throttleKeys(username, address);
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
}

const SCOPES = ['pair', 'account', 'address', 'network'] as const;

/** The key of each scope, and the source a success makes known, for one attempt. */
function throttleKeys(username: string, address: string): Record<ThrottleScope | 'source', string> {
  const account = accountOf(username);
  const a = addressKey(address);
  return { pair: `${account} ${a}`, account, address: a, network: networkOf(a), source: sourceOf(a) };
}

/** The longest wait of the scopes that apply (a known source: the pair's only); ties go to the first scope. */
function verdictOf(exempt: boolean, waitMs: (scope: ThrottleScope) => number): ThrottleVerdict {
  let worst: { ms: number; scope: ThrottleScope } = { ms: 0, scope: 'pair' };
  for (const scope of SCOPES) {
    if (exempt && scope !== 'pair') continue;
    const ms = waitMs(scope);
    if (ms > worst.ms) worst = { ms, scope };
  }
  return worst.ms > 0
    ? { allowed: false, retryAfterS: Math.max(1, Math.ceil(worst.ms / 1000)), scope: worst.scope }
    : { allowed: true };
}

/** A Lua script and its SHA-1, under which Redis caches it. */
export interface LuaScript {
  readonly lua: string;
  readonly sha: string;
}

const script = (lua: string): LuaScript => ({ lua, sha: createHash('sha1').update(lua).digest('hex') });

/**
 * What a shared throttle needs of Redis; the relay's SharedLimits (relay/edge) is one.
 * runScript answers undefined when Redis is not to be asked now (an outage): the
 * caller then decides alone, and reports a rejected run to failed().
 */
export interface ScriptRunner {
  readonly prefix: string;
  runScript(script: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> | undefined;
  failed(err: unknown): void;
}

/* Each script: ARGV[1] the time in ms, "" for Redis's clock (tests pass theirs). */
const NOW = `
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
`;

/** KEYS pair, account, address, network, known; ARGV now, source, knownForMs. Returns {exempt, wait ms ×4}. */
const CHECK = script(`${NOW}
local out = {0}
local at = tonumber(redis.call('ZSCORE', KEYS[5], ARGV[2]))
if at and now - at < tonumber(ARGV[3]) then out[1] = 1 end
for i = 1, 4 do
  local nextAt = tonumber(redis.call('HGET', KEYS[i], 'nextAt'))
  local wait = 0
  if nextAt and nextAt > now then wait = nextAt - now end
  out[i + 1] = string.format('%.17g', wait)
end
return out
`);

/**
 * KEYS pair, account, address, network; ARGV now, then free, forgiveMs, baseDelayMs,
 * maxDelayMs of each scope. DelayCounter.fail on each, with its arithmetic; an entry
 * expires once fully forgiven and its wait is over.
 */
const FAILURE = script(`${NOW}
for i = 1, 4 do
  local o = 1 + (i - 1) * 4
  local free, forgive = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local base, max = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  local e = redis.call('HMGET', KEYS[i], 'level', 'at')
  local level = 0
  if e[1] and e[2] then level = math.max(0, tonumber(e[1]) - (now - tonumber(e[2])) / forgive) end
  level = level + 1
  local excess = math.ceil(level) - free
  local delay = 0
  if excess >= 0 then delay = math.min(max, base * 2 ^ math.min(excess, 40)) end
  redis.call('HSET', KEYS[i], 'level', string.format('%.17g', level), 'at', string.format('%.17g', now),
    'nextAt', string.format('%.17g', now + delay))
  redis.call('PEXPIRE', KEYS[i], string.format('%d', math.max(1, math.ceil(math.max(delay, level * forgive)))))
end
return 1
`);

/** KEYS pair, known; ARGV now, source, knownPerAccount, knownForMs. */
const SUCCESS = script(`${NOW}
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[2], string.format('%.17g', now), ARGV[2])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1) end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`);

export interface SharedLoginThrottleOptions extends LoginThrottleOptions {
  redis: ScriptRunner;
  /** Time in ms given to the scripts instead of Redis's clock (tests). */
  scriptClock?: () => number;
}

/**
 * LoginThrottle with its counters and known sources in Redis, so every replica sees
 * every failure: guesses spread over N replicas are slowed as on one. Its answers
 * take a round trip. The local LoginThrottle records every attempt all along, and
 * answers instead while Redis does not (per replica then, as without Redis). Known
 * sources outlive a restart here (knownForMs), where LoginThrottle forgets them.
 */
export class SharedLoginThrottle {
  private readonly local: LoginThrottle;
  private readonly redis: ScriptRunner;
  private readonly rules: Record<ThrottleScope, DelayRule>;
  private readonly knownForMs: number;
  private readonly knownPerAccount: number;
  private readonly scriptClock: (() => number) | undefined;

  constructor(opts: SharedLoginThrottleOptions) {
    this.local = new LoginThrottle(opts);
    this.redis = opts.redis;
    this.rules = { ...DEFAULT_RULES, ...opts.rules };
    this.knownForMs = opts.knownForMs ?? 30 * 24 * 60 * MIN;
    this.knownPerAccount = Math.max(1, opts.knownPerAccount ?? 8);
    this.scriptClock = opts.scriptClock;
  }

  /** As LoginThrottle.check, from the counters of every replica. */
  async check(username: string, address: string): Promise<ThrottleVerdict> {
    const keys = throttleKeys(username, address);
    const reply = this.run(
      CHECK,
      [...SCOPES.map((s) => this.key(s, keys[s])), this.key('known', keys.account)],
      [keys.source, this.knownForMs],
    );
    if (reply) {
      try {
        const [exempt, ...waits] = (await reply) as [number, string, string, string, string];
        return verdictOf(exempt === 1, (scope) => Number(waits[SCOPES.indexOf(scope)]));
      } catch (err) {
        this.redis.failed(err);
      }
    }
    return this.local.check(username, address);
  }

  /** As LoginThrottle.failure, counted for every replica. */
  async failure(username: string, address: string): Promise<void> {
    this.local.failure(username, address);
    const keys = throttleKeys(username, address);
    const args = SCOPES.flatMap((s) => {
      const r = this.rules[s];
      return [r.free, r.forgiveMs, r.baseDelayMs, r.maxDelayMs];
    });
    await this.settle(
      this.run(
        FAILURE,
        SCOPES.map((s) => this.key(s, keys[s])),
        args,
      ),
    );
  }

  /** As LoginThrottle.success, known to every replica. */
  async success(username: string, address: string): Promise<void> {
    this.local.success(username, address);
    const keys = throttleKeys(username, address);
    await this.settle(
      this.run(
        SUCCESS,
        [this.key('pair', keys.pair), this.key('known', keys.account)],
        [keys.source, this.knownPerAccount, this.knownForMs],
      ),
    );
  }

  /** The Redis key of a scope's counter, or of an account's known sources. */
  key(scope: ThrottleScope | 'known', key: string): string {
    return `${this.redis.prefix}signin:${scope}:${key}`;
  }

  private run(s: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> | undefined {
    return this.redis.runScript(s, keys, [this.scriptClock ? this.scriptClock() : '', ...args]);
  }

  private async settle(reply: Promise<unknown> | undefined): Promise<void> {
    try {
      await reply;
    } catch (err) {
      this.redis.failed(err);
    }
  }
}
