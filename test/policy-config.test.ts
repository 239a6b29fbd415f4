// Conditional Access config validation: every bad input is refused at load as
// ERR_CONFIG_INVALID with the key path, and a full valid config loads frozen.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadRelayConfig, parseRelayConfig } from '../src/config/relay-config.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { tempDir } from './helpers/proc.js';
import { configIssues } from './helpers/config-issues.js';

const dir = tempDir(t, 'proxyctl-policy-config-');
await loadOrCreateCa(dir);
const CA_FILE = path.join(dir, 'ca.pem');
const NOT_PEM = path.join(dir, 'not-a-cert.pem');
writeFileSync(NOT_PEM, 'hello\n');

const APPS = `apps:
  - { name: wiki, externalUrl: "https://wiki.example.com/", internalUrl: "http://10.0.0.5/", assignment: any }
  - { name: hr, externalUrl: "https://hr.example.com/", internalUrl: "http://10.0.0.6/", assignedGroups: [hr-staff] }
`;
const OFFICE = 'namedLocations:\n  - { name: office, cidrs: ["10.0.0.0/8"] }\n';
const EVERYONE = 'assignments: { users: { include: [all] } }';
/** One policy (a flow mapping) with the apps and an office location around it. */
const policy = (body: string, extra = OFFICE) => `${APPS}${extra}policies:\n  - { name: P, ${body} }\n`;
const location = (body: string) => `${APPS}namedLocations:\n  - { name: L, ${body} }\n`;

type Issue = { path: string; found: string; expected: string };

const issuesOf = (text: string): Issue[] => configIssues(text, path.join(dir, 'relay.yaml'));

const refused: [string, string, string][] = [
  // references
  [
    'policy names an unknown app',
    policy(`assignments: { users: { include: [all] }, apps: { include: [wiki, payroll] } }, grant: { block: true }`),
    'policies[0].assignments.apps.include[1]',
  ],
  [
    'policy excludes an unknown app',
    policy(`assignments: { users: { include: [all] }, apps: { exclude: [payroll] } }, grant: { block: true }`),
    'policies[0].assignments.apps.exclude[0]',
  ],
  [
    'policy names an unknown group',
    policy(`assignments: { groups: { include: [finance] } }, grant: { block: true }`),
    'policies[0].assignments.groups.include[0]',
  ],
  [
    'policy excludes an unknown group',
    policy(`assignments: { users: { include: [all] }, groups: { exclude: [finance] } }, grant: { block: true }`),
    'policies[0].assignments.groups.exclude[0]',
  ],
  [
    'policy names an unknown location',
    policy(`${EVERYONE}, conditions: { locations: { include: [office, home] } }, grant: { block: true }`),
    'policies[0].conditions.locations.include[1]',
  ],
  [
    'policy excludes an unknown location',
    policy(`${EVERYONE}, conditions: { locations: { include: [all], exclude: [home] } }, grant: { block: true }`),
    'policies[0].conditions.locations.exclude[0]',
  ],
  [
    'location reference when no locations are declared',
    policy(`${EVERYONE}, conditions: { locations: { include: [office] } }, grant: { block: true }`, ''),
    'policies[0].conditions.locations.include[0]',
  ],
  [
    'unknown platform',
    policy(`${EVERYONE}, conditions: { platforms: { include: [bsd] } }, grant: { block: true }`),
    'policies[0].conditions.platforms.include[0]',
  ],
  [
    'unknown excluded platform',
    policy(`${EVERYONE}, conditions: { platforms: { exclude: [Windows] } }, grant: { block: true }`),
    'policies[0].conditions.platforms.exclude[0]',
  ],
  // CIDRs
  ['prefix too long', location('cidrs: ["10.0.0.0/33"]'), 'namedLocations[0].cidrs[0]'],
  ['three-part address', location('cidrs: ["10.0.0/8"]'), 'namedLocations[0].cidrs[0]'],
  ['not an address', location('cidrs: [foo]'), 'namedLocations[0].cidrs[0]'],
  ['leading zero in the prefix', location('cidrs: ["10.0.0.0/08"]'), 'namedLocations[0].cidrs[0]'],
  ['an address with a zone id', location('cidrs: ["fe80::1%eth0"]'), 'namedLocations[0].cidrs[0]'],
  ['negative prefix', location('cidrs: ["10.0.0.0/-1"]'), 'namedLocations[0].cidrs[0]'],
  ['empty prefix', location('cidrs: ["10.0.0.0/"]'), 'namedLocations[0].cidrs[0]'],
  ['octet out of range', location('cidrs: ["10.0.0.256/32"]'), 'namedLocations[0].cidrs[0]'],
  ['IPv6 prefix too long', location('cidrs: ["2001:db8::/129"]'), 'namedLocations[0].cidrs[0]'],
  ['bad IPv6', location('cidrs: ["2001:db8:::/32"]'), 'namedLocations[0].cidrs[0]'],
  ['bad second CIDR', location('cidrs: ["10.0.0.0/8", "bar/8"]'), 'namedLocations[0].cidrs[1]'],
  ['cidrs not a list', location('cidrs: "10.0.0.0/8"'), 'namedLocations[0].cidrs'],
  ['overlap: larger first', location('cidrs: ["10.0.0.0/8", "10.1.0.0/16"]'), 'namedLocations[0].cidrs[1]'],
  ['overlap: smaller first', location('cidrs: ["10.1.0.0/16", "10.0.0.0/8"]'), 'namedLocations[0].cidrs[1]'],
  ['overlap: same range twice', location('cidrs: ["192.0.2.0/24", "192.0.2.0/24"]'), 'namedLocations[0].cidrs[1]'],
  [
    'overlap: host inside range',
    location('cidrs: ["192.0.2.0/24", "198.51.100.0/24", "192.0.2.9/32"]'),
    'namedLocations[0].cidrs[2]',
  ],
  ['overlap: IPv6', location('cidrs: ["2001:db8::/32", "2001:db8:5::/48"]'), 'namedLocations[0].cidrs[1]'],
  [
    'overlap: IPv6, smaller first',
    location('cidrs: ["2001:db8:5::/48", "2001:db8::/32"]'),
    'namedLocations[0].cidrs[1]',
  ],
  // location shape
  ['location with neither cidrs nor countries', location('cidrs: []'), 'namedLocations[0]'],
  ['location with no keys but its name', `${APPS}namedLocations:\n  - { name: L }\n`, 'namedLocations[0]'],
  ['location without a name', `${APPS}namedLocations:\n  - { cidrs: ["10.0.0.0/8"] }\n`, 'namedLocations[0].name'],
  [
    'duplicate location name',
    `${APPS}namedLocations:\n  - { name: L, cidrs: ["10.0.0.0/8"] }\n  - { name: L, countries: [DE] }\n`,
    'namedLocations[1].name',
  ],
  ['namedLocations not a list', `${APPS}namedLocations: { office: ["10.0.0.0/8"] }\n`, 'namedLocations'],
  ['unknown key in a location', location('cidrs: ["10.0.0.0/8"], ranges: ["10.0.0.0/8"]'), 'namedLocations[0].ranges'],
  // countries
  ['unknown country XX', location('countries: [XX]'), 'namedLocations[0].countries[0]'],
  ['unknown country ZZ', location('countries: [DE, ZZ]'), 'namedLocations[0].countries[1]'],
  ['unknown country AA', location('countries: [AA]'), 'namedLocations[0].countries[0]'],
  ['alpha-3 code', location('countries: [DEU]'), 'namedLocations[0].countries[0]'],
  ['country name', location('countries: [Germany]'), 'namedLocations[0].countries[0]'],
  ['numeric code', location('countries: ["276"]'), 'namedLocations[0].countries[0]'],
  // time windows
  [
    'from equals to',
    policy(`${EVERYONE}, conditions: { time: { from: "09:00", to: "09:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.to',
  ],
  [
    'hour 25',
    policy(`${EVERYONE}, conditions: { time: { from: "25:00", to: "06:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.from',
  ],
  [
    '24:00',
    policy(`${EVERYONE}, conditions: { time: { from: "09:00", to: "24:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.to',
  ],
  [
    'one-digit hour',
    policy(`${EVERYONE}, conditions: { time: { from: "8:00", to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.from',
  ],
  [
    'minute 60',
    policy(`${EVERYONE}, conditions: { time: { from: "08:60", to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.from',
  ],
  [
    'with seconds',
    policy(`${EVERYONE}, conditions: { time: { from: "08:00:00", to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.from',
  ],
  [
    'a number',
    policy(`${EVERYONE}, conditions: { time: { from: 800, to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.from',
  ],
  [
    'missing from',
    policy(`${EVERYONE}, conditions: { time: { to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.from',
  ],
  [
    'missing to',
    policy(`${EVERYONE}, conditions: { time: { from: "09:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.to',
  ],
  [
    'empty days',
    policy(`${EVERYONE}, conditions: { time: { days: [], from: "09:00", to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.days',
  ],
  [
    'unknown day',
    policy(
      `${EVERYONE}, conditions: { time: { days: [mon, funday], from: "09:00", to: "17:00" } }, grant: { block: true }`,
    ),
    'policies[0].conditions.time.days[1]',
  ],
  [
    'full day name',
    policy(`${EVERYONE}, conditions: { time: { days: [monday], from: "09:00", to: "17:00" } }, grant: { block: true }`),
    'policies[0].conditions.time.days[0]',
  ],
  [
    'bad time zone',
    policy(
      `${EVERYONE}, conditions: { time: { from: "09:00", to: "17:00", timeZone: Mars/Olympus_Mons } }, grant: { block: true }`,
    ),
    'policies[0].conditions.time.timeZone',
  ],
  [
    'outside not a boolean',
    policy(`${EVERYONE}, conditions: { time: { from: "09:00", to: "17:00", outside: "yes" } }, grant: { block: true }`),
    'policies[0].conditions.time.outside',
  ],
  [
    'unknown key in time',
    policy(
      `${EVERYONE}, conditions: { time: { from: "09:00", to: "17:00", weekdays: [mon] } }, grant: { block: true }`,
    ),
    'policies[0].conditions.time.weekdays',
  ],
  // grants
  ['block and MFA', policy(`${EVERYONE}, grant: { block: true, requireMfa: true }`), 'policies[0].grant'],
  [
    'block and device certificate',
    policy(
      `${EVERYONE}, grant: { block: true, requireDeviceCertificate: true }`,
      `${OFFICE}devices: { caFile: ${JSON.stringify(CA_FILE)} }\n`,
    ),
    'policies[0].grant',
  ],
  ['block and acr', policy(`${EVERYONE}, grant: { block: true, requireAcr: gold }`), 'policies[0].grant'],
  ['no grant at all', policy(EVERYONE), 'policies[0].grant'],
  ['empty grant', policy(`${EVERYONE}, grant: {}`), 'policies[0].grant'],
  ['everything false', policy(`${EVERYONE}, grant: { block: false, requireMfa: false }`), 'policies[0].grant'],
  ['bad operator', policy(`${EVERYONE}, grant: { requireMfa: true, operator: or }`), 'policies[0].grant.operator'],
  ['empty acr', policy(`${EVERYONE}, grant: { requireAcr: "" }`), 'policies[0].grant.requireAcr'],
  ['MFA not a boolean', policy(`${EVERYONE}, grant: { requireMfa: "yes" }`), 'policies[0].grant.requireMfa'],
  [
    'unknown key in grant',
    policy(`${EVERYONE}, grant: { requireMfa: true, requirePassword: true }`),
    'policies[0].grant.requirePassword',
  ],
  [
    'device certificate without devices.caFile',
    policy(`${EVERYONE}, grant: { requireDeviceCertificate: true }`),
    'devices.caFile',
  ],
  [
    'device certificate, report-only, without devices.caFile',
    policy(`state: reportOnly, ${EVERYONE}, grant: { requireDeviceCertificate: true }`),
    'devices.caFile',
  ],
  [
    'devices.caFile not a certificate',
    policy(
      `${EVERYONE}, grant: { requireDeviceCertificate: true }`,
      `${OFFICE}devices: { caFile: ${JSON.stringify(NOT_PEM)} }\n`,
    ),
    'devices.caFile',
  ],
  [
    'devices.caFile missing',
    policy(
      `${EVERYONE}, grant: { requireDeviceCertificate: true }`,
      `${OFFICE}devices: { caFile: /nonexistent/ca.pem }\n`,
    ),
    'devices.caFile',
  ],
  ['unknown key in devices', `${APPS}devices: { caFile: ${JSON.stringify(CA_FILE)}, crl: x.pem }\n`, 'devices.crl'],
  // assignments
  [
    'no users or groups included',
    policy(`assignments: { apps: { include: [wiki] } }, grant: { block: true }`),
    'policies[0].assignments',
  ],
  [
    'only exclusions',
    policy(`assignments: { users: { exclude: [bob] } }, grant: { block: true }`),
    'policies[0].assignments',
  ],
  ['no assignments at all', policy(`grant: { block: true }`), 'policies[0].assignments'],
  [
    'users not a mapping',
    policy(`assignments: { users: [all] }, grant: { block: true }`),
    'policies[0].assignments.users',
  ],
  [
    'unknown key in assignments',
    policy(`assignments: { users: { include: [all] }, roles: { include: [admin] } }, grant: { block: true }`),
    'policies[0].assignments.roles',
  ],
  [
    'unknown key in users',
    policy(`assignments: { users: { include: [all], only: [bob] } }, grant: { block: true }`),
    'policies[0].assignments.users.only',
  ],
  [
    'unknown key in groups',
    policy(`assignments: { users: { include: [all] }, groups: { includes: [staff] } }, grant: { block: true }`),
    'policies[0].assignments.groups.includes',
  ],
  [
    'unknown key in apps',
    policy(`assignments: { users: { include: [all] }, apps: { list: [wiki] } }, grant: { block: true }`),
    'policies[0].assignments.apps.list',
  ],
  // policy shape
  [
    'duplicate policy name',
    `${APPS}policies:\n  - { name: P, ${EVERYONE}, grant: { block: true } }\n  - { name: P, ${EVERYONE}, grant: { requireMfa: true } }\n`,
    'policies[1].name',
  ],
  ['policy without a name', `${APPS}policies:\n  - { ${EVERYONE}, grant: { block: true } }\n`, 'policies[0].name'],
  [
    'policy name starting with a dash',
    `${APPS}policies:\n  - { name: "-p", ${EVERYONE}, grant: { block: true } }\n`,
    'policies[0].name',
  ],
  ['bad state', policy(`state: enabled, ${EVERYONE}, grant: { block: true }`), 'policies[0].state'],
  ['state in the wrong case', policy(`state: reportonly, ${EVERYONE}, grant: { block: true }`), 'policies[0].state'],
  [
    'bad risk level',
    policy(`${EVERYONE}, conditions: { signInRisk: [low, severe] }, grant: { block: true }`),
    'policies[0].conditions.signInRisk[1]',
  ],
  [
    'empty risk list',
    policy(`${EVERYONE}, conditions: { signInRisk: [] }, grant: { block: true }`),
    'policies[0].conditions.signInRisk',
  ],
  [
    'risk not a list',
    policy(`${EVERYONE}, conditions: { signInRisk: high }, grant: { block: true }`),
    'policies[0].conditions.signInRisk',
  ],
  [
    'bad user risk level',
    policy(`${EVERYONE}, conditions: { userRisk: [Medium] }, grant: { block: true }`),
    'policies[0].conditions.userRisk[0]',
  ],
  [
    'empty user risk list',
    policy(`${EVERYONE}, conditions: { userRisk: [] }, grant: { block: true }`),
    'policies[0].conditions.userRisk',
  ],
  ['unknown key in a policy', policy(`${EVERYONE}, grant: { block: true }, color: red`), 'policies[0].color'],
  [
    'unknown key in conditions',
    policy(`${EVERYONE}, conditions: { devices: { include: [all] } }, grant: { block: true }`),
    'policies[0].conditions.devices',
  ],
  [
    'unknown key in a locations condition',
    policy(`${EVERYONE}, conditions: { locations: { only: [office] } }, grant: { block: true }`),
    'policies[0].conditions.locations.only',
  ],
  [
    'unknown key in a platforms condition',
    policy(`${EVERYONE}, conditions: { platforms: { only: [ios] } }, grant: { block: true }`),
    'policies[0].conditions.platforms.only',
  ],
  [
    'unknown key in session',
    policy(`${EVERYONE}, grant: { requireMfa: true }, session: { idleTimeout: 1h }`),
    'policies[0].session.idleTimeout',
  ],
  [
    'sign-in frequency too short',
    policy(`${EVERYONE}, grant: { requireMfa: true }, session: { signInFrequency: 30s }`),
    'policies[0].session.signInFrequency',
  ],
  [
    'sign-in frequency not a duration',
    policy(`${EVERYONE}, grant: { requireMfa: true }, session: { signInFrequency: daily }`),
    'policies[0].session.signInFrequency',
  ],
  [
    'persistentBrowser not a boolean',
    policy(`${EVERYONE}, grant: { requireMfa: true }, session: { persistentBrowser: never }`),
    'policies[0].session.persistentBrowser',
  ],
  ['policies not a list', `${APPS}policies: { P: { grant: { block: true } } }\n`, 'policies'],
  ['policy not a mapping', `${APPS}policies: [ block ]\n`, 'policies[0]'],
  ['groups not a list', `${APPS}groups: staff\n`, 'groups'],
];

t.test('bad Conditional Access input is refused at load with the key path', async (t) => {
  for (const [name, text, keyPath] of refused) {
    const issues = issuesOf(text);
    t.ok(
      issues.some((i) => i.path === keyPath),
      `${name}: reports ${keyPath} (got ${JSON.stringify(issues.map((i) => i.path))})`,
    );
    for (const i of issues) t.ok(i.found && i.expected, `${name}: says what was found and expected`);
  }
});

t.test('the error is ERR_CONFIG_INVALID from loadRelayConfig too', async (t) => {
  const file = path.join(dir, 'bad.yaml');
  writeFileSync(file, location('cidrs: ["10.0.0.0/8", "10.1.0.0/16"]'));
  const err = t.throws(() => loadRelayConfig(file)) as { code?: string; details?: { file?: string; issues?: Issue[] } };
  t.equal(err.code, 'ERR_CONFIG_INVALID');
  t.equal(err.details?.file, file);
  t.same(
    err.details?.issues?.map((i) => i.path),
    ['namedLocations[0].cidrs[1]'],
  );
});

t.test('every problem is reported at once', async (t) => {
  const text = `${APPS}namedLocations:\n  - { name: L, cidrs: ["10.0.0.0/33"], countries: [XX] }\npolicies:\n  - { name: P, state: maybe, assignments: { groups: { include: [finance] } }, conditions: { locations: { include: [home] } }, grant: {} }\n`;
  t.same(
    issuesOf(text)
      .map((i) => i.path)
      .sort(),
    [
      'namedLocations[0].cidrs[0]',
      'namedLocations[0].countries[0]',
      'policies[0].assignments.groups.include[0]',
      'policies[0].conditions.locations.include[0]',
      'policies[0].grant',
      'policies[0].state',
    ],
  );
});

t.test(
  'accepted: groups declared at the top or assigned to an app, lower-case countries, ranges in separate locations',
  async (t) => {
    const accepted: [string, string][] = [
      [
        'group declared under groups:',
        `${APPS}groups: [finance]\npolicies:\n  - { name: P, assignments: { groups: { include: [finance] } }, grant: { block: true } }\n`,
      ],
      [
        'group from an app assignedGroups',
        policy(`assignments: { groups: { include: [hr-staff] } }, grant: { block: true }`),
      ],
      [
        'excluded group from an app assignedGroups',
        policy(`assignments: { users: { include: [all] }, groups: { exclude: [hr-staff] } }, grant: { block: true }`),
      ],
      [
        'users are not checked against a directory',
        policy(`assignments: { users: { include: [someone@example.com], exclude: [bob] } }, grant: { block: true }`),
      ],
      ['adjacent ranges', location('cidrs: ["10.0.0.0/9", "10.128.0.0/9", "2001:db8::/33", "2001:db8:8000::/33"]')],
      ['IPv4 and IPv6 ranges side by side', location('cidrs: ["0.0.0.0/0", "::/0"]')],
      [
        'the same range in two locations',
        `${APPS}namedLocations:\n  - { name: a, cidrs: ["10.0.0.0/8"] }\n  - { name: b, cidrs: ["10.1.0.0/16"] }\n`,
      ],
      ['countries only', location('countries: [DE, AT, ch]')],
      [
        'overnight window',
        policy(`${EVERYONE}, conditions: { time: { from: "22:00", to: "06:00" } }, grant: { block: true }`),
      ],
      [
        'unquoted times (YAML 1.2 strings)',
        policy(`${EVERYONE}, conditions: { time: { from: 09:00, to: 17:30 } }, grant: { block: true }`),
      ],
      [
        'day names in capitals',
        policy(
          `${EVERYONE}, conditions: { time: { days: [Mon, FRI], from: "09:00", to: "17:00" } }, grant: { block: true }`,
        ),
      ],
      [
        'reportOnly and off',
        `${APPS}policies:\n  - { name: a, state: reportOnly, ${EVERYONE}, grant: { block: true } }\n  - { name: b, state: off, ${EVERYONE}, grant: { block: true } }\n`,
      ],
      ['no policies key', APPS],
    ];
    for (const [name, text] of accepted) t.same(issuesOf(text), [], name);
    const cfg = parseRelayConfig(location('countries: [de, At]'), 'relay.yaml');
    t.same(cfg.access.namedLocations[0]!.countries, ['DE', 'AT'], 'country codes are kept in upper case');
    const days = parseRelayConfig(
      policy(
        `${EVERYONE}, conditions: { time: { days: [Mon, FRI], from: "09:00", to: "17:00" } }, grant: { block: true }`,
      ),
      'relay.yaml',
    );
    t.same(days.access.policies[0]!.time!.days, ['mon', 'fri']);
  },
);

// BUG (src/config/access-config.ts isCountryCode): Intl.DisplayNames also names ICU's
// aliases and macro-regions, so codes GeoIP never returns are accepted and the
// location silently never matches (UK is GB; XA is "Pseudo-Accents").
t.test('codes that are not ISO 3166-1 countries are refused', async (t) => {
  for (const code of ['UK', 'XA', 'QO', 'EZ', 'UN', 'BU', 'YU', 'SU']) {
    t.ok(
      issuesOf(location(`countries: [${code}]`)).some((i) => i.path === 'namedLocations[0].countries[0]'),
      code,
    );
  }
  for (const code of ['GB', 'XK', 'DE', 'JP', 'US', 'CW'])
    t.same(issuesOf(location(`countries: [${code}]`)), [], `${code} accepted`);
});

t.test('a full valid config loads, frozen, with every part parsed', async (t) => {
  const file = path.join(dir, 'full.yaml');
  writeFileSync(
    file,
    `${APPS}groups: [staff, contractors, finance]
namedLocations:
  - name: office
    cidrs: ["10.0.0.0/8", "192.0.2.0/24", "2001:db8:1::/48"]
  - name: home countries
    countries: [DE, at, CH]
  - name: hq
    cidrs: ["198.51.100.0/24"]
    countries: [FR]
devices:
  caFile: ca.pem
policies:
  - name: block outside office
    state: on
    assignments:
      users: { include: [all], exclude: [breakglass@example.com] }
      groups: { exclude: [contractors] }
      apps: { include: [hr] }
    conditions:
      locations: { include: [all], exclude: [office, hq] }
    grant: { block: true }
  - name: mfa everywhere
    state: reportOnly
    assignments:
      groups: { include: [staff, finance, hr-staff] }
      apps: { include: [all], exclude: [wiki] }
    conditions:
      platforms: { include: [all], exclude: [windows, macos] }
      signInRisk: [medium, high]
      time: { days: [mon, tue, wed, thu, fri], from: "08:00", to: "18:30", timeZone: Europe/Berlin, outside: true }
    grant: { requireMfa: true, requireAcr: gold, requireDeviceCertificate: true, operator: any }
    session: { signInFrequency: 4h, persistentBrowser: false }
  - name: night shift
    state: off
    assignments: { users: { include: [alice, bob] } }
    conditions:
      time: { from: "22:00", to: "06:00", timeZone: Asia/Tokyo }
    grant: { requireMfa: true }
`,
  );
  const cfg = loadRelayConfig(file);
  t.ok(
    Object.isFrozen(cfg.access) &&
      Object.isFrozen(cfg.access.policies) &&
      Object.isFrozen(cfg.access.policies[1]!.grant),
    'frozen',
  );
  t.equal(cfg.devices?.caFile, CA_FILE, 'caFile relative to the config file');
  t.match(cfg.devices?.caPem, /BEGIN CERTIFICATE/);
  t.same(
    cfg.access.namedLocations.map((l) => l.name),
    ['office', 'home countries', 'hq'],
  );
  t.same(cfg.access.namedLocations[1]!.countries, ['DE', 'AT', 'CH']);
  const [block, mfa, night] = cfg.access.policies;
  t.equal(block!.state, 'on');
  t.same(block!.users, { include: ['all'], exclude: ['breakglass@example.com'] });
  t.same(block!.groups, { include: [], exclude: ['contractors'] });
  t.same(block!.apps, { include: ['hr'], exclude: [] });
  t.same(block!.locations, { include: ['all'], exclude: ['office', 'hq'] });
  t.equal(block!.platforms, undefined);
  t.equal(block!.time, undefined);
  t.same(block!.grant, {
    block: true,
    requireMfa: false,
    requireAcr: undefined,
    requireDeviceCertificate: false,
    operator: 'all',
  });
  t.same(block!.session, { signInFrequencyMs: undefined, persistentBrowser: undefined });
  t.equal(mfa!.state, 'reportOnly');
  t.same(mfa!.apps, { include: ['all'], exclude: ['wiki'] });
  t.same(mfa!.platforms, { include: ['all'], exclude: ['windows', 'macos'] });
  t.same(mfa!.signInRisk, ['medium', 'high']);
  t.match(mfa!.time, {
    days: ['mon', 'tue', 'wed', 'thu', 'fri'],
    fromMin: 480,
    toMin: 1110,
    timeZone: 'Europe/Berlin',
    outside: true,
  });
  t.same(mfa!.grant, {
    block: false,
    requireMfa: true,
    requireAcr: 'gold',
    requireDeviceCertificate: true,
    operator: 'any',
  });
  t.same(mfa!.session, { signInFrequencyMs: 4 * 3_600_000, persistentBrowser: false });
  t.equal(night!.state, 'off');
  t.match(night!.time, {
    days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'],
    fromMin: 1320,
    toMin: 360,
    timeZone: 'Asia/Tokyo',
    outside: false,
  });
  t.same(night!.apps, { include: ['all'], exclude: [] }, 'apps default to all');
});

t.test('no Conditional Access configured: empty, no devices', async (t) => {
  const cfg = parseRelayConfig(APPS, 'relay.yaml');
  t.same(cfg.access, { namedLocations: [], policies: [] });
  t.equal(cfg.devices, undefined);
});
