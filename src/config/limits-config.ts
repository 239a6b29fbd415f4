// The `limits:` part of the relay config: request rates, connections per
// address, parser and timeout limits of the public listener, and which proxies
// in front of the relay may name the client in X-Forwarded-For, and the Redis that
// replicas share request rates through. Every key is optional; the defaults suit a
// relay facing the internet directly.
import { parseCidr } from '../net/address.js';
import { Validation, duration, int, join, obj, strList, url } from './schema.js';

export interface RateConfig {
  readonly ratePerSec: number;
  readonly burst: number;
}

export interface LimitsConfig {
  /** Requests per client address; undefined = no limit (`perIp: false`). */
  readonly perIp: RateConfig | undefined;
  /** Requests per app, all clients together; undefined = no limit (the default). */
  readonly perApp: RateConfig | undefined;
  /** Open connections per client address (counted before TLS). */
  readonly connectionsPerIp: number;
  /** Time allowed for a request's headers to arrive in full. */
  readonly headersTimeoutMs: number;
  /** How long an idle keep-alive connection is kept open between requests. */
  readonly idleTimeoutMs: number;
  /** Time allowed for a whole request (headers and body); 0 = no limit. */
  readonly requestTimeoutMs: number;
  /** Longest pause allowed between two pieces of a request body. */
  readonly bodyIdleTimeoutMs: number;
  /** Request line and headers together, in bytes. */
  readonly maxHeaderBytes: number;
  /** Header fields in one request. */
  readonly maxHeaders: number;
  /** CIDR ranges (or single addresses) of proxies whose X-Forwarded-For is believed. */
  readonly trustedProxies: readonly string[];
  /**
   * Redis URL (redis: or rediss:, optional /db) through which replicas share the perIp
   * and perApp buckets; undefined = buckets per replica.
   */
  readonly redis: string | undefined;
  /** On SIGTERM, how long answers in flight may take to finish before their connections are cut. */
  readonly drainTimeoutMs: number;
}

export const LIMITS_KEYS = [
  'perIp',
  'perApp',
  'connectionsPerIp',
  'headersTimeout',
  'idleTimeout',
  'requestTimeout',
  'bodyIdleTimeout',
  'maxHeaderBytes',
  'maxHeaders',
  'trustedProxies',
  'redis',
  'drainTimeout',
] as const;

export const LIMITS_DEFAULTS: LimitsConfig = Object.freeze({
  // Generous: a whole office can sit behind one NAT address.
  perIp: Object.freeze({ ratePerSec: 300, burst: 600 }),
  perApp: undefined,
  connectionsPerIp: 256,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 65_000,
  requestTimeoutMs: 0,
  bodyIdleTimeoutMs: 30_000,
  maxHeaderBytes: 32 * 1024,
  maxHeaders: 100,
  trustedProxies: Object.freeze([]),
  redis: undefined,
  drainTimeoutMs: 30_000,
});

const MAX_RATE = 1_000_000;

function rate(v: Validation, path: string, raw: unknown, fallback: RateConfig | undefined): RateConfig | undefined {
  if (raw === undefined) return fallback;
  if (raw === false) return undefined;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    v.fail(path, raw, 'a mapping { ratePerSec, burst }, or false for no limit');
    return fallback;
  }
  const o = obj(v, path, raw, ['ratePerSec', 'burst']) ?? {};
  const r = o['ratePerSec'];
  let ratePerSec = fallback?.ratePerSec ?? 1;
  if (typeof r !== 'number' || !Number.isFinite(r) || r <= 0 || r > MAX_RATE) {
    v.fail(
      join(path, 'ratePerSec'),
      r,
      `a number of requests per second above 0, at most ${MAX_RATE} (0.5 = one every two seconds)`,
    );
  } else {
    ratePerSec = r;
  }
  // Without an explicit burst, two seconds' worth (as the perIp default, 300/s and 600).
  const burst = int(v, join(path, 'burst'), o['burst'], Math.max(1, Math.ceil(ratePerSec * 2)), 1, 2 * MAX_RATE);
  return { ratePerSec, burst };
}

/**
 * Positive whole number of bytes, or a size: "512", "10MB", "512KiB", "1.5GB".
 * KB/MB/GB are powers of 1000, KiB/MiB/GiB powers of 1024, B or nothing bytes.
 */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?$/.exec(text.trim());
  if (!m) return undefined;
  const unit = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m[2] ?? 'B']!;
  const n = Number(m[1]) * unit;
  if (!Number.isFinite(n) || n > Number.MAX_SAFE_INTEGER || !Number.isInteger(n)) return undefined;
  return n;
}

/** A config value given as a number of bytes or as a size string; undefined when neither. */
function bytesOf(raw: unknown): number | undefined {
  return typeof raw === 'number' ? raw : typeof raw === 'string' ? parseSize(raw) : undefined;
}

/** A per-app `maxBodyBytes`: undefined = no limit. */
export function parseBodyLimit(v: Validation, path: string, raw: unknown): number | undefined {
  if (raw === undefined) return undefined;
  const n = bytesOf(raw);
  if (n === undefined || !Number.isSafeInteger(n) || n < 1) {
    return v.fail(path, raw, 'a positive whole number of bytes, or a size such as 512KiB, 10MB, 1GiB');
  }
  return n;
}

/** Bytes as a number or a size ("32KiB"); 1 KiB (room for a request line) to 1 MiB (far above any browser). */
function headerBytes(v: Validation, path: string, raw: unknown, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = bytesOf(raw);
  if (n === undefined || !Number.isInteger(n) || n < 1024 || n > 1024 * 1024) {
    v.fail(path, raw, 'a whole number of bytes or a size from 1KiB to 1MiB, such as 32768 or 32KiB');
    return fallback;
  }
  return n;
}

/** `limits:` as written in the relay config (raw is the value of that key, undefined when absent). */
export function buildLimits(v: Validation, raw: unknown): LimitsConfig {
  const path = 'limits';
  const o = obj(v, path, raw, LIMITS_KEYS) ?? {};
  const d = LIMITS_DEFAULTS;
  const at = (key: string) => join(path, key);
  const ms = (key: string, fallback: number, minMs: number) => duration(v, at(key), o[key], `${fallback}ms`, minMs);
  // In key order, so problems are reported in the order they are written.
  const perIp = rate(v, at('perIp'), o['perIp'], d.perIp);
  const perApp = rate(v, at('perApp'), o['perApp'], d.perApp);
  const connectionsPerIp = int(v, at('connectionsPerIp'), o['connectionsPerIp'], d.connectionsPerIp, 1, 1_000_000);
  const headersTimeoutMs = ms('headersTimeout', d.headersTimeoutMs, 100);
  const idleTimeoutMs = ms('idleTimeout', d.idleTimeoutMs, 100);
  const rt = o['requestTimeout'];
  const requestTimeoutMs = duration(v, at('requestTimeout'), rt === 0 ? '0ms' : rt, `${d.requestTimeoutMs}ms`, 0, {
    none: '0ms',
  });
  if (requestTimeoutMs > 0 && headersTimeoutMs > requestTimeoutMs) {
    // node:http refuses a headers timeout longer than the request timeout.
    v.fail(
      at('headersTimeout'),
      o['headersTimeout'] ?? `${headersTimeoutMs}ms`,
      'a duration no longer than limits.requestTimeout',
    );
  }
  const bodyIdleTimeoutMs = ms('bodyIdleTimeout', d.bodyIdleTimeoutMs, 100);
  const maxHeaderBytes = headerBytes(v, at('maxHeaderBytes'), o['maxHeaderBytes'], d.maxHeaderBytes);
  const maxHeaders = int(v, at('maxHeaders'), o['maxHeaders'], d.maxHeaders, 1, 10_000);
  const trustedProxies = strList(v, at('trustedProxies'), o['trustedProxies'], []);
  trustedProxies.forEach((c, i) => {
    if (!parseCidr(c))
      v.fail(join(at('trustedProxies'), i), c, 'a CIDR range such as 10.0.0.0/8 or 2001:db8::/32, or a single address');
  });
  const redis = redisUrl(v, at('redis'), o['redis']);
  const dt = o['drainTimeout'];
  // 0: cut at once (the in-flight answers are not waited for); at most an hour.
  const drainTimeoutMs = duration(v, at('drainTimeout'), dt === 0 ? '0ms' : dt, `${d.drainTimeoutMs}ms`, 0);
  if (drainTimeoutMs > 3_600_000) v.fail(at('drainTimeout'), dt, 'a duration of at most 1h');
  return {
    perIp,
    perApp,
    connectionsPerIp,
    headersTimeoutMs,
    idleTimeoutMs,
    requestTimeoutMs,
    bodyIdleTimeoutMs,
    maxHeaderBytes,
    maxHeaders,
    trustedProxies,
    redis,
    drainTimeoutMs,
  };
}

/**
 * redis://host[:port][/db] or rediss:// (TLS). Credentials are refused as in every URL
 * of the config: the URL is logged and shown in errors.
 */
function redisUrl(v: Validation, path: string, raw: unknown): string | undefined {
  if (raw === undefined) return undefined;
  const u = url(v, path, raw, ['redis', 'rediss']);
  if (!u) return undefined;
  if (!u.hostname) return v.fail(path, raw, 'a Redis URL with a host, such as redis://127.0.0.1:6379/0');
  if (!/^\/?(\d{1,5})?$/.test(u.pathname))
    return v.fail(path, raw, 'a Redis URL whose path is at most a database number, such as redis://127.0.0.1:6379/0');
  return u.href;
}
