// The risk engine replaying scenarios on an injected clock: impossible travel
// after (and not before) the learning period, through a listed VPN, unfamiliar
// properties, password spray, brute force, and user risk that decays, is
// dismissed and confirmed.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ManualClock } from './helpers/clock.js';
import { RiskEngine, signInRisk, userRisk, RISK_DEFAULTS } from '../src/risk/engine.js';
import {
  REPLAY_DETECTIONS,
  replayDetection,
  distanceKm,
  learningComplete,
  LEARNED_AT_SIGN_INS,
  type SignInAttempt,
} from '../src/risk/detectors.js';
import { AttackTrackers } from '../src/risk/trackers.js';
import { IpLists } from '../src/risk/ip-lists.js';
import { NO_GEO, type GeoResult } from '../src/risk/geo.js';
import type { ClientResult } from '../src/risk/client.js';
import type { RiskDetectionRecord, SignInRecord, UserRiskState } from '../src/store/types.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);

const PARIS: GeoResult = {
  country: 'FR',
  city: 'Paris',
  latitude: 48.8566,
  longitude: 2.3522,
  asn: 3215,
  network: 'Orange S.A.',
};
const SYDNEY: GeoResult = {
  country: 'AU',
  city: 'Sydney',
  latitude: -33.8688,
  longitude: 151.2093,
  asn: 1221,
  network: 'Telstra Limited',
};
const LYON: GeoResult = { ...PARIS, city: 'Lyon', latitude: 45.764, longitude: 4.8357 };
const FIREFOX_LINUX: ClientResult = { userAgent: 'ua', browser: 'Firefox 127', os: 'Linux', clientType: 'browser' };

let nextId = 1;
function record(at: number, geo: GeoResult, ip = '192.0.2.10', client = FIREFOX_LINUX): SignInRecord {
  return {
    id: nextId++,
    at,
    requestId: null,
    traceId: null,
    kind: 'interactive',
    app: 'wiki',
    subject: 'alice',
    ip,
    ...geo,
    userAgent: client.userAgent,
    browser: client.browser,
    os: client.os,
    clientType: client.clientType,
    methods: ['pwd'],
    result: 'success',
    reason: null,
    policies: [],
    risk: 'none',
    detections: [],
  };
}

function attempt(at: number, geo: GeoResult, ip = '198.51.100.20', client = FIREFOX_LINUX): SignInAttempt {
  return { subject: 'alice', ip, at, geo, client, kind: 'interactive' };
}

/** Daily sign-ins from Paris over `days` days before `end`, newest first (as the store returns them). */
function parisHistory(end: number, days: number): SignInRecord[] {
  const out: SignInRecord[] = [];
  for (let d = days; d >= 0; d--) out.push(record(end - d * DAY, PARIS));
  return out.reverse();
}

const types = (ds: { type: string }[]) => ds.map((d) => d.type).sort();

t.test('Paris then Sydney 30 minutes later, after the learning period: atypical travel', async (t) => {
  const clock = new ManualClock(T0 + 8 * DAY);
  const engine = new RiskEngine({ clock });
  const lastParis = clock.now();
  const history = parisHistory(lastParis, 8);
  t.ok(learningComplete(history, lastParis + 30 * MIN, engine.options), 'eight days of history is learned');
  const got = engine.assess(attempt(lastParis + 30 * MIN, SYDNEY), history);
  const travel = got.find((d) => d.type === 'atypicalTravel');
  t.ok(travel, 'atypicalTravel detected');
  t.equal(travel?.level, 'medium');
  t.match(travel?.detail, /Paris, FR to Sydney, AU: 16,9\d\d km in 30 min/, 'detail names places, distance and time');
  t.equal(signInRisk(got), 'medium', 'sign-in risk is the highest level');
  // Sydney is also a new country and network: unfamiliar properties, medium.
  t.same(types(got), ['atypicalTravel', 'unfamiliarProperties']);
  t.equal(got.find((d) => d.type === 'unfamiliarProperties')?.level, 'medium');

  // Paris to Lyon (392 km) in 30 minutes is fast but under the minimum distance.
  t.same(engine.assess(attempt(lastParis + 30 * MIN, LYON), history), [], 'short hops are never travel');
  // Sydney two days later is reachable.
  t.notOk(
    engine.assess(attempt(lastParis + 2 * DAY, SYDNEY), history).some((d) => d.type === 'atypicalTravel'),
    'a plausible flight is not atypical',
  );
  // The threshold is configurable: 20,000 km/h lets the 30-minute trip through... and 40,000 does too.
  const fast = new RiskEngine({ clock, options: { travelSpeedKmh: 40_000 } });
  t.notOk(fast.assess(attempt(lastParis + 30 * MIN, SYDNEY), history).some((d) => d.type === 'atypicalTravel'));
});

t.test('the same trip before learning completes: nothing', async (t) => {
  const engine = new RiskEngine({ clock: new ManualClock(T0) });
  // Three days of Paris: short of the 7-day learning period.
  const history = parisHistory(T0 + 3 * DAY, 3);
  t.same(engine.assess(attempt(T0 + 3 * DAY + 30 * MIN, SYDNEY), history), [], 'no detection at all');
  t.same(engine.assess(attempt(T0 + 30 * MIN, SYDNEY), []), [], 'a first sign-in has nothing to compare with');
  // The other way to learn: many sign-ins, however recent.
  const busy = Array.from({ length: LEARNED_AT_SIGN_INS }, (_, i) => record(T0 + 2 * DAY - i * 10 * MIN, PARIS));
  t.ok(
    engine.assess(attempt(T0 + 2 * DAY + 30 * MIN, SYDNEY), busy).some((d) => d.type === 'atypicalTravel'),
    `${LEARNED_AT_SIGN_INS} sign-ins count as learned`,
  );
  // Old history of one sign-in is not a profile either.
  t.same(engine.assess(attempt(T0 + 30 * DAY, SYDNEY), [record(T0, PARIS)]), [], 'one old sign-in is not learned');
});

t.test('through a listed VPN range: anonymous IP, and no travel', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-risk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const vpn = path.join(dir, 'vpn.txt');
  writeFileSync(vpn, '# commercial VPN exits\n203.0.113.0/24\n2001:db8:aa::/48\n');
  const bad = path.join(dir, 'bad.txt');
  writeFileSync(bad, '198.18.0.66\n');
  const lists = new IpLists({ anonymous: [vpn], malicious: [bad] }, { watch: false });
  await lists.start();
  t.teardown(() => lists.close());
  const clock = new ManualClock(T0 + 8 * DAY);
  const engine = new RiskEngine({ clock, lists });
  const history = parisHistory(clock.now(), 8);

  const viaVpn = engine.assess(attempt(clock.now() + 30 * MIN, SYDNEY, '203.0.113.77'), history);
  t.ok(
    viaVpn.some((d) => d.type === 'anonymousIp' && d.level === 'medium'),
    'anonymousIp, medium',
  );
  t.notOk(
    viaVpn.some((d) => d.type === 'atypicalTravel'),
    'no travel through the VPN',
  );

  const v6 = engine.assess(attempt(clock.now() + 30 * MIN, PARIS, '2001:db8:aa:1::5'), history);
  t.same(types(v6), ['anonymousIp'], 'an IPv6 address in a listed range');

  // Back home after the VPN: the VPN sign-in is not the point of comparison.
  const vpnRecord = record(clock.now() + 30 * MIN, SYDNEY, '203.0.113.77');
  const home = engine.assess(attempt(clock.now() + 60 * MIN, PARIS), [vpnRecord, ...history]);
  t.same(home, [], 'returning from a VPN exit is not travel');

  const evil = engine.assess(attempt(clock.now() + 10 * MIN, PARIS, '198.18.0.66'), history);
  t.same(
    evil.map((d) => [d.type, d.level]),
    [['maliciousIp', 'high']],
  );
  t.equal(signInRisk(evil), 'high');
});

t.test('a familiar place is not atypical travel', async (t) => {
  const clock = new ManualClock(T0 + 20 * DAY);
  const engine = new RiskEngine({ clock });
  // Alice works from Paris and, every few days, from Sydney (a remote desktop in the other office).
  const history = parisHistory(clock.now(), 10);
  for (let i = 0; i < 3; i++) history.push(record(T0 + i * DAY, SYDNEY));
  history.sort((a, b) => b.at - a.at);
  const got = engine.assess(attempt(clock.now() + 30 * MIN, SYDNEY), history);
  t.same(got, [], 'Sydney is familiar: neither travel nor unfamiliar');
});

t.test('unfamiliar sign-in properties', async (t) => {
  const clock = new ManualClock(T0 + 10 * DAY);
  const engine = new RiskEngine({ clock });
  const history = parisHistory(clock.now(), 9);
  const later = clock.now() + 3 * DAY;
  const berlinNet: GeoResult = {
    country: 'DE',
    city: 'Berlin',
    latitude: 52.52,
    longitude: 13.405,
    asn: 3320,
    network: 'Deutsche Telekom AG',
  };
  const got = engine.assess(attempt(later, berlinNet), history);
  t.same(
    got.map((d) => [d.type, d.level]),
    [['unfamiliarProperties', 'medium']],
    'a new country and network: medium',
  );
  t.match(got[0]?.detail, /country DE.*network AS3320 Deutsche Telekom AG/);

  const newClient: ClientResult = { userAgent: 'x', browser: 'Chrome 126', os: 'Windows', clientType: 'browser' };
  t.same(
    engine.assess(attempt(later, PARIS, undefined, newClient), history).map((d) => [d.type, d.level, d.detail]),
    [['unfamiliarProperties', 'low', 'new client Chrome/Windows']],
    'one new property: low',
  );
  const upgraded: ClientResult = { ...FIREFOX_LINUX, browser: 'Firefox 128' };
  t.same(
    engine.assess(attempt(later, PARIS, undefined, upgraded), history),
    [],
    'a browser update is not a new client',
  );
  t.same(
    engine.assess(attempt(later, { ...PARIS, asn: null, network: null }), history),
    [],
    'an unknown ASN is not new',
  );
  t.same(engine.assess(attempt(later, NO_GEO), history), [], 'no location: nothing to compare');

  // Before learning: nothing, however new.
  const young = parisHistory(T0 + 2 * DAY, 2);
  t.same(engine.assess(attempt(T0 + 2 * DAY + HOUR, berlinNet, undefined, newClient), young), []);
  // Failures in the history are no baseline.
  const failures = parisHistory(clock.now(), 9).map((r) => ({ ...r, result: 'failure' as const }));
  t.same(engine.assess(attempt(later, berlinNet), failures), [], 'only successes count as history');
});

t.test('a spray of 20 accounts with 2 passwords from one address', async (t) => {
  const clock = new ManualClock(T0);
  const trackers = new AttackTrackers({
    bruteForce: { failures: 10, windowMs: HOUR },
    passwordSpray: { accounts: 10, windowMs: HOUR },
  });
  const engine = new RiskEngine({ clock, trackers });
  const found = [];
  for (let i = 0; i < 20; i++) {
    await clock.advance(20_000);
    found.push(
      ...trackers.loginFailure({
        ip: '192.0.2.200',
        username: `user${i}`,
        passwordFingerprint: i % 2 ? 'fp-Summer2026!' : 'fp-Winter2025!',
        at: clock.now(),
      }),
    );
  }
  t.equal(found.length, 1, 'one detection for the source, not one per failure');
  t.match(found[0], { type: 'passwordSpray', level: 'high', subject: null, ip: '192.0.2.200' });
  t.equal(found[0]?.details['accounts'], 10, 'raised when the tenth account fails');

  // A later success from the spraying address is flagged on that sign-in.
  await clock.advance(5 * MIN);
  const success = engine.assess(
    { ...attempt(clock.now(), NO_GEO, '192.0.2.200'), kind: 'provider', username: 'user3' },
    [],
  );
  t.same(
    success.map((d) => [d.type, d.level]),
    [['passwordSpray', 'high']],
  );
  // The flag lasts a day, then the source is ordinary again.
  await clock.advance(25 * HOUR);
  t.same(
    engine.assess({ ...attempt(clock.now(), NO_GEO, '192.0.2.200'), kind: 'provider', username: 'user3' }, []),
    [],
  );

  // Credential stuffing (a different password per account) is not a spray; nor are a few accounts.
  const other = new AttackTrackers({
    bruteForce: { failures: 10, windowMs: HOUR },
    passwordSpray: { accounts: 10, windowMs: HOUR },
  });
  const stuffing = [];
  for (let i = 0; i < 20; i++)
    stuffing.push(
      ...other.loginFailure({ ip: '192.0.2.201', username: `u${i}`, passwordFingerprint: `p${i}`, at: T0 + i }),
    );
  t.same(stuffing, [], 'twenty passwords over twenty accounts is not few passwords');
  const slow = [];
  for (let i = 0; i < 20; i++)
    slow.push(
      ...other.loginFailure({ ip: '192.0.2.202', username: `u${i}`, passwordFingerprint: 'p', at: T0 + i * 2 * HOUR }),
    );
  t.same(slow, [], 'spread beyond the window: no spray');
  // IPv6 sources count per /64: rotating the interface identifier does not help.
  const v6 = [];
  for (let i = 0; i < 12; i++)
    v6.push(
      ...other.loginFailure({ ip: `2001:db8:1:2::${i + 1}`, username: `v${i}`, passwordFingerprint: 'p', at: T0 + i }),
    );
  t.equal(v6.length, 1, 'one /64 is one source');
});

t.test('30 failures on one account from many addresses, then a success', async (t) => {
  const clock = new ManualClock(T0);
  const trackers = new AttackTrackers({
    bruteForce: { failures: 10, windowMs: HOUR },
    passwordSpray: { accounts: 10, windowMs: HOUR },
  });
  const engine = new RiskEngine({ clock, trackers });
  const standalone = [];
  for (let i = 0; i < 30; i++) {
    await clock.advance(30_000);
    standalone.push(
      ...trackers.loginFailure({
        ip: `192.0.2.${i + 1}`,
        username: 'Bob',
        passwordFingerprint: `p${i}`,
        at: clock.now(),
      }),
    );
  }
  t.same(
    standalone.map((d) => [d.type, d.level, d.subject]),
    [['bruteForce', 'medium', 'bob']],
    'one medium against the account',
  );
  // The real user signs in from home: not one of the failing sources.
  await clock.advance(MIN);
  t.same(engine.assess({ ...attempt(clock.now(), NO_GEO, '198.51.100.9'), kind: 'provider', username: 'bob' }, []), []);
  // The attacker gets in from a source that failed.
  const got = engine.assess({ ...attempt(clock.now(), NO_GEO, '192.0.2.17'), kind: 'provider', username: 'bob' }, []);
  t.same(
    got.map((d) => [d.type, d.level]),
    [['bruteForce', 'high']],
  );
  // Failures are not successes.
  t.same(
    engine.assess(
      { ...attempt(clock.now(), NO_GEO, '192.0.2.17'), kind: 'provider', username: 'bob', result: 'failure' },
      [],
    ),
    [],
  );
  // Long after the window, the failing source is no longer remembered as an attacker.
  await clock.advance(3 * HOUR);
  t.same(engine.assess({ ...attempt(clock.now(), NO_GEO, '192.0.2.17'), kind: 'provider', username: 'bob' }, []), []);
});

t.test('trackers stay bounded whatever a stranger sends', async (t) => {
  const trackers = new AttackTrackers({
    bruteForce: { failures: 10, windowMs: HOUR },
    passwordSpray: { accounts: 10, windowMs: HOUR },
    maxEntries: 500,
  });
  const long = 'x'.repeat(100_000);
  for (let i = 0; i < 5000; i++) {
    trackers.loginFailure({
      ip: `10.${(i >> 8) & 255}.${i & 255}.1`,
      username: `${long}${i}`,
      passwordFingerprint: long,
      at: T0 + i,
    });
  }
  t.same(trackers.size, { sources: 500, accounts: 500 }, 'least recently failed entries evicted');
  for (let i = 0; i < 5000; i++)
    trackers.loginFailure({ ip: '10.9.9.9', username: 'carol', passwordFingerprint: `p${i}`, at: T0 + i });
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 50_000; i++)
    trackers.loginFailure({ ip: '10.9.9.9', username: 'carol', passwordFingerprint: `p${i}`, at: T0 + i });
  t.ok(process.memoryUsage().heapUsed - before < 50 * 1024 * 1024, 'one hot entry keeps a capped number of events');
  t.doesNotThrow(() => trackers.loginFailure({ ip: 'not an address', username: '', passwordFingerprint: '', at: T0 }));
});

t.test('user risk decays over days, and is dismissed and confirmed', async (t) => {
  const clock = new ManualClock(T0);
  const engine = new RiskEngine({ clock });
  const detections: Pick<RiskDetectionRecord, 'at' | 'level'>[] = [{ at: T0, level: 'high' }];
  const table: [number, string][] = [
    [0, 'high'],
    [6 * DAY, 'high'],
    [7 * DAY, 'medium'],
    [14 * DAY, 'low'],
    [21 * DAY, 'none'],
    [100 * DAY, 'none'],
  ];
  for (const [age, want] of table)
    t.equal(userRisk(detections, undefined, T0 + age), want, `high after ${age / DAY} days`);
  t.equal(userRisk(detections, undefined, T0 + DAY, DAY), 'medium', 'decay period from config');

  await clock.advance(8 * DAY);
  t.equal(engine.userRisk(detections, undefined), 'medium', 'engine method reads the clock');
  // Levels combine as the maximum after decay.
  const mixed = [
    ...detections,
    { at: clock.now() - HOUR, level: 'low' as const },
    { at: clock.now(), level: 'medium' as const },
  ];
  t.equal(engine.userRisk(mixed, undefined), 'medium');
  t.equal(engine.userRisk([], undefined), 'none');

  const dismissed: UserRiskState = { subject: 'alice', dismissedAt: clock.now(), confirmedAt: null, by: 'admin' };
  t.equal(engine.userRisk(mixed, dismissed), 'none', 'everything up to the dismissal stops counting');
  await clock.advance(MIN);
  const after = [...mixed, { at: clock.now(), level: 'low' as const }];
  t.equal(engine.userRisk(after, dismissed), 'low', 'a detection after the dismissal counts');

  const confirmed: UserRiskState = { ...dismissed, confirmedAt: clock.now() };
  t.equal(engine.userRisk([], confirmed), 'high', 'confirmed compromised: high with no detection');
  await clock.advance(365 * DAY);
  t.equal(engine.userRisk([], confirmed), 'high', 'a confirmation does not decay');
  const reDismissed: UserRiskState = { ...confirmed, dismissedAt: clock.now() };
  t.equal(engine.userRisk(after, reDismissed), 'none', 'a later dismissal clears the confirmation');
  t.equal(
    engine.userRisk([{ at: clock.now() + DAY, level: 'medium' }], undefined),
    'medium',
    'a future time counts as new',
  );
});

t.test('replays the relay refuses are detections with fixed levels', async (t) => {
  t.same(Object.keys(REPLAY_DETECTIONS).sort(), ['codeReplay', 'nonceMismatch', 'revokedSessionReplay', 'stateReplay']);
  for (const [name, spec] of Object.entries(REPLAY_DETECTIONS)) {
    t.equal(spec.type, name);
    t.equal(spec.level, 'medium');
  }
  t.same(replayDetection('codeReplay', 'code presented twice'), {
    type: 'codeReplay',
    level: 'medium',
    detail: 'code presented twice',
  });
  t.same(replayDetection('stateReplay'), { type: 'stateReplay', level: 'medium' });
  t.equal(signInRisk([]), 'none');
  t.equal(signInRisk([{ level: 'low' }, { level: 'high' }, { level: 'medium' }]), 'high');
});

t.test('distances and defaults', async (t) => {
  const km = distanceKm(
    { latitude: PARIS.latitude!, longitude: PARIS.longitude! },
    { latitude: SYDNEY.latitude!, longitude: SYDNEY.longitude! },
  );
  t.ok(km > 16_900 && km < 17_000, `Paris-Sydney is about 16,960 km (${Math.round(km)})`);
  t.equal(distanceKm({ latitude: 10, longitude: 20 }, { latitude: 10, longitude: 20 }), 0);
  t.ok(
    Math.abs(distanceKm({ latitude: 0, longitude: 179.9 }, { latitude: 0, longitude: -179.9 }) - 22.2) < 0.5,
    'across the date line',
  );
  t.same(RISK_DEFAULTS, {
    learningPeriodMs: 7 * DAY,
    travelSpeedKmh: 1000,
    minTravelKm: 500,
    userRiskDecayMs: 7 * DAY,
  });
  const engine = new RiskEngine({ clock: new ManualClock(T0) });
  t.same(engine.historyQuery(), { since: T0 - 90 * DAY, limit: 200 });
});
