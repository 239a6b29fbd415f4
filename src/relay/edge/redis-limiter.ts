// Token buckets shared by every replica through Redis (`limits.redis`): the buckets
// of RateLimiter (limits.ts), kept in Redis hashes and changed only by one Lua script,
// so N replicas enforce one limit instead of N. The script reads Redis's own clock:
// one clock for every replica, where the replicas' clocks may drift apart. A replica
// never waits on Redis longer than commandTimeoutMs: when Redis is slow or gone it
// decides alone with per-replica buckets, logs the outage once, and shares again by
// itself once Redis answers. Two ways to ask: take() waits for Redis's answer (exact);
// takeNow() answers at once and settles with Redis afterwards (see there).
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { RateConfig } from '../../config/limits-config.js';
import type { LuaScript, ScriptRunner } from '../../idp/throttle.js';
import type { Logger } from '../../log.js';
import { RateLimiter, type ImmediateRateLimit, type RateLimit, type TakeResult } from './limits.js';

/*
 * KEYS[1] the bucket; ARGV tokens per millisecond, burst, cost, the time in
 * milliseconds ("" = Redis's clock; tests pass theirs), and "debit" when the request
 * was already admitted (takeNow). Returns {1 when taken, the tokens left}. Exactly
 * RateLimiter.take: a missing bucket is full (so a bucket may expire as soon as it
 * would have refilled), and a clock that steps back refills nothing. A debit is taken
 * even from a short bucket, down to -burst: the debt is repaid before anyone is
 * admitted again, so over time the rate holds. Numbers are stored with 17 digits, so
 * they come back as the same doubles.
 */
const SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
end
local taken = 0
if tokens >= cost then
  tokens = tokens - cost
  taken = 1
elseif ARGV[5] == 'debit' then
  tokens = math.max(-burst, tokens - cost)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, math.ceil((burst - tokens) / rate))))
return {taken, string.format('%.17g', tokens)}
`;
const BUCKET: LuaScript = { lua: SCRIPT, sha: createHash('sha1').update(SCRIPT).digest('hex') };

export interface SharedLimitsOptions {
  /** `limits.redis`. */
  url: string;
  log: Logger;
  /** Before every bucket key (default "proxyctl:limits:"); tests use one per run. */
  prefix?: string;
  /** Longest wait for Redis before a take is decided by this replica alone (50 ms). */
  commandTimeoutMs?: number;
  /** While Redis does not answer, one take per this many ms tries it again (1 s). */
  probeEveryMs?: number;
  /** Milliseconds on a monotonic clock, for the per-replica buckets and probe pacing. */
  now?: () => number;
  /** Bucket time in ms given to the script instead of Redis's clock (tests). */
  bucketClock?: () => number;
  /** Milliseconds before reconnect attempt n (default 50·n, at most 1 s). */
  reconnectDelay?: (attempt: number) => number;
}

type Reply = [allowed: number, tokens: string];

/** Redis answers NOSCRIPT when its script cache was flushed or it restarted: send the script itself. */
const isNoScript = (err: unknown): boolean => err instanceof Error && err.message.startsWith('NOSCRIPT');

/**
 * One Redis connection for every shared limit of the relay (rate limits, and the
 * embedded provider's sign-in throttle through ScriptRunner), and the one place that
 * knows whether Redis is answering. Created once per relay; limiters are made per
 * configuration generation with limiter().
 */
export class SharedLimits implements ScriptRunner {
  private readonly client: Redis;
  private readonly log: Logger;
  private readonly where: string;
  private readonly probeEveryMs: number;
  private readonly bucketClock: (() => number) | undefined;
  readonly prefix: string;
  readonly now: () => number;
  /** An outage was logged and has not ended. */
  private down = false;
  private probeAt = 0;
  private closing: Promise<void> | undefined;

  constructor(opts: SharedLimitsOptions) {
    this.log = opts.log;
    this.prefix = opts.prefix ?? 'proxyctl:limits:';
    this.probeEveryMs = opts.probeEveryMs ?? 1000;
    this.now = opts.now ?? (() => performance.now());
    this.bucketClock = opts.bucketClock;
    const u = new URL(opts.url);
    this.where = `${u.protocol}//${u.host}${u.pathname}`;
    const delay = opts.reconnectDelay ?? ((n: number) => Math.min(50 * n, 1000));
    this.client = new Redis(opts.url, {
      connectionName: 'proxyctl-limits',
      // A take is never queued behind a connection that is not up: it is decided here instead.
      enableOfflineQueue: false,
      commandTimeout: opts.commandTimeoutMs ?? 50,
      connectTimeout: 2000,
      maxRetriesPerRequest: 0,
      // A take already decided alone must not be counted again after a reconnect.
      autoResendUnfulfilledCommands: false,
      retryStrategy: delay,
    });
    this.client.on('error', (err: Error) => this.failed(err));
    this.client.on('ready', () => this.answered());
  }

  /** A limit shared under `name` ("ip", "app"); the per-replica fallback has the same rate and burst. */
  limiter(name: string, rate: RateConfig): SharedRateLimiter {
    return new SharedRateLimiter(this, name, rate);
  }

  /** Whether buckets are shared right now (false while starting and during an outage). */
  get shared(): boolean {
    return this.client.status === 'ready' && !this.down;
  }

  /** Runs the bucket script for one take; undefined when Redis is not to be asked now. */
  run(key: string, ratePerMs: number, burst: number, cost: number, debit = false): Promise<Reply> | undefined {
    const args = [ratePerMs, burst, cost, this.bucketClock ? this.bucketClock() : '', debit ? 'debit' : ''];
    return this.runScript(BUCKET, [key], args) as Promise<Reply> | undefined;
  }

  /**
   * Runs a script (EVALSHA, the script itself after NOSCRIPT); undefined when Redis is
   * not to be asked now (not connected, or in an outage between probes), and the
   * caller decides alone. The caller reports a rejection to failed().
   */
  runScript(script: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> | undefined {
    if (this.client.status !== 'ready' || this.closing) return undefined;
    if (this.down) {
      const now = this.now();
      if (now < this.probeAt) return undefined;
      this.probeAt = now + this.probeEveryMs;
    }
    return this.client
      .evalsha(script.sha, keys.length, ...keys, ...args)
      .catch((err: unknown) => {
        if (isNoScript(err)) return this.client.eval(script.lua, keys.length, ...keys, ...args);
        throw err;
      })
      .then((reply) => {
        this.answered();
        return reply;
      });
  }

  /** A take Redis did not answer, or a connection error: log once per outage. */
  failed(err: unknown): void {
    this.probeAt = this.now() + this.probeEveryMs;
    if (this.down || this.closing) return;
    this.down = true;
    this.log.warn(
      { redis: this.where, err: (err as Error)?.message },
      'Redis does not answer: rate limits and the sign-in throttle are per replica until it does',
    );
  }

  private answered(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info({ redis: this.where }, 'Redis answers again: rate limits and the sign-in throttle are shared');
  }

  /** Idempotent. Buckets stay in Redis (they expire by themselves). */
  close(): Promise<void> {
    this.closing ??= this.client
      .quit()
      .then(
        () => undefined,
        () => undefined,
      )
      .finally(() => this.client.disconnect());
    return this.closing;
  }
}

/** Most short buckets remembered per limiter; beyond it the memory is dropped (it only saves round trips). */
const MAX_SHORT = 10_000;

/**
 * A token bucket per key, shared through Redis. What the last answer said about a
 * bucket is kept when it was short of a whole token: until enough time has passed
 * for it to refill, a take is refused without asking Redis (other replicas can only
 * have taken more meanwhile), so a flood from one address costs Redis nothing.
 */
export class SharedRateLimiter implements RateLimit {
  private readonly local: RateLimiter;
  private readonly ratePerMs: number;
  private readonly burst: number;
  private readonly keyPrefix: string;
  /** Tokens a bucket had at `at` (this replica's clock, taken before asking), when fewer than one. */
  private readonly short = new Map<string, { tokens: number; at: number }>();
  /** Debits takeNow sent that Redis has not answered yet. */
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly limits: SharedLimits,
    name: string,
    rate: RateConfig,
  ) {
    this.local = new RateLimiter({ ratePerSec: rate.ratePerSec, burst: rate.burst, now: limits.now });
    this.ratePerMs = rate.ratePerSec / 1000;
    this.burst = rate.burst;
    this.keyPrefix = `${limits.prefix}${name}:`;
  }

  /** The bucket key in Redis for `key`. */
  redisKey(key: string): string {
    return this.keyPrefix + key;
  }

  /**
   * Exact: refused at once when the bucket is known to be short, otherwise decided by
   * Redis (a promise); by this replica's own bucket when Redis is not answering.
   */
  take(key: string, cost = 1): TakeResult | Promise<TakeResult> {
    checkCost(cost, this.burst);
    const now = this.limits.now();
    const short = this.knownShort(key, cost, now);
    if (short) return short;
    const reply = this.limits.run(this.redisKey(key), this.ratePerMs, this.burst, cost);
    if (!reply) return this.local.take(key, cost);
    return reply.then(
      ([taken, left]) => {
        const tokens = this.remember(key, Number(left), now);
        return taken === 1 ? OK : this.refused(tokens, cost);
      },
      (err: unknown) => {
        this.limits.failed(err);
        return this.local.take(key, cost);
      },
    );
  }

  /**
   * Never waits, for callers that must decide synchronously. Refused when the bucket
   * is known to be short, or when this replica's own bucket is empty (so a replica
   * alone never exceeds the rate, Redis or not); otherwise admitted, and the tokens
   * are debited in Redis afterwards, whose answer says whether the bucket is now
   * short. What it costs against take(): a replica admits on what Redis last told it
   * about the bucket, so the replicas together may admit more than the bucket held,
   * by what reaches each before it hears of the others' takes (a round trip); the
   * debt left in the bucket is repaid before anyone is admitted again, so over time
   * the shared rate holds.
   */
  takeNow(key: string, cost = 1): TakeResult {
    checkCost(cost, this.burst);
    const now = this.limits.now();
    const short = this.knownShort(key, cost, now);
    if (short) return short;
    const own = this.local.take(key, cost);
    if (!own.ok) return own;
    const reply = this.limits.run(this.redisKey(key), this.ratePerMs, this.burst, cost, true);
    if (reply) {
      const settled: Promise<void> = reply.then(
        ([, left]) => void this.remember(key, Number(left), now),
        (err: unknown) => this.limits.failed(err),
      );
      this.pending.add(settled);
      void settled.finally(() => this.pending.delete(settled));
    }
    return OK;
  }

  /** This limit as one that always answers at once (takeNow), for synchronous callers. */
  immediate(): ImmediateRateLimit {
    return { take: (key, cost) => this.takeNow(key, cost) };
  }

  /** Resolves once every debit takeNow sent has been answered (or failed). */
  async settled(): Promise<void> {
    while (this.pending.size) await Promise.all(this.pending);
  }

  /** A refusal when the last answer left the bucket short and too little time has passed since. */
  private knownShort(key: string, cost: number, now: number): TakeResult | undefined {
    const known = this.short.get(key);
    if (!known) return undefined;
    // Behind the reading it was taken at, this clock stepped back: only Redis can tell.
    const tokens = now < known.at ? cost : known.tokens + (now - known.at) * this.ratePerMs;
    if (tokens < cost) return this.refused(tokens, cost);
    this.short.delete(key);
    return undefined;
  }

  /** Keeps what Redis said about a bucket with less than a token left (asked at `at`). */
  private remember(key: string, tokens: number, at: number): number {
    if (tokens < 1) {
      if (this.short.size >= MAX_SHORT) this.short.clear();
      this.short.set(key, { tokens, at });
    } else {
      this.short.delete(key);
    }
    return tokens;
  }

  private refused(tokens: number, cost: number): TakeResult {
    const waitMs = (cost - tokens) / this.ratePerMs;
    return { ok: false, retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)) };
  }
}

const OK: TakeResult = Object.freeze({ ok: true });

function checkCost(cost: number, burst: number): void {
  if (!(Number.isFinite(cost) && cost > 0 && cost <= burst))
    throw new RangeError(`cost must be a positive number no larger than burst (${burst}), got ${cost}`);
}
