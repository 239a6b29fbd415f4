// `proxyctl signins list|show` and `proxyctl audit list` against a data directory:
// filters, formats, hostile values kept out of terminals and spreadsheets, clear
// usage errors; the configuration-reload audit entry with secrets redacted; and
// pruning past `logs.retention`.
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { listAudit, listSignIns, parseWhen, showSignIn } from '../src/commands/logs.js';
import { confirmRisk, dismissRisk, listRisk } from '../src/commands/risk.js';
import { csvLine, safeCell } from '../src/commands/table.js';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { configChanges } from '../src/relay/config-audit.js';
import { LogRetention } from '../src/relay/retention.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { silentLogger } from '../src/log.js';
import { signInRecord } from './helpers/sign-ins.js';
import { tempDir } from './helpers/proc.js';
import { ManualClock } from './helpers/clock.js';
import { waitFor } from './helpers/wait.js';

const NOW = Date.parse('2026-12-07T12:00:00Z');
const HOUR = 3_600_000;

async function fixture(t: Test) {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, `dataDir: ./data\n`);
  const store = openSqliteStore(dataDir);
  const ids: number[] = [];
  ids.push(
    await store.signIns.record(
      signInRecord({
        at: NOW - 30 * HOUR,
        subject: 'alice',
        app: 'wiki',
        result: 'success',
        ip: '81.2.69.142',
        country: 'GB',
        city: 'London',
        latitude: 51.5,
        longitude: -0.12,
        asn: 20712,
        network: 'Andrews & Arnold',
        browser: 'Firefox 128',
        os: 'Linux',
        clientType: 'browser',
        methods: ['pwd', 'otp'],
        requestId: 'req-a',
        traceId: '0af7651916cd43dd8448eb211c80319c',
        policies: [
          { name: 'require-mfa', state: 'on', applies: true, outcome: 'granted', why: 'assigned', missing: [] },
        ],
      }),
    ),
  );
  ids.push(
    await store.signIns.record(
      signInRecord({
        at: NOW - 2 * HOUR,
        subject: 'mallory\u001b]0;pwned\u0007',
        app: 'wiki',
        result: 'failure',
        reason: 'policy block-tor',
        risk: 'high',
        detections: [
          { type: 'anonymousIp', level: 'medium' },
          { type: 'maliciousIp', level: 'high' },
        ],
        ip: '198.51.100.9',
        userAgent: '=HYPERLINK("http://evil")\r\nforged: line',
        clientType: 'script',
      }),
    ),
  );
  ids.push(
    await store.signIns.record(
      signInRecord({
        at: NOW - HOUR,
        subject: 'alice',
        app: 'mail',
        result: 'stepUp',
        risk: 'low',
        kind: 'interactive',
      }),
    ),
  );
  await store.audit.record({
    at: NOW - 3 * HOUR,
    actor: 'cli:root',
    action: 'connector.revoke',
    connectorId: 'c-1',
    details: { name: 'edge' },
  });
  await store.audit.record({
    at: NOW - HOUR,
    actor: 'config-file',
    action: 'config.reload',
    connectorId: null,
    details: { changes: [] },
  });
  await store.close();
  return { opts: { config }, ids };
}

function capture(): { lines: string[]; out: (l: string) => void } {
  const lines: string[] = [];
  return { lines, out: (l) => lines.push(l) };
}

t.test('signins list: newest first, filters, limit', async (t) => {
  const { opts, ids } = await fixture(t);
  const json = async (extra: Record<string, unknown>) => {
    const c = capture();
    await listSignIns({ ...opts, ...extra, json: true }, c.out, NOW);
    return (JSON.parse(c.lines.join('\n')) as { id: number }[]).map((r) => r.id);
  };
  t.same(await json({}), [ids[2], ids[1], ids[0]], 'newest first');
  t.same(await json({ user: 'alice' }), [ids[2], ids[0]]);
  t.same(await json({ app: 'wiki', result: 'failure' }), [ids[1]]);
  t.same(await json({ risk: 'high' }), [ids[1]]);
  t.same(await json({ since: '3h' }), [ids[2], ids[1]], 'a duration means that long ago');
  t.same(await json({ until: '2026-12-06T12:00:00Z' }), [ids[0]], 'an ISO time');
  t.same(await json({ since: '2026-12-06', until: '90m' }), [ids[1], ids[0]]);
  t.same(await json({ limit: '1' }), [ids[2]]);
  const c = capture();
  await listSignIns({ ...opts, json: true, user: 'alice', limit: '1' }, c.out, NOW);
  t.match(JSON.parse(c.lines.join('\n')), [{ app: 'mail', result: 'stepUp', time: '2026-12-07T11:00:00.000Z' }]);
});

t.test('signins list: bad flags are usage errors naming what is expected', async (t) => {
  const { opts } = await fixture(t);
  for (const bad of [
    { result: 'ok' },
    { risk: 'severe' },
    { since: 'yesterday' },
    { until: '2026-13-45' },
    { since: '1700000000' },
    { limit: '0' },
    { limit: '10001' },
    { limit: '5; DROP TABLE signins' },
    { json: true, csv: true },
  ])
    await t.rejects(
      listSignIns({ ...opts, ...bad }, () => undefined, NOW),
      { code: 'ERR_USAGE' },
      JSON.stringify(bad),
    );
  t.equal(parseWhen('--since', '7d', NOW), NOW - 7 * 24 * HOUR);
});

t.test('signins list: a stranger-controlled value never writes a control character to the terminal', async (t) => {
  const { opts } = await fixture(t);
  const c = capture();
  await listSignIns(opts, c.out, NOW);
  t.equal(c.lines.length, 4, 'a header and one line per sign-in: no forged line');
  t.match(c.lines[0], /^ID\s+TIME\s+USER\s+APP\s+RESULT\s+RISK\s+IP\s+LOCATION\s+CLIENT\s+REASON$/);
  // eslint-disable-next-line no-control-regex -- looking for control characters
  t.notMatch(c.lines.join('\n'), /[\u0000-\u0008\u000b-\u001f\u007f]/, 'no control characters');
  t.match(c.lines.join('\n'), /mallory\\u001b\]0;pwned\\u0007/, 'written visibly instead');
  t.match(c.lines.at(-1), /London, GB\s+Firefox 128 on Linux/);
  t.equal(safeCell('a\u202eb\u2028c'), 'a\\u202eb\\u2028c', 'bidi overrides and line separators too');
  t.equal(safeCell('x'.repeat(500)).length, 200, 'cells are bounded');
});

t.test('signins list --csv: RFC 4180, no formula a spreadsheet would run', async (t) => {
  const { opts } = await fixture(t);
  const c = capture();
  await listSignIns({ ...opts, csv: true }, c.out, NOW);
  const text = c.lines.join('\n');
  t.match(
    c.lines[0],
    /^id,time,kind,user,app,result,reason,risk,detections,ip,country,city,latitude,longitude,asn,network,/,
  );
  t.match(text, /,"'=HYPERLINK\(""http:\/\/evil""\)\r\nforged: line",/, 'quoted, quotes doubled, formula defused');
  t.match(text, /anonymousIp:medium maliciousIp:high/);
  t.equal(csvLine(['+1', '-2', '@x', 'plain', null, 3]), "'+1,'-2,'@x,plain,,3");
});

t.test('signins show: every field, policies and detections; unknown and bad ids', async (t) => {
  const { opts, ids } = await fixture(t);
  const c = capture();
  await showSignIn(String(ids[0]), opts, c.out);
  const text = c.lines.join('\n');
  t.match(text, /location:\s+London, GB \(51\.5, -0\.12\)/);
  t.match(text, /network:\s+AS20712 Andrews & Arnold/);
  t.match(text, /methods:\s+pwd, otp/);
  t.match(text, /trace id:\s+0af7651916cd43dd8448eb211c80319c/);
  t.match(text, /require-mfa \[on\] granted: assigned/);
  const d = capture();
  await showSignIn(String(ids[1]), opts, d.out);
  t.match(d.lines.join('\n'), /detection:\s+maliciousIp \(high\)/);
  const j = capture();
  await showSignIn(String(ids[1]), { ...opts, json: true }, j.out);
  t.match(JSON.parse(j.lines.join('\n')), {
    id: ids[1],
    risk: 'high',
    detections: [{ type: 'anonymousIp' }, { type: 'maliciousIp' }],
  });
  await t.rejects(
    showSignIn('999999', opts, () => undefined),
    { code: 'ERR_NOT_FOUND' },
  );
  for (const bad of ['-1', '1.5', 'abc', '1e3', '99999999999999999999'])
    await t.rejects(
      showSignIn(bad, opts, () => undefined),
      { code: 'ERR_USAGE' },
      bad,
    );
});

t.test('audit list: filters, prefix, formats', async (t) => {
  const { opts } = await fixture(t);
  const json = async (extra: Record<string, unknown>) => {
    const c = capture();
    await listAudit({ ...opts, ...extra, json: true }, c.out, NOW);
    return (JSON.parse(c.lines.join('\n')) as { action: string }[]).map((r) => r.action);
  };
  t.same(await json({}), ['config.reload', 'connector.revoke']);
  t.same(await json({ action: 'connector.' }), ['connector.revoke']);
  t.same(await json({ actor: 'cli:root' }), ['connector.revoke']);
  t.same(await json({ since: '2h' }), ['config.reload']);
  const c = capture();
  await listAudit(opts, c.out, NOW);
  t.match(c.lines[2], /connector\.revoke\s+c-1\s+\{"name":"edge"\}/);
  const csv = capture();
  await listAudit({ ...opts, csv: true }, csv.out, NOW);
  t.equal(csv.lines[0], 'id,time,actor,action,connectorId,details');
});

t.test('a reload is audited setting by setting, secrets redacted', async (t) => {
  const base = `
identity: { issuer: "https://idp.example.com", clientSecret: "s3cret-one" }
store: { postgres: { url: "postgres://app:pa55word@db.example:5432/proxyctl" } }
secrets: { masterKeyFile: ./master.key }
apps:
  - { name: wiki, externalUrl: "https://wiki.example.com/", internalUrl: "http://10.0.0.5/" }
  - { name: mail, externalUrl: "https://mail.example.com/", internalUrl: "http://10.0.0.6/" }
`;
  const before = parseRelayConfig(base, '/etc/proxyctl/relay.yaml');
  const after = parseRelayConfig(
    base
      .replace('s3cret-one', 's3cret-two')
      .replace('pa55word@db.example', 'pa55word@db2.example')
      .replace('http://10.0.0.5/', 'http://10.0.0.7/')
      .replace(/ {2}- \{ name: mail.*\n/, '') + 'logs: { retention: 7d }\n',
    '/etc/proxyctl/relay.yaml',
  );
  const changes = configChanges(before, after);
  const text = JSON.stringify(changes);
  t.notMatch(text, /s3cret|pa55word/, 'no secret and no password reaches the audit log');
  t.match(changes, [
    { path: 'identity.clientSecret', before: '(redacted)', after: '(redacted)' },
    { path: 'apps[wiki].internalUrl', before: 'http://10.0.0.5/', after: 'http://10.0.0.7/' },
  ]);
  t.ok(
    changes.some((c) => c.path.startsWith('apps[mail]') && c.after === undefined),
    'a removed app is named',
  );
  t.ok(changes.some((c) => c.path === 'logs.retentionMs' && c.after === 7 * 24 * HOUR));
  t.ok(
    changes.some((c) => c.path === 'store.postgres.url' && c.after === 'postgres://db2.example:5432/proxyctl'),
    'a URL without its credentials',
  );
  t.same(
    configChanges(before, parseRelayConfig(base, '/etc/proxyctl/copy.yaml')),
    [],
    'the same settings from another file in the same directory: nothing',
  );
  const reordered = parseRelayConfig(
    base.replace(/( {2}- \{ name: wiki.*\n)( {2}- \{ name: mail.*\n)/, '$2$1'),
    '/etc/proxyctl/relay.yaml',
  );
  t.same(configChanges(before, reordered), [], 'apps compared by name: reordering is no change');
});

t.test('logs.retention: old sign-ins and detections pruned, audit kept for its own retention', async (t) => {
  const dir = tempDir(t);
  const store = openSqliteStore(dir);
  t.teardown(() => store.close());
  const clock = new ManualClock(NOW);
  const day = 24 * HOUR;
  await store.signIns.record(
    signInRecord({ at: NOW - 40 * day, detections: [{ type: 'maliciousIp', level: 'high' }], risk: 'high' }),
  );
  await store.signIns.record(signInRecord({ at: NOW - 10 * day }));
  await store.audit.record({ at: NOW - 400 * day, actor: 'a', action: 'x', connectorId: null, details: {} });
  await store.audit.record({ at: NOW - 40 * day, actor: 'a', action: 'y', connectorId: null, details: {} });
  const retention = new LogRetention({
    store,
    log: silentLogger,
    clock,
    retention: () => ({ retentionMs: 30 * day, auditRetentionMs: 365 * day }),
  });
  retention.start();
  t.teardown(() => retention.stop());
  t.equal((await store.signIns.list()).length, 2, 'nothing pruned before the first pass');
  await clock.advance(59_000);
  t.equal((await store.signIns.list()).length, 2, 'nor a second before it');
  await clock.advance(1_000);
  await waitFor(async () => (await store.signIns.list()).length === 1, { what: 'the first pass' });
  t.same(
    (await store.signIns.list()).map((s) => s.at),
    [NOW - 10 * day],
  );
  t.same(await store.risk.detections({}), [], 'the detection went with its age');
  t.same(
    (await store.audit.query({})).map((a) => a.action),
    ['y'],
    'audit: its own, longer retention',
  );
});

t.test('risk list, dismiss, confirm: computed as the relay does, audited', async (t) => {
  const { opts } = await fixture(t);
  const store = openSqliteStore(path.join(path.dirname(opts.config), 'data'));
  const day = 24 * HOUR;
  const add = (subject: string, at: number, level: 'low' | 'medium' | 'high', type: string, details = {}) =>
    store.risk.addDetection({
      at,
      subject,
      ip: '192.0.2.1',
      app: 'wiki',
      type,
      level,
      signInId: 1,
      requestId: null,
      details,
    });
  await add('alice', NOW - HOUR, 'medium', 'unfamiliarProperties');
  await add('bob', NOW - 8 * day, 'high', 'atypicalTravel'); // one decay period old: medium now
  await add('carol', NOW - HOUR, 'high', 'maliciousIp', { remediated: 'mfa' });
  await add('mallory\u001b[2J', NOW - HOUR, 'low', 'anonymousIp');
  await store.close();
  const list = async (extra: Record<string, unknown> = {}) => {
    const c = capture();
    await listRisk({ ...opts, ...extra, json: true }, c.out, NOW);
    return JSON.parse(c.lines.join('\n')) as { user: string; risk: string; state: string }[];
  };
  t.same(
    (await list()).map((u) => [u.user, u.risk, u.state]),
    [
      ['mallory\u001b]0;pwned\u0007', 'high', 'atRisk'],
      ['alice', 'medium', 'atRisk'],
      ['bob', 'medium', 'atRisk'],
      ['mallory\u001b[2J', 'low', 'atRisk'],
    ],
    'highest first (the fixture sign-in with a malicious address too); a week-old high is medium; remediated detections do not count',
  );
  t.match(
    (await list({ all: true })).find((u) => u.user === 'carol'),
    { risk: 'none', state: 'remediated' },
  );
  const table = capture();
  await listRisk(opts, table.out, NOW);
  // eslint-disable-next-line no-control-regex -- looking for the escape character
  t.notMatch(table.lines.join('\n'), /\u001b/, 'no escape sequence reaches the terminal');
  const said = capture();
  await confirmRisk('alice', opts, said.out, NOW);
  t.match(said.lines[0], /confirmed alice compromised/);
  t.match(
    (await list()).find((u) => u.user === 'alice'),
    { risk: 'high', state: 'confirmedCompromised' },
  );
  await dismissRisk('alice', opts, () => undefined, NOW + 1);
  await dismissRisk('bob', opts, () => undefined, NOW + 1);
  t.same(
    (await list()).map((u) => u.user),
    ['mallory\u001b]0;pwned\u0007', 'mallory\u001b[2J'],
    'dismissed users leave the list',
  );
  t.match(
    (await list({ all: true })).find((u) => u.user === 'bob'),
    { state: 'dismissed' },
  );
  const audit = capture();
  await listAudit({ ...opts, action: 'risk.', json: true }, audit.out, NOW);
  t.same(
    (JSON.parse(audit.lines.join('\n')) as { action: string; actor: string }[]).map((a) => a.action),
    ['risk.dismiss', 'risk.dismiss', 'risk.confirm'],
  );
  for (const bad of ['', 'x'.repeat(300), 'a\nb'])
    await t.rejects(
      confirmRisk(bad, opts, () => undefined),
      { code: 'ERR_USAGE' },
      JSON.stringify(bad),
    );
});
