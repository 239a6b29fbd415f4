// Validation of the Conditional Access part of the relay config: named
// locations (CIDRs, countries), policies and the device CA. Every reference
// (apps, groups, locations) must resolve; malformed or overlapping CIDRs,
// unknown countries and impossible time windows are refused with the key path.
import { cidrsOverlap, parseCidr, type Cidr } from '../net/address.js';
import { Validation, bool, duration, join, obj, oneOf, str, strList, uniqueName } from './schema.js';
import {
  PLATFORMS,
  RISK_LEVELS,
  WEEKDAYS,
  type AccessConfig,
  type IncludeExclude,
  type NamedLocation,
  type Platform,
  type Policy,
  type RiskLevel,
  type TimeWindow,
  type Weekday,
} from '../policy/model.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;
const NAME_TEXT = 'a name of letters, digits, spaces, ".", "_" or "-"';
const regionNames = new Intl.DisplayNames(['en'], { type: 'region' });

export function isCountryCode(code: string): boolean {
  if (!/^[A-Z]{2}$/.test(code)) return false;
  try {
    const name = regionNames.of(code);
    // DisplayNames also knows aliases and groupings (UK, EU, UN, XA…); only ISO 3166-1 countries count.
    return (
      !!name &&
      name !== code &&
      name !== 'Unknown Region' &&
      new Intl.Locale(`und-${code}`).region === code &&
      (code === 'XK' || !/^(AA|Q[M-Z]|X[A-Z]|ZZ|EU|EZ|UN)$/.test(code)) &&
      !['UK', 'BU', 'YU', 'SU', 'DD', 'ZR', 'TP', 'CS', 'AN', 'FX', 'DY', 'HV', 'NH', 'RH', 'VD', 'YD'].includes(code)
    );
  } catch {
    return false;
  }
}

function locations(v: Validation, raw: unknown): NamedLocation[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    v.fail('namedLocations', raw, 'a list of named locations');
    return [];
  }
  const out: NamedLocation[] = [];
  const names = new Set<string>();
  raw.forEach((item, i) => {
    const p = join('namedLocations', i);
    const o = obj(v, p, item, ['name', 'cidrs', 'countries']);
    if (!o) return;
    const name = uniqueName(v, p, o['name'], names, NAME, NAME_TEXT, 'location');
    const cidrs = strList(v, join(p, 'cidrs'), o['cidrs'], []);
    const countries = strList(v, join(p, 'countries'), o['countries'], []).map((c) => c.toUpperCase());
    if (cidrs.length + countries.length === 0) v.fail(p, item, 'at least one of cidrs or countries');
    const seen: { text: string; net: Cidr }[] = [];
    cidrs.forEach((c, j) => {
      const parsed = parseCidr(c);
      if (!parsed) {
        v.fail(join(join(p, 'cidrs'), j), c, 'a CIDR range such as 10.0.0.0/8 or 2001:db8::/32, or a single address');
        return;
      }
      const clash = seen.find((s) => cidrsOverlap(s.net, parsed));
      if (clash) v.fail(join(join(p, 'cidrs'), j), c, `a range that does not overlap ${clash.text}`);
      seen.push({ text: c, net: parsed });
    });
    countries.forEach((c, j) => {
      if (!isCountryCode(c))
        v.fail(join(join(p, 'countries'), j), c, 'an ISO 3166-1 alpha-2 country code such as DE or US');
    });
    if (name) out.push({ name, cidrs, countries });
  });
  return out;
}

function includeExclude<T extends string>(
  v: Validation,
  p: string,
  raw: unknown,
  known: ((x: string) => boolean) | undefined,
  what: string,
  fallbackInclude: (T | 'all')[],
): IncludeExclude<T> {
  const o = obj(v, p, raw, ['include', 'exclude']) ?? {};
  const include = strList(v, join(p, 'include'), o['include'], fallbackInclude);
  const exclude = strList(v, join(p, 'exclude'), o['exclude'], []);
  if (known) {
    include.forEach((x, i) => x !== 'all' && !known(x) && v.fail(join(join(p, 'include'), i), x, `a known ${what}`));
    exclude.forEach((x, i) => !known(x) && v.fail(join(join(p, 'exclude'), i), x, `a known ${what}`));
  }
  return { include: include as (T | 'all')[], exclude: exclude as T[] };
}

function timeWindow(v: Validation, p: string, raw: unknown): TimeWindow | undefined {
  if (raw === undefined) return undefined;
  const o = obj(v, p, raw, ['days', 'from', 'to', 'timeZone', 'outside']);
  if (!o) return undefined;
  const days = strList(v, join(p, 'days'), o['days'], [...WEEKDAYS]).map((d) => d.toLowerCase());
  days.forEach(
    (d, i) => !WEEKDAYS.includes(d as Weekday) && v.fail(join(join(p, 'days'), i), d, `one of ${WEEKDAYS.join(', ')}`),
  );
  if (days.length === 0) v.fail(join(p, 'days'), o['days'], 'at least one day');
  const hhmm = (key: string): number | undefined => {
    const text = o[key];
    const m = typeof text === 'string' ? /^([01]\d|2[0-3]):([0-5]\d)$/.exec(text) : null;
    if (!m) return v.fail(join(p, key), text, 'a time of day HH:MM (00:00 to 23:59)');
    return Number(m[1]) * 60 + Number(m[2]);
  };
  const fromMin = hhmm('from');
  const toMin = hhmm('to');
  if (fromMin !== undefined && fromMin === toMin)
    v.fail(join(p, 'to'), o['to'], 'a time different from "from" (an empty window never matches)');
  const timeZone = str(v, join(p, 'timeZone'), o['timeZone'], 'UTC') ?? 'UTC';
  try {
    new Intl.DateTimeFormat('en', { timeZone });
  } catch {
    v.fail(join(p, 'timeZone'), timeZone, 'an IANA time zone such as Europe/Berlin or UTC');
  }
  const outside = bool(v, join(p, 'outside'), o['outside'], false);
  if (fromMin === undefined || toMin === undefined) return undefined;
  return {
    days: days as Weekday[],
    fromMin,
    toMin,
    timeZone,
    outside,
    text: `${days.join(',')} ${o['from'] as string}-${o['to'] as string} ${timeZone}${outside ? ' (outside)' : ''}`,
  };
}

export interface AccessRefs {
  apps: readonly string[];
  groups: readonly string[];
}

export function buildAccess(v: Validation, top: Record<string, unknown>, refs: AccessRefs): AccessConfig {
  const namedLocations = locations(v, top['namedLocations']);
  const raw = top['policies'];
  const policies: Policy[] = [];
  if (raw !== undefined && !Array.isArray(raw)) v.fail('policies', raw, 'a list of policies');
  const declaredGroups = strList(v, 'groups', top['groups'], []);
  const knownGroups = new Set([...declaredGroups, ...refs.groups]);
  const names = new Set<string>();
  (Array.isArray(raw) ? raw : []).forEach((item, i) => {
    const p = join('policies', i);
    const o = obj(v, p, item, ['name', 'state', 'assignments', 'conditions', 'grant', 'session']);
    if (!o) return;
    const name = uniqueName(v, p, o['name'], names, NAME, NAME_TEXT, 'policy');
    const state = oneOf(v, join(p, 'state'), o['state'], ['on', 'off', 'reportOnly'] as const, 'on');
    const as = obj(v, join(p, 'assignments'), o['assignments'], ['users', 'groups', 'apps']) ?? {};
    const users = includeExclude<string>(v, join(p, 'assignments.users'), as['users'], undefined, 'user', []);
    const groups = includeExclude<string>(
      v,
      join(p, 'assignments.groups'),
      as['groups'],
      (g) => knownGroups.has(g),
      'group (declared under groups: or assigned to an app)',
      [],
    );
    if (users.include.length + groups.include.length === 0)
      v.fail(
        join(p, 'assignments'),
        o['assignments'],
        'users.include or groups.include (use users: { include: [all] } for everyone)',
      );
    const apps = includeExclude<string>(
      v,
      join(p, 'assignments.apps'),
      as['apps'],
      (a) => refs.apps.includes(a),
      'app name',
      ['all'],
    );
    const co =
      obj(v, join(p, 'conditions'), o['conditions'], ['locations', 'platforms', 'signInRisk', 'userRisk', 'time']) ??
      {};
    const locs =
      co['locations'] === undefined
        ? undefined
        : includeExclude<string>(
            v,
            join(p, 'conditions.locations'),
            co['locations'],
            (l) => namedLocations.some((n) => n.name === l),
            'named location',
            ['all'],
          );
    const platforms =
      co['platforms'] === undefined
        ? undefined
        : includeExclude<Platform>(
            v,
            join(p, 'conditions.platforms'),
            co['platforms'],
            (x) => PLATFORMS.includes(x as Platform),
            `platform (${PLATFORMS.join(', ')})`,
            ['all'],
          );
    const signInRisk = riskLevels(v, join(p, 'conditions.signInRisk'), co['signInRisk']);
    const userRisk = riskLevels(v, join(p, 'conditions.userRisk'), co['userRisk']);
    const time = timeWindow(v, join(p, 'conditions.time'), co['time']);
    const g =
      obj(v, join(p, 'grant'), o['grant'], [
        'block',
        'requireMfa',
        'requireAcr',
        'requireDeviceCertificate',
        'operator',
      ]) ?? {};
    const grant = {
      block: bool(v, join(p, 'grant.block'), g['block'], false),
      requireMfa: bool(v, join(p, 'grant.requireMfa'), g['requireMfa'], false),
      requireAcr: g['requireAcr'] === undefined ? undefined : str(v, join(p, 'grant.requireAcr'), g['requireAcr']),
      requireDeviceCertificate: bool(
        v,
        join(p, 'grant.requireDeviceCertificate'),
        g['requireDeviceCertificate'],
        false,
      ),
      operator: oneOf(v, join(p, 'grant.operator'), g['operator'], ['all', 'any'] as const, 'all'),
    };
    const requires = +grant.requireMfa + +(grant.requireAcr !== undefined) + +grant.requireDeviceCertificate;
    if (grant.block && requires > 0)
      v.fail(join(p, 'grant'), o['grant'], 'either block: true or requirements, not both');
    if (!grant.block && requires === 0)
      v.fail(
        join(p, 'grant'),
        o['grant'],
        'block: true, or at least one of requireMfa, requireAcr, requireDeviceCertificate',
      );
    const se = obj(v, join(p, 'session'), o['session'], ['signInFrequency', 'persistentBrowser']) ?? {};
    const session = {
      signInFrequencyMs:
        se['signInFrequency'] === undefined
          ? undefined
          : duration(v, join(p, 'session.signInFrequency'), se['signInFrequency'], '1h', 60_000),
      persistentBrowser:
        se['persistentBrowser'] === undefined
          ? undefined
          : bool(v, join(p, 'session.persistentBrowser'), se['persistentBrowser'], true),
    };
    if (name)
      policies.push({
        name,
        state,
        users,
        groups,
        apps,
        locations: locs,
        platforms,
        signInRisk,
        userRisk,
        time,
        grant,
        session,
      });
  });
  return { namedLocations, policies };
}

/** A risk condition (`signInRisk`, `userRisk`): a non-empty list of levels; undefined when not set. */
function riskLevels(v: Validation, path: string, raw: unknown): RiskLevel[] | undefined {
  if (raw === undefined) return undefined;
  const levels = strList(v, path, raw, []) as RiskLevel[];
  levels.forEach((r, j) => !RISK_LEVELS.includes(r) && v.fail(join(path, j), r, `one of ${RISK_LEVELS.join(', ')}`));
  if (levels.length === 0) v.fail(path, raw, 'at least one risk level');
  return levels;
}
