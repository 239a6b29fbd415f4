// `risk:` and `geo:` config: defaults, good values, and refusals that name the
// key path (missing list files and databases included).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Validation } from '../src/config/schema.js';
import { buildGeo, buildRisk, RISK_CONFIG_DEFAULTS } from '../src/config/risk-config.js';
import { defaultAsnDatabases, defaultCityDatabases } from '../src/risk/geo.js';

const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-risk-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(path.join(dir, 'tor.txt'), '192.0.2.1\n');
writeFileSync(path.join(dir, 'bad.txt'), '198.51.100.0/24\n');
writeFileSync(path.join(dir, 'city.mmdb'), 'x');
writeFileSync(path.join(dir, 'asn.csv'), '1,2,3,x\n');

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

t.test('defaults', async (t) => {
  const v = new Validation();
  t.same(buildRisk(v, undefined, dir), RISK_CONFIG_DEFAULTS);
  t.same(RISK_CONFIG_DEFAULTS, {
    lists: { anonymous: [], malicious: [] },
    listPollMs: 60_000,
    engine: { learningPeriodMs: 7 * DAY, travelSpeedKmh: 1000, minTravelKm: 500, userRiskDecayMs: 7 * DAY },
    trackers: { bruteForce: { failures: 10, windowMs: HOUR }, passwordSpray: { accounts: 10, windowMs: HOUR } },
  });
  t.same(buildGeo(v, undefined, dir), { cityDatabases: defaultCityDatabases(), asnDatabases: defaultAsnDatabases() });
  t.same(v.issues, []);
  t.equal(defaultCityDatabases().length, 2);
  t.match(defaultAsnDatabases(), [/asn-ipv4-num\.csv$/, /asn-ipv6-num\.csv$/]);
});

t.test('good values', async (t) => {
  const v = new Validation();
  const risk = buildRisk(
    v,
    {
      anonymousIpLists: ['tor.txt', path.join(dir, 'bad.txt')],
      maliciousIpLists: 'bad.txt',
      listPollInterval: '5m',
      learningPeriod: '14d',
      travelSpeedKmh: 900,
      travelMinDistanceKm: 300,
      userRiskDecay: '2d',
      bruteForce: { failures: 30, window: '30m' },
      passwordSpray: { accounts: 20, window: '2h' },
    },
    dir,
  );
  t.same(v.issues, []);
  t.same(risk, {
    lists: {
      anonymous: [path.join(dir, 'tor.txt'), path.join(dir, 'bad.txt')],
      malicious: [path.join(dir, 'bad.txt')],
    },
    listPollMs: 300_000,
    engine: { learningPeriodMs: 14 * DAY, travelSpeedKmh: 900, minTravelKm: 300, userRiskDecayMs: 2 * DAY },
    trackers: { bruteForce: { failures: 30, windowMs: HOUR / 2 }, passwordSpray: { accounts: 20, windowMs: 2 * HOUR } },
  });
  t.same(buildRisk(v, { learningPeriod: 'none' }, dir).engine.learningPeriodMs, 0, 'learning can be switched off');
  t.same(buildGeo(v, { cityDatabase: 'city.mmdb', asnDatabase: ['asn.csv'] }, dir), {
    cityDatabases: [path.join(dir, 'city.mmdb')],
    asnDatabases: [path.join(dir, 'asn.csv')],
  });
  t.same(buildGeo(v, { cityDatabase: [], asnDatabase: [] }, dir), { cityDatabases: [], asnDatabases: [] }, 'off');
  t.same(v.issues, []);
});

t.test('refused values name the key path', async (t) => {
  const table: [string, 'risk' | 'geo', unknown, string, RegExp][] = [
    ['missing list', 'risk', { anonymousIpLists: ['tor.txt', 'nope.txt'] }, 'risk.anonymousIpLists[1]', /ENOENT/],
    ['missing single list', 'risk', { maliciousIpLists: 'gone.txt' }, 'risk.maliciousIpLists', /exists/],
    ['a folder', 'risk', { maliciousIpLists: ['.'] }, 'risk.maliciousIpLists[0]', /regular file/],
    ['not a list', 'risk', { anonymousIpLists: 7 }, 'risk.anonymousIpLists', /list of paths/],
    ['empty path', 'risk', { anonymousIpLists: [''] }, 'risk.anonymousIpLists[0]', /path/],
    ['unknown key', 'risk', { travelSpeed: 5 }, 'risk.travelSpeed', /no such key/],
    ['slow travel', 'risk', { travelSpeedKmh: 10 }, 'risk.travelSpeedKmh', /from 100/],
    ['bad learning', 'risk', { learningPeriod: 'a week' }, 'risk.learningPeriod', /duration/],
    ['decay too short', 'risk', { userRiskDecay: '1s' }, 'risk.userRiskDecay', /at least 60000ms/],
    ['brute force of 1', 'risk', { bruteForce: { failures: 1 } }, 'risk.bruteForce.failures', /from 3/],
    ['brute force key', 'risk', { bruteForce: { tries: 5 } }, 'risk.bruteForce.tries', /no such key/],
    ['spray window', 'risk', { passwordSpray: { window: '5s' } }, 'risk.passwordSpray.window', /duration/],
    ['not a mapping', 'risk', 'on', 'risk', /mapping/],
    ['missing city db', 'geo', { cityDatabase: ['missing.mmdb'] }, 'geo.cityDatabase[0]', /ENOENT/],
    ['city db not mmdb', 'geo', { cityDatabase: 'tor.txt' }, 'geo.cityDatabase', /\.mmdb/],
    ['asn db type', 'geo', { asnDatabase: 'tor.txt' }, 'geo.asnDatabase', /\.csv or \.mmdb/],
    ['geo unknown key', 'geo', { countryDatabase: 'x' }, 'geo.countryDatabase', /no such key/],
  ];
  for (const [name, which, raw, where, expected] of table) {
    const v = new Validation();
    if (which === 'risk') buildRisk(v, raw, dir);
    else buildGeo(v, raw, dir);
    t.equal(v.issues[0]?.path, where, `${name}: path`);
    t.match(v.issues[0]?.expected, expected, `${name}: expected`);
  }
});
