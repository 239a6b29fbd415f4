// The store write load of the benchmark's export test: sign-in rows (about one in
// ten with risk detections, each of which is a risk detection row too) and now and
// then an audit row, written at a steady rate into a relay's SQLite store from a
// process of its own, as a busy relay's sign-ins would be. Relay and syslog sink see
// only the rows, so the test can run it beside a relay with and without export.
//
//   node bench/events.mjs '{"dataDir":DIR,"rate":200,"storeModule":FILE}'
//
// storeModule: the built src/store/sqlite/index.js of the checkout measured (the
// same schema as its relay); default this checkout's dist/.
// Prints {"msg":"events ready","head":{…}} once the store is open, then writes until a
// `stop` line on stdin (or SIGTERM), then prints
//   {"msg":"result","written":{"signIn":N,"riskDetection":N,"audit":N},"before":{…},"after":{…},
//    "seconds":S,"rate":R,"errors":N}
// before and after are the store's event head (last id per log) when writing began and
// ended: every id between them is an event the export must deliver.
import { createInterface } from 'node:readline';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const opts = JSON.parse(process.argv[2] ?? '{}');
const RATE = Number(opts.rate ?? 200);
const modulePath = opts.storeModule ?? path.join(import.meta.dirname, '../dist/store/sqlite/index.js');
const { openSqliteStore } = await import(pathToFileURL(modulePath).href);
const store = openSqliteStore(opts.dataDir);

// A fixed seed: every run (and both arms of one) writes the same sequence of rows.
let seed = 0x2f6b3c1d;
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const hex = (n) => Array.from({ length: n }, () => Math.floor(random() * 16).toString(16)).join('');

const PLACES = [
  { country: 'DE', city: 'Berlin', latitude: 52.52, longitude: 13.405, asn: 3320, network: 'Deutsche Telekom AG' },
  { country: 'DE', city: 'Munich', latitude: 48.137, longitude: 11.575, asn: 3209, network: 'Vodafone GmbH' },
  { country: 'FR', city: 'Paris', latitude: 48.857, longitude: 2.352, asn: 3215, network: 'Orange S.A.' },
  {
    country: 'GB',
    city: 'London',
    latitude: 51.507,
    longitude: -0.128,
    asn: 2856,
    network: 'British Telecommunications PLC',
  },
  {
    country: 'US',
    city: 'Seattle',
    latitude: 47.606,
    longitude: -122.332,
    asn: 7922,
    network: 'Comcast Cable Communications, LLC',
  },
  { country: 'NL', city: 'Amsterdam', latitude: 52.37, longitude: 4.895, asn: 1136, network: 'KPN B.V.' },
  { country: null, city: null, latitude: null, longitude: null, asn: null, network: null },
];
const CLIENTS = [
  {
    userAgent:
      'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0',
    browser: 'Microsoft Edge 131',
    os: 'Windows 10',
    clientType: 'browser',
  },
  {
    userAgent:
      'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
    browser: 'Safari 18.1',
    os: 'macOS 10.15.7',
    clientType: 'browser',
  },
  {
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
    browser: 'Firefox 133',
    os: 'Linux',
    clientType: 'browser',
  },
  { userAgent: 'curl/8.5.0', browser: null, os: null, clientType: 'script' },
  { userAgent: 'python-requests/2.32.3', browser: null, os: null, clientType: 'bearer' },
];
const APPS = ['wiki', 'grafana', 'payroll', 'git'];
const DETECTIONS = [
  { type: 'unfamiliarProperties', level: 'low', detail: 'new country, network' },
  { type: 'unfamiliarProperties', level: 'medium', detail: 'new country, network, browser' },
  { type: 'atypicalTravel', level: 'medium', detail: 'Berlin, DE to Seattle, US: 8,100 km in 40 min' },
  { type: 'anonymousIp', level: 'medium' },
  { type: 'bruteForce', level: 'medium', detail: '12 failures in 5 min' },
  { type: 'passwordSpray', level: 'high', detail: '41 users from this address in 10 min' },
  { type: 'maliciousIp', level: 'high' },
];
const LEVEL = { none: 0, low: 1, medium: 2, high: 3 };

function policies(result) {
  const mfa = {
    name: 'require-mfa-outside-office',
    state: 'on',
    applies: true,
    why: 'location office excluded; address not in office',
    outcome: result === 'stepUp' ? 'unsatisfied' : 'granted',
    missing: result === 'stepUp' ? ['mfa'] : [],
  };
  const block = {
    name: 'block-high-risk',
    state: 'on',
    applies: result === 'failure',
    why: result === 'failure' ? 'sign-in risk high' : 'sign-in risk below high',
    outcome: result === 'failure' ? 'blocked' : 'notApplicable',
    missing: [],
  };
  return [mfa, block];
}

function signIn(at) {
  const place = pick(PLACES);
  const client = pick(CLIENTS);
  const r = random();
  const result = r < 0.85 ? 'success' : r < 0.95 ? 'failure' : 'stepUp';
  const d = random();
  const detections = d < 0.08 ? [pick(DETECTIONS)] : d < 0.1 ? [pick(DETECTIONS), pick(DETECTIONS)] : [];
  const risk = detections.reduce((top, x) => (LEVEL[x.level] > LEVEL[top] ? x.level : top), 'none');
  const kind = client.clientType === 'bearer' ? 'bearer' : random() < 0.1 ? 'provider' : 'interactive';
  const v4 = random() < 0.8;
  return {
    at,
    requestId: hex(16),
    traceId: hex(32),
    kind,
    app: kind === 'provider' ? null : pick(APPS),
    subject: `user${Math.floor(random() * 500)}@contoso.example`,
    ip: v4
      ? `${pick(['198.51.100', '203.0.113', '192.0.2'])}.${1 + Math.floor(random() * 254)}`
      : `2001:db8:${hex(4)}::${hex(3)}`,
    ...place,
    ...client,
    methods: result === 'success' ? pick([['pwd'], ['pwd', 'otp', 'mfa'], ['pwd', 'mfa']]) : ['pwd'],
    result,
    reason: result === 'failure' ? pick(['invalid_grant: wrong password', 'policy: block-high-risk']) : null,
    policies: kind === 'provider' ? [] : policies(result),
    risk,
    detections,
  };
}

const written = { signIn: 0, riskDetection: 0, audit: 0 };
let errors = 0;
let firstError;
const fail = (err) => {
  errors++;
  firstError ??= err.message;
};

const before = await store.events.head();
process.stdout.write(`${JSON.stringify({ msg: 'events ready', head: before })}\n`);

const t0 = performance.now();
let stopped = false;
// Every 10 ms, the rows due by now: a steady rate, caught up after a stall.
const timer = setInterval(() => {
  const due = Math.floor((RATE * (performance.now() - t0)) / 1000) - written.signIn;
  for (let i = 0; i < due; i++) {
    const at = Date.now();
    const row = signIn(at);
    written.signIn++;
    written.riskDetection += row.detections.length;
    store.signIns.record(row).catch(fail);
    // About one audit row a second at the default rate.
    if (written.signIn % 200 === 0) {
      written.audit++;
      store.audit
        .record({
          at,
          actor: 'admin@contoso.example',
          action: pick(['risk.dismiss', 'config.reload', 'risk.confirm']),
          connectorId: null,
          details: { subject: row.subject, via: 'proxyctl risk', requestId: row.requestId },
        })
        .catch(fail);
    }
  }
}, 10);

async function stop() {
  if (stopped) return;
  stopped = true;
  clearInterval(timer);
  const seconds = (performance.now() - t0) / 1000;
  // Each record() ran synchronously inside better-sqlite3; let their promises settle.
  await new Promise((resolve) => setImmediate(resolve));
  const after = await store.events.head();
  process.stdout.write(
    `${JSON.stringify({
      msg: 'result',
      written,
      before,
      after,
      seconds,
      rate: written.signIn / seconds,
      errors,
      ...(firstError ? { firstError } : {}),
    })}\n`,
  );
  await store.close();
  process.exit(errors ? 1 : 0);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'stop') void stop();
});
process.on('SIGTERM', () => void stop());
