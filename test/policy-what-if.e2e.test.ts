// `proxyctl policy what-if` as a user runs it (the built binary): one line per
// policy and the decision, --json for scripts, exit 0 whatever the decision and
// 1 with one [ERR_USAGE] line on bad input; --user looked up among the embedded
// provider's users. Runs dist/: `npm run build` first.
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli, tempDir } from './helpers/proc.js';

const dir = tempDir(t, 'proxyctl-what-if-');
const config = path.join(dir, 'relay.yaml');
writeFileSync(
  config,
  `dataDir: ./data
apps:
  - { name: wiki, externalUrl: "https://wiki.example.com/", internalUrl: "http://10.0.0.5/", assignment: any }
  - { name: payroll, externalUrl: "https://payroll.example.com/", internalUrl: "http://10.0.0.6/", assignedGroups: [finance], assignedUsers: [carol@example.com] }
namedLocations:
  - { name: office, cidrs: ["198.51.100.0/24", "2001:db8:1::/48"] }
policies:
  - name: office-only
    assignments: { users: { include: [all] }, apps: { include: [wiki] } }
    conditions: { locations: { include: [all], exclude: [office] } }
    grant: { block: true }
  - name: mfa-for-payroll
    assignments: { groups: { include: [finance] }, users: { include: [carol@example.com] }, apps: { include: [payroll] } }
    grant: { requireMfa: true }
    session: { signInFrequency: 1h }
  - name: watch-weekends
    state: reportOnly
    assignments: { users: { include: [all] } }
    conditions: { time: { days: [sat, sun], from: "00:00", to: "23:59" } }
    grant: { block: true }
`,
);

interface Report {
  context: {
    app: string;
    user: string;
    email: string | null;
    groups: string[];
    ip: string;
    country: string | null;
    platform: string;
    amr: string[];
    acr: string | null;
    risk: string;
    userRisk: string;
    time: string;
    deviceCertificate: boolean;
  };
  assigned: boolean;
  decision: {
    result: string;
    decidedBy: string | null;
    hint: string | null;
    stepUp: { mfa: boolean; acr: string | null } | null;
    policies: { name: string; state: string; applies: boolean; outcome: string; missing: string[] }[];
    session: { signInFrequencyMs: number | null; persistentBrowser: boolean | null };
  };
}

const WED = '2025-03-12T10:00:00Z';
const SAT = '2025-03-15T10:00:00Z';

/** `proxyctl policy what-if --config <file> …args`, as a user types it. */
const whatIfCli = (file: string, args: string[]) => runCli(['policy', 'what-if', '--config', file, ...args]);

async function whatIf(t: Test, args: string[]): Promise<Report> {
  const r = await whatIfCli(config, ['--time', WED, ...args, '--json']);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim()})`);
  t.equal(r.stderr, '', 'nothing on stderr');
  return JSON.parse(r.stdout) as Report;
}
const policyOf = (r: Report, name: string) => r.decision.policies.find((p) => p.name === name);

t.test('human output: a line per policy, then the decision', async (t) => {
  const r = await whatIfCli(config, ['--app', 'wiki', '--user', 'alice', '--ip', '203.0.113.7', '--time', SAT]);
  t.equal(r.code, 0, 'a denial is still exit 0');
  t.equal(r.stderr, '');
  const lines = r.stdout.trimEnd().split('\n');
  for (const name of ['office-only', 'mfa-for-payroll', 'watch-weekends']) {
    t.equal(lines.filter((l) => l.startsWith(`${name} `)).length, 1, `one line for ${name}`);
  }
  const cols = (name: string) => lines.find((l) => l.startsWith(`${name} `))!.split(/\s{2,}/);
  t.same([cols('office-only')[1], cols('office-only')[2]], ['on', 'yes']);
  t.equal(cols('office-only')[4], 'blocked');
  t.same([cols('mfa-for-payroll')[1], cols('mfa-for-payroll')[2]], ['on', 'no']);
  t.equal(cols('mfa-for-payroll')[4], 'notApplicable');
  t.same(
    [cols('watch-weekends')[1], cols('watch-weekends')[2], cols('watch-weekends')[4]],
    ['reportOnly', 'yes', 'blocked'],
  );
  const decision = lines.filter((l) => l.startsWith('decision: '));
  t.equal(decision.length, 1, 'one decision line');
  t.match(decision[0], /^decision: deny\b/);
  t.match(decision[0], /"office-only"/, 'names the deciding policy');
  t.ok(
    lines.indexOf(decision[0]!) > lines.findIndex((l) => l.startsWith('watch-weekends ')),
    'the decision comes after the policies',
  );

  const allowed = await whatIfCli(config, ['--app', 'wiki', '--user', 'alice', '--ip', '198.51.100.20', '--time', WED]);
  t.equal(allowed.code, 0);
  t.ok(allowed.stdout.split('\n').some((l) => /^decision: allow\b/.test(l)));

  const stepUp = await whatIfCli(config, ['--app', 'payroll', '--user', 'alice', '--groups', 'finance', '--time', WED]);
  t.equal(stepUp.code, 0);
  const line = stepUp.stdout.split('\n').find((l) => l.startsWith('decision: '));
  t.match(line, /^decision: stepUp by policy "mfa-for-payroll"/);
  t.ok(
    stepUp.stdout.split('\n').some((l) => l.startsWith('mfa-for-payroll ') && l.split(/\s{2,}/)[5] === 'mfa'),
    'missing: mfa',
  );

  const unassigned = await whatIfCli(config, ['--app', 'payroll', '--user', 'bob', '--groups', 'sales', '--time', WED]);
  t.equal(unassigned.code, 0);
  t.ok(unassigned.stdout.split('\n').includes('decision: deny (not assigned to the app)'));
});

t.test('--json: (a) an office address is allowed', async (t) => {
  for (const ip of ['198.51.100.20', '2001:db8:1::20', '::ffff:198.51.100.20']) {
    const r = await whatIf(t, ['--app', 'wiki', '--user', 'alice', '--ip', ip]);
    t.equal(r.decision.result, 'allow', ip);
    t.equal(r.decision.decidedBy, null);
    t.equal(r.assigned, true);
    t.match(policyOf(r, 'office-only'), { applies: false, outcome: 'notApplicable' });
  }
});

t.test('--json: (b) an outside address is blocked, naming the policy', async (t) => {
  const r = await whatIf(t, ['--app', 'wiki', '--user', 'alice', '--ip', '8.8.8.8']);
  t.equal(r.decision.result, 'deny');
  t.equal(r.decision.decidedBy, 'office-only');
  t.equal(r.decision.stepUp, null);
  t.match(policyOf(r, 'office-only'), { applies: true, outcome: 'blocked' });
  t.equal(r.context.country, 'US', 'country from GeoIP');
  t.equal(r.context.ip, '8.8.8.8');
});

t.test('--json: (c) an MFA-required app: step-up without --mfa, allowed with it', async (t) => {
  const without = await whatIf(t, ['--app', 'payroll', '--user', 'alice', '--groups', 'staff,finance']);
  t.equal(without.decision.result, 'stepUp');
  t.equal(without.decision.decidedBy, 'mfa-for-payroll');
  t.same(without.decision.stepUp, { mfa: true, acr: null });
  t.match(policyOf(without, 'mfa-for-payroll'), { applies: true, outcome: 'unsatisfied', missing: ['mfa'] });
  t.same(without.context.amr, ['pwd']);
  t.same(without.context.groups, ['staff', 'finance']);

  const withMfa = await whatIf(t, ['--app', 'payroll', '--user', 'alice', '--groups', 'finance', '--mfa']);
  t.equal(withMfa.decision.result, 'allow');
  t.same(withMfa.context.amr, ['pwd', 'mfa']);
  t.match(policyOf(withMfa, 'mfa-for-payroll'), { outcome: 'granted', missing: [] });
  t.equal(withMfa.decision.session.signInFrequencyMs, 3_600_000);

  const byEmail = await whatIf(t, ['--app', 'payroll', '--user', 'c-123', '--email', 'carol@example.com', '--mfa']);
  t.equal(byEmail.assigned, true, 'assigned by email');
  t.equal(byEmail.decision.result, 'allow');
});

t.test('--json: (d) an unassigned user is denied', async (t) => {
  const r = await whatIf(t, ['--app', 'payroll', '--user', 'bob', '--groups', 'sales', '--mfa']);
  t.equal(r.assigned, false);
  t.equal(r.decision.result, 'deny');
  t.equal(r.decision.decidedBy, null);
  t.equal(r.decision.stepUp, null);
  t.equal(r.decision.policies.length, 3, 'policies are still reported');
});

t.test('--json: context defaults and options', async (t) => {
  const before = Date.now();
  const r = await whatIfCli(config, ['--app', 'wiki', '--user', 'alice', '--json']);
  t.equal(r.code, 0);
  const ctx = (JSON.parse(r.stdout) as Report).context;
  t.match(ctx, {
    app: 'wiki',
    user: 'alice',
    email: null,
    groups: [],
    ip: '127.0.0.1',
    country: null,
    platform: 'other',
    amr: ['pwd'],
    acr: null,
    risk: 'none',
    deviceCertificate: false,
  });
  t.ok(Math.abs(Date.parse(ctx.time) - before) < 60_000, 'time defaults to now');
  const full = await whatIf(t, [
    '--app',
    'wiki',
    '--user',
    'alice',
    '--email',
    'alice@example.com',
    '--platform',
    'ios',
    '--acr',
    'gold',
    '--risk',
    'high',
    '--user-risk',
    'medium',
    '--device-cert',
    '--ip',
    '2001:db8:1::1',
  ]);
  t.match(full.context, {
    email: 'alice@example.com',
    platform: 'ios',
    acr: 'gold',
    risk: 'high',
    userRisk: 'medium',
    deviceCertificate: true,
    time: '2025-03-12T10:00:00.000Z',
  });
  const weekend = await whatIfCli(config, [
    '--app',
    'wiki',
    '--user',
    'alice',
    '--ip',
    '198.51.100.1',
    '--time',
    '2025-03-15T12:00:00+09:00',
    '--json',
  ]);
  const w = JSON.parse(weekend.stdout) as Report;
  t.equal(w.context.time, '2025-03-15T03:00:00.000Z', 'offsets are honoured');
  t.match(policyOf(w, 'watch-weekends'), { state: 'reportOnly', applies: true, outcome: 'blocked' });
  t.equal(w.decision.result, 'allow', 'report-only is not enforced');
});

t.test('bad input: exit 1, one stderr line with [ERR_USAGE]', async (t) => {
  const base = ['--user', 'alice'];
  const bad: [string, string[]][] = [
    ['unknown app', ['--app', 'nope']],
    ['unknown platform', ['--app', 'wiki', '--platform', 'beos']],
    ['platform in capitals', ['--app', 'wiki', '--platform', 'Windows']],
    ['unknown risk', ['--app', 'wiki', '--risk', 'severe']],
    ['unknown user risk', ['--app', 'wiki', '--user-risk', 'HIGH']],
    ['time not ISO', ['--app', 'wiki', '--time', 'yesterday']],
    ['time without a zone', ['--app', 'wiki', '--time', '2025-03-12T10:00:00']],
    ['time on a day the month lacks', ['--app', 'wiki', '--time', '2025-02-30T10:00:00Z']],
    ['time at hour 24', ['--app', 'wiki', '--time', '2025-03-12T24:00:00Z']],
    ['bad IP', ['--app', 'wiki', '--ip', '10.0.0']],
    ['CIDR as IP', ['--app', 'wiki', '--ip', '10.0.0.0/8']],
  ];
  for (const [name, args] of bad) {
    const r = await whatIfCli(config, [...base, ...args]);
    t.equal(r.code, 1, `${name}: exit 1`);
    const lines = r.stderr.trimEnd().split('\n');
    t.equal(lines.length, 1, `${name}: one stderr line`);
    t.match(lines[0], /\[ERR_USAGE\]$/, `${name}: ERR_USAGE`);
    t.equal(r.stdout, '', `${name}: nothing on stdout`);
  }
  const unknownApp = await whatIfCli(config, [...base, '--app', 'nope']);
  t.match(unknownApp.stderr, /\bwiki\b/, 'names a known app');
  t.match(unknownApp.stderr, /\bpayroll\b/, 'names the other known app');

  const badConfig = path.join(dir, 'bad.yaml');
  writeFileSync(
    badConfig,
    'policies:\n  - { name: P, assignments: { groups: { include: [nobody] } }, grant: { block: true } }\n',
  );
  const r = await whatIfCli(badConfig, ['--app', 'wiki', '--user', 'alice']);
  t.equal(r.code, 1);
  t.match(r.stderr.trimEnd(), /\[ERR_CONFIG_INVALID\]$/);
  const missing = await whatIfCli(path.join(dir, 'none.yaml'), ['--app', 'wiki', '--user', 'alice']);
  t.equal(missing.code, 1);
  t.match(missing.stderr.trimEnd(), /\[ERR_CONFIG_READ\]$/);
  const noUser = await whatIfCli(config, ['--app', 'wiki']);
  t.not(noUser.code, 0, '--user is required');
});

t.test('e-mail addresses match without case; subjects with it', async (t) => {
  const rows: [string, string[], boolean][] = [
    ['assigned e-mail, other case', ['--user', 'c-1', '--email', 'Carol@Example.COM'], true],
    ['assigned e-mail, upper case', ['--user', 'c-1', '--email', 'CAROL@EXAMPLE.COM'], true],
    ['a subject spelled like the address is not it', ['--user', 'Carol@Example.com'], false],
  ];
  for (const [name, args, assigned] of rows) {
    const r = await whatIf(t, ['--app', 'payroll', ...args, '--mfa']);
    t.equal(r.assigned, assigned, name);
  }
  const policy = await whatIf(t, ['--app', 'payroll', '--user', 'c-1', '--email', 'CAROL@example.com']);
  t.match(policyOf(policy, 'mfa-for-payroll'), { applies: true }, 'the policy includes her by e-mail, case aside');
});

t.test('--user names a user of the embedded provider: their groups and e-mail are used', async (t) => {
  const { openSqliteStore } = await import('../src/store/index.js');
  const { hashPassword } = await import('../src/idp/users.js');
  const home = tempDir(t, 'proxyctl-what-if-users-');
  const file = path.join(home, 'relay.yaml');
  const hash = await hashPassword('a long password');
  writeFileSync(
    path.join(home, 'users.yaml'),
    `users:
  - { username: frank, passwordHash: "${hash}", email: Frank@Example.com, groups: [finance] }
  - { username: gina, passwordHash: "${hash}", groups: [sales] }
`,
  );
  writeFileSync(
    file,
    `dataDir: ./data
identity: { embedded: { usersFile: ./users.yaml } }
apps:
  - { name: payroll, externalUrl: "https://payroll.example.com/", internalUrl: "http://10.0.0.6/", assignedGroups: [finance], assignedUsers: [carol@example.com] }
policies:
  - name: mfa-for-payroll
    assignments: { groups: { include: [finance] }, users: { include: [carol@example.com] }, apps: { include: [payroll] } }
    grant: { requireMfa: true }
`,
  );
  const store = openSqliteStore(path.join(home, 'data'));
  const user = (username: string, email: string | null, groups: string[]) => ({
    username,
    passwordHash: hash,
    email,
    name: null,
    groups,
    roles: [],
    totpSecret: null,
    createdAt: Date.now(),
  });
  await store.users.put(user('carol', 'carol@example.com', []), 'test', 'user.add');
  await store.users.put(user('gina', null, ['finance']), 'test', 'user.add'); // the users file's gina wins
  await store.users.put(user('dup1', 'same@example.com', []), 'test', 'user.add');
  await store.users.put(user('dup2', 'SAME@example.com', []), 'test', 'user.add');
  await store.close();
  const run = async (args: string[]) => {
    const r = await whatIfCli(file, ['--app', 'payroll', '--time', WED, ...args, '--json']);
    t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim()})`);
    return JSON.parse(r.stdout) as Report & { userSource: string };
  };

  const frank = await run(['--user', 'frank']);
  t.equal(frank.userSource, 'embedded');
  t.match(
    frank.context,
    { user: 'frank', email: 'Frank@Example.com', groups: ['finance'] },
    "the users file's groups and e-mail",
  );
  t.equal(frank.assigned, true, 'assigned through the group he really has');
  t.equal(frank.decision.result, 'stepUp', 'and the group policy applies to him');

  const byEmail = await run(['--user', 'frank@example.COM']);
  t.match(byEmail.context, { user: 'frank', groups: ['finance'] }, 'found by e-mail, case aside');
  t.match(
    (await run(['--user', 'FRANK'])).context,
    { user: 'frank' },
    'user names are case-insensitive, as at the login form',
  );

  const carol = await run(['--user', 'carol']);
  t.match(carol.context, { user: 'carol', email: 'carol@example.com', groups: [] }, 'a store user');
  t.equal(carol.assigned, true, 'assigned by her e-mail');

  const gina = await run(['--user', 'gina']);
  t.same(gina.context.groups, ['sales'], 'the users file wins over the store, as in the provider');
  t.equal(gina.assigned, false);

  const override = await run(['--user', 'gina', '--groups', 'finance']);
  t.same(override.context.groups, ['finance'], '--groups given overrides the looked-up groups');

  const nobody = await run(['--user', 'nobody', '--groups', 'finance']);
  t.equal(nobody.userSource, 'options', 'not a user: a bare subject');
  t.match(nobody.context, { user: 'nobody', groups: ['finance'] });

  const human = await whatIfCli(file, ['--app', 'payroll', '--user', 'frank', '--time', WED]);
  t.ok(
    human.stdout
      .split('\n')
      .some((l) =>
        /^user: frank of the embedded identity provider \(groups finance, email Frank@Example\.com\)$/.test(l),
      ),
    human.stdout,
  );
  const note = await whatIfCli(file, ['--app', 'payroll', '--user', 'nobody', '--time', WED]);
  t.ok(
    note.stdout.split('\n').some((l) => l.startsWith('note: nobody is not a user of the embedded identity provider')),
    note.stdout,
  );

  const ambiguous = await whatIfCli(file, ['--app', 'payroll', '--user', 'same@example.com']);
  t.equal(ambiguous.code, 1, 'an e-mail of two users is refused');
  t.match(ambiguous.stderr.trimEnd(), /\[ERR_USAGE\]$/);

  const external = tempDir(t, 'proxyctl-what-if-ext-');
  const extFile = path.join(external, 'relay.yaml');
  writeFileSync(
    extFile,
    `dataDir: ${JSON.stringify(path.join(home, 'data'))}
identity: { issuer: "https://idp.example.com" }
apps:
  - { name: payroll, externalUrl: "https://payroll.example.com/", internalUrl: "http://10.0.0.6/", assignedGroups: [finance] }
`,
  );
  const ext = await whatIfCli(extFile, ['--app', 'payroll', '--user', 'frank', '--time', WED, '--json']);
  const extReport = JSON.parse(ext.stdout) as Report & { userSource: string };
  t.equal(extReport.userSource, 'options', 'an external provider: --user is the subject, nothing is looked up');
  t.same(extReport.context.groups, []);

  const help = await runCli(['policy', 'what-if', '--help']);
  t.match(help.stdout, /user name or e-mail address/, '--help says what --user expects');
  t.match(help.stdout, /subject \(sub claim\)/);
});
