// What a SIEM reads: RFC 5424 records, octet-counted frames, CEF. Hostile values a
// stranger controls (user agent, user name, failure reason, policy names) must come
// back unchanged from JSON, never start a second record, and never forge a CEF field.
import t from 'tap';
import {
  SD_ID,
  cefHeader,
  cefLine,
  cefValue,
  eventJson,
  octetFrame,
  sdValue,
  severityOf,
  syslogLine,
} from '../src/export/format.js';
import { FACILITIES } from '../src/config/export-config.js';
import type { SecurityEvent, SignInRecord } from '../src/store/types.js';
import {
  auditEvent,
  parseCef,
  parseOctetCounted,
  parseRfc5424,
  riskEvent,
  sdParam,
  signInEvent,
} from './helpers/rsyslog.js';

const FORGED = '<13>1 2026-01-01T00:00:00Z evil proxyctl 1 signIn [proxyctl@32473 id="signin-999"] {"forged":true}';
const HOSTILE: [string, string][] = [
  ['newline then a forged record', `alice\n${FORGED}`],
  ['CR LF then a forged record', `alice\r\n${FORGED}`],
  ['octet count look-alike', `12 <13>1 forged\n99 `],
  ['CEF pipes and equals', 'x|y|z suser=admin outcome=success cs1=forged'],
  ['backslashes', 'a\\|b\\=c\\\\d\\'],
  ['SD closers and quotes', 'a"] [evil@1 id="x"] "'],
  ['unicode', 'Zoë 😀 Ünïcødé 北京 \u202e'],
  ['control characters', 'a\u0000b\u0007c\u001bd\u007fe'],
  ['lone surrogate', 'x\ud800y'],
  ['very long', `${'A'.repeat(100_000)}=|\\\n`],
  ['trailing backslash', 'ends with \\'],
];

const fields = { facility: FACILITIES['authpriv']!, appName: 'proxyctl', hostname: 'relay-1', procId: '42' };

t.test('RFC 5424: one record per event, header fields as specified', async (t) => {
  const e = signInEvent(42);
  const line = syslogLine(e, { ...fields, format: 'json' });
  const r = parseRfc5424(line);
  t.equal(r.pri, 10 * 8 + 6, 'authpriv.info for a clean success');
  t.equal(r.version, 1);
  t.equal(r.time, new Date(e.at).toISOString(), 'RFC 3339 time in UTC with milliseconds');
  t.equal(r.host, 'relay-1');
  t.equal(r.app, 'proxyctl');
  t.equal(r.procid, '42');
  t.equal(r.msgid, 'signIn');
  t.equal(r.sd, `[${SD_ID} id="signin-42"]`);
  t.same(JSON.parse(r.msg), JSON.parse(eventJson(e)));
  t.same((JSON.parse(r.msg) as { data: unknown }).data, e.data, 'MSG carries the record as stored');
  t.equal(parseRfc5424(syslogLine(e, { ...fields, hostname: 'a b\nc', format: 'json' })).host, 'abc');
  t.equal(parseRfc5424(syslogLine(e, { ...fields, hostname: '', format: 'json' })).host, '-');
});

t.test('severity: failures and risk at warning or above, successes info', async (t) => {
  const cases: [SecurityEvent, number][] = [
    [signInEvent(1), 6],
    [signInEvent(2, { result: 'stepUp' }), 5],
    [signInEvent(3, { result: 'failure', reason: 'ERR_POLICY_DENIED' }), 4],
    [signInEvent(4, { risk: 'medium' }), 4],
    [signInEvent(5, { risk: 'high' }), 3],
    [signInEvent(6, { result: 'failure', risk: 'high' }), 3],
    [riskEvent(1, { level: 'low' }), 5],
    [riskEvent(2, { level: 'medium' }), 4],
    [riskEvent(3, { level: 'high' }), 3],
    [auditEvent(1), 5],
  ];
  for (const [e, severity] of cases) {
    t.equal(severityOf(e), severity, `${e.id}`);
    t.equal(parseRfc5424(syslogLine(e, { ...fields, format: 'cef' })).pri, 80 + severity, `${e.id} PRI`);
  }
  t.equal(parseRfc5424(syslogLine(signInEvent(1), { ...fields, facility: 16, format: 'json' })).pri, 16 * 8 + 6);
});

t.test('SD-PARAM escaping of " \\ and ]', async (t) => {
  t.equal(sdValue('a"b\\c]d'), 'a\\"b\\\\c\\]d');
  for (const [what, v] of HOSTILE.filter(([w]) => w !== 'very long')) {
    const e: SecurityEvent = { ...signInEvent(1), id: v };
    const r = parseRfc5424(syslogLine(e, { ...fields, format: 'json' }).replace(/[\r\n]/g, ' '));
    t.equal(sdParam(r.sd, 'id'), v.replace(/[\r\n]/g, ' '), `${what}: the id reads back`);
  }
});

t.test('hostile values: JSON round-trips, one record, no line break', async (t) => {
  for (const [what, v] of HOSTILE) {
    const e = signInEvent(7, {
      subject: v,
      userAgent: v,
      reason: v,
      app: v,
      policies: [{ name: v, result: 'failure' }],
      detections: [{ type: 'unfamiliarProperties', level: 'medium', detail: v }],
    });
    for (const format of ['json', 'cef'] as const) {
      const line = syslogLine(e, { ...fields, format });
      t.notMatch(line, /[\r\n]/, `${what} (${format}): no line break in the record`);
      const frames = parseOctetCounted(Buffer.from(octetFrame(line) + octetFrame(line)));
      t.equal(frames.length, 2, `${what} (${format}): two frames are two records`);
      t.equal(frames[0], line, `${what} (${format}): the frame length counts bytes`);
      const r = parseRfc5424(line);
      t.equal(r.msgid, 'signIn');
      t.equal(sdParam(r.sd, 'id'), 'signin-7', `${what} (${format}): the id is not forged`);
      if (format === 'json') {
        const back = JSON.parse(r.msg) as { data: SignInRecord };
        // JSON keeps everything but a lone surrogate, which becomes U+FFFD on the wire.
        const expected = Buffer.from(v).toString('utf8');
        t.equal(Buffer.from(back.data.userAgent!).toString('utf8'), expected, `${what}: user agent round-trips`);
        t.equal(back.data.subject, v, `${what}: user name round-trips`);
      }
    }
  }
});

t.test('CEF: header and extension escaping; a hostile value never forges a field', async (t) => {
  t.equal(cefHeader('a|b\\c\r\nd'), 'a\\|b\\\\c d');
  t.equal(cefValue('a=b\\c\nd\re'), 'a\\=b\\\\c\\nd\\re');
  t.equal(cefValue('x\u0000\u0007y'), 'xy', 'control characters dropped');
  t.equal(cefValue('😀'.repeat(10), 5), '😀😀', 'clipped without splitting a surrogate pair');
  for (const [what, v] of HOSTILE) {
    const e = signInEvent(9, { subject: v, userAgent: v, reason: v, app: 'wiki' });
    const line = cefLine(e);
    t.notMatch(line, /[\r\n]/, `${what}: one line`);
    const c = parseCef(line);
    t.equal(c.header.length, 7, `${what}: seven header fields`);
    t.same(c.header.slice(0, 3), ['CEF:0', 'proxyctl', 'proxyctl']);
    t.equal(c.header[4], 'signIn:success');
    t.equal(c.keys.filter((k) => k === 'suser').length, 1, `${what}: one suser`);
    t.equal(c.keys.filter((k) => k === 'outcome').length, 1, `${what}: one outcome`);
    t.equal(c.ext['outcome'], 'success', `${what}: outcome not forged`);
    t.equal(c.ext['externalId'], 'signin-9', `${what}: externalId not forged`);
    t.notOk(c.keys.includes('cs1') && c.ext['cs1'] === 'forged', `${what}: cs1 not forged`);
    // Control characters are dropped; a lone surrogate reads back as U+FFFD, as UTF-8 carries it.
    // eslint-disable-next-line no-control-regex
    const expected = Buffer.from(v.replace(/[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]/g, '')).toString('utf8');
    if (v.length < 1000) {
      t.equal(c.ext['suser'], expected, `${what}: suser reads back`);
      t.equal(c.ext['requestClientApplication'], expected, `${what}: user agent reads back`);
      t.equal(c.ext['reason'], expected, `${what}: reason reads back`);
    } else {
      t.equal(c.ext['suser'], expected.slice(0, 1023), `${what}: clipped to 1023`);
    }
  }
  const hostileHeader = cefLine(auditEvent(1, { action: 'x|CEF:0|forged|\\|10\n' }));
  const c = parseCef(hostileHeader);
  t.equal(c.header[4], 'audit:x|CEF:0|forged|\\|10 ', 'signature id with pipes reads back as one field');
  t.equal(c.header[6], '4', 'severity not forged');
});

t.test('CEF field mapping', async (t) => {
  const s = parseCef(
    cefLine(
      signInEvent(5, {
        result: 'failure',
        reason: 'ERR_POLICY_DENIED',
        risk: 'high',
        detections: [{ type: 'anonymousIp', level: 'high' }],
      }),
    ),
  );
  t.equal(s.header[5], 'Sign-in failed');
  t.equal(s.header[6], '9');
  t.match(s.ext, {
    rt: String(signInEvent(5).at),
    externalId: 'signin-5',
    src: '203.0.113.7',
    suser: 'alice@example.com',
    outcome: 'failure',
    reason: 'ERR_POLICY_DENIED',
    destinationServiceName: 'wiki',
    cs1Label: 'policies',
    cs2Label: 'signInRisk',
    cs2: 'high',
    cs3Label: 'detections',
    cs4Label: 'requestId',
    cs4: 'req-5',
    cs5: 'Berlin, DE',
    cs6: 'pwd,otp',
    cn1Label: 'asn',
    cn1: '64500',
    slat: '52.52',
  });
  t.same(JSON.parse(s.ext['cs3']!), [{ type: 'anonymousIp', level: 'high' }]);
  t.notOk('src' in parseCef(cefLine(signInEvent(6, { ip: 'not-an-ip' }))).ext, 'src only for an address');
  const r = parseCef(cefLine(riskEvent(3)));
  t.match(r.ext, { externalId: 'risk-3', act: 'atypicalTravel', cs2: 'high', cn2: '3', suser: 'alice@example.com' });
  t.equal(r.header[6], '9');
  const a = parseCef(cefLine(auditEvent(7)));
  t.match(a.ext, { externalId: 'audit-7', suser: 'admin@example.com', act: 'connector.revoke', cs4: 'c-1' });
  t.same(JSON.parse(a.ext['cs1']!), { reason: 'lost laptop' });
});
