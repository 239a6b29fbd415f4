// The `risk:` and `geo:` parts of the relay config: which address lists feed the
// anonymous-IP and malicious-IP detections, the learning, travel and decay rules,
// the brute-force and password-spray thresholds, and which location databases
// to read. Every key is optional; list and database files must exist at start.
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { RISK_DEFAULTS, type RiskOptions } from '../risk/engine.js';
import { defaultAsnDatabases, defaultCityDatabases } from '../risk/geo.js';
import type { IpListsConfig } from '../risk/ip-lists.js';
import type { TrackerOptions } from '../risk/trackers.js';
import { Validation, duration, int, join, obj } from './schema.js';

export interface RiskConfig {
  /** Anonymous (Tor exits, anonymising VPNs) and malicious address list files, absolute. */
  readonly lists: IpListsConfig;
  /** How often list files are stat-checked for changes besides fs.watch, ms. */
  readonly listPollMs: number;
  /** Learning, travel and decay rules for RiskEngine. */
  readonly engine: RiskOptions;
  /** Thresholds for AttackTrackers (the embedded provider's failures). */
  readonly trackers: TrackerOptions;
}

export interface GeoConfig {
  /** City MMDB files, absolute, tried in order; empty = no city or coordinates. */
  readonly cityDatabases: readonly string[];
  /** ASN files (ip-location-db CSV or an ASN MMDB), absolute; empty = no network. */
  readonly asnDatabases: readonly string[];
}

export const RISK_KEYS = [
  'anonymousIpLists',
  'maliciousIpLists',
  'listPollInterval',
  'learningPeriod',
  'travelSpeedKmh',
  'travelMinDistanceKm',
  'userRiskDecay',
  'bruteForce',
  'passwordSpray',
] as const;

export const GEO_KEYS = ['cityDatabase', 'asnDatabase'] as const;

const HOUR = 3_600_000;

export const RISK_CONFIG_DEFAULTS: RiskConfig = Object.freeze({
  lists: Object.freeze({ anonymous: Object.freeze([]), malicious: Object.freeze([]) }),
  listPollMs: 60_000,
  engine: RISK_DEFAULTS,
  trackers: Object.freeze({
    // Above what the provider's throttle lets one account take in a quarter hour, below a day's.
    bruteForce: Object.freeze({ failures: 10, windowMs: HOUR }),
    passwordSpray: Object.freeze({ accounts: 10, windowMs: HOUR }),
  }),
});

/** A file that exists and can be read; returns it absolute, or fails at the key path. */
function existingFile(v: Validation, at: string, raw: unknown, baseDir: string, what: string): string | undefined {
  if (typeof raw !== 'string' || raw.length === 0) return v.fail(at, raw, `the path of ${what}`);
  const file = path.resolve(baseDir, raw);
  try {
    if (!statSync(file).isFile()) return v.fail(at, raw, `the path of ${what} (this is not a regular file)`);
    accessSync(file, constants.R_OK);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return v.fail(
      at,
      raw,
      `the path of ${what} that exists and can be read (${typeof code === 'string' ? code : 'unreadable'}: ${file})`,
    );
  }
  return file;
}

/** A list of files, or one file written alone. */
function files(
  v: Validation,
  at: string,
  raw: unknown,
  baseDir: string,
  what: string,
  fallback: () => string[],
  ext?: RegExp,
): string[] {
  if (raw === undefined) return fallback();
  const list = typeof raw === 'string' ? [raw] : raw;
  if (!Array.isArray(list)) {
    v.fail(at, raw, `a list of paths, each of ${what}, or one path`);
    return [];
  }
  return list.flatMap((f, i) => {
    const where = typeof raw === 'string' ? at : join(at, i);
    if (ext && typeof f === 'string' && !ext.test(f)) return v.fail(where, f, `the path of ${what}`) ?? [];
    return existingFile(v, where, f, baseDir, what) ?? [];
  });
}

function threshold(
  v: Validation,
  at: string,
  raw: unknown,
  countKey: string,
  fallback: { count: number; windowMs: number },
): { count: number; windowMs: number } {
  const o = obj(v, at, raw, [countKey, 'window']) ?? {};
  return {
    count: int(v, join(at, countKey), o[countKey], fallback.count, 3, 10_000),
    windowMs: duration(v, join(at, 'window'), o['window'], `${fallback.windowMs}ms`, 60_000),
  };
}

/** `risk:` as written in the relay config (raw undefined when absent); paths relative to baseDir. */
export function buildRisk(v: Validation, raw: unknown, baseDir: string): RiskConfig {
  const p = 'risk';
  const o = obj(v, p, raw, RISK_KEYS) ?? {};
  const at = (key: string) => join(p, key);
  const d = RISK_CONFIG_DEFAULTS;
  const anonymous = files(v, at('anonymousIpLists'), o['anonymousIpLists'], baseDir, 'an address list file', () => []);
  const malicious = files(v, at('maliciousIpLists'), o['maliciousIpLists'], baseDir, 'an address list file', () => []);
  const listPollMs = duration(v, at('listPollInterval'), o['listPollInterval'], `${d.listPollMs}ms`, 1000);
  const learningPeriodMs = duration(v, at('learningPeriod'), o['learningPeriod'], `${d.engine.learningPeriodMs}ms`, 0, {
    none: '0ms',
  });
  const travelSpeedKmh = int(v, at('travelSpeedKmh'), o['travelSpeedKmh'], d.engine.travelSpeedKmh, 100, 100_000);
  const minTravelKm = int(v, at('travelMinDistanceKm'), o['travelMinDistanceKm'], d.engine.minTravelKm, 0, 20_000);
  const userRiskDecayMs = duration(v, at('userRiskDecay'), o['userRiskDecay'], `${d.engine.userRiskDecayMs}ms`, 60_000);
  const bf = threshold(v, at('bruteForce'), o['bruteForce'], 'failures', {
    count: d.trackers.bruteForce.failures,
    windowMs: d.trackers.bruteForce.windowMs,
  });
  const ps = threshold(v, at('passwordSpray'), o['passwordSpray'], 'accounts', {
    count: d.trackers.passwordSpray.accounts,
    windowMs: d.trackers.passwordSpray.windowMs,
  });
  return {
    lists: { anonymous, malicious },
    listPollMs,
    engine: { learningPeriodMs, travelSpeedKmh, minTravelKm, userRiskDecayMs },
    trackers: {
      bruteForce: { failures: bf.count, windowMs: bf.windowMs },
      passwordSpray: { accounts: ps.count, windowMs: ps.windowMs },
    },
  };
}

/** `geo:` as written in the relay config; without it, the databases the packages ship. */
export function buildGeo(v: Validation, raw: unknown, baseDir: string): GeoConfig {
  const p = 'geo';
  const o = obj(v, p, raw, GEO_KEYS) ?? {};
  const city = files(
    v,
    join(p, 'cityDatabase'),
    o['cityDatabase'],
    baseDir,
    'a city .mmdb file',
    defaultCityDatabases,
    /\.mmdb$/i,
  );
  const asn = files(
    v,
    join(p, 'asnDatabase'),
    o['asnDatabase'],
    baseDir,
    'an ASN .csv or .mmdb file',
    defaultAsnDatabases,
    /\.(csv|mmdb)$/i,
  );
  return { cityDatabases: city, asnDatabases: asn };
}
