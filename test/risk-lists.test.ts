// Address lists: plain addresses and ranges, the Tor exit list format, hostile
// lines counted and named by file:line, a 100k-line file, and re-reading a file
// that changes, is replaced, vanishes and comes back.
import t, { type Test } from 'tap';
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { Logger } from '../src/log.js';
import { ManualClock } from './helpers/clock.js';
import { waitFor } from './helpers/wait.js';
import { IpListFile, IpLists, MAX_PROBLEMS, parseIpList } from '../src/risk/ip-lists.js';
import { isProxyctlError } from '../src/errors.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-lists-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A logger whose lines land in `lines`, parsed. */
function captureLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

t.test('entries, comments and membership', async (t) => {
  const text = [
    '\ufeff# a list with a byte order mark',
    '192.0.2.7',
    '198.51.100.0/24   # trailing comment',
    '203.0.113.128/25 ; SBL123 (Spamhaus DROP style)',
    '',
    '   ',
    '2001:db8:aa::/48',
    '2001:DB8:BB::1',
    '::ffff:192.0.2.99',
    '10.1.2.3/8\r',
    '',
  ].join('\n');
  const { matcher, bad, problems } = parseIpList(text);
  t.equal(bad, 0, 'no bad lines');
  t.same(problems, []);
  t.equal(matcher.entries, 7);
  const table: [string, boolean][] = [
    ['192.0.2.7', true],
    ['192.0.2.8', false],
    ['::ffff:192.0.2.7', true],
    ['198.51.100.0', true],
    ['198.51.100.255', true],
    ['198.51.101.0', false],
    ['198.51.99.255', false],
    ['203.0.113.127', false],
    ['203.0.113.128', true],
    ['203.0.113.255', true],
    ['2001:db8:aa::', true],
    ['2001:db8:aa:ffff:ffff:ffff:ffff:ffff', true],
    ['2001:db8:ab::', false],
    ['2001:0db8:00bb:0000:0000:0000:0000:0001', true],
    ['2001:db8:bb::2', false],
    ['192.0.2.99', true],
    ['10.200.1.1', true], // a range written with host bits set covers its network
    ['11.0.0.0', false],
    ['not an address', false],
    ['', false],
  ];
  for (const [ip, want] of table)
    t.equal(matcher.has(ip), want, `${JSON.stringify(ip)} ${want ? 'listed' : 'not listed'}`);
});

t.test('the Tor exit list format', async (t) => {
  const text = `ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E
Published 2026-06-01 07:32:11
LastStatus 2026-06-01 09:00:00
ExitAddress 192.0.2.44 2026-06-01 09:08:01
ExitNode 0091174DE56EA6B1C2DBC8E0A9A0CAB1C5F5E2A3
Published 2026-06-01 10:00:49
LastStatus 2026-06-01 11:00:00
ExitAddress 192.0.2.45 2026-06-01 11:34:55
ExitAddress 2001:db8:7::9 2026-06-01 11:34:55
ExitAddress nonsense 2026-06-01 11:34:55
`;
  const { matcher, bad, problems } = parseIpList(text);
  t.equal(matcher.entries, 3);
  t.ok(matcher.has('192.0.2.44') && matcher.has('192.0.2.45') && matcher.has('2001:db8:7::9'));
  t.notOk(matcher.has('192.0.2.46'));
  t.equal(bad, 1, 'an exit address that is not an address is a bad line');
  t.same(
    problems.map((p) => p.line),
    [10],
  );
});

t.test('hostile lines are counted, named and skipped; the rest is kept', async (t) => {
  const hostile: string[] = [
    '999.1.1.1',
    '192.0.2.1/33',
    '10.0.0.0/08',
    'hello',
    '192.0.2.1 192.0.2.2',
    '192.0.2.1\u0000',
    'fe80::1%eth0',
    '0.0.0.0/0',
    '::/0',
    '10.0.0.0/7',
    '2001::/15',
    '1'.repeat(10_000),
    '\u202e192.0.2.1',
    'ExitAddress',
    '192.0.2.1/',
    '/24',
  ];
  const text = ['192.0.2.200', ...hostile, '192.0.2.201'].join('\n');
  const { matcher, bad, problems } = parseIpList(text);
  t.equal(bad, hostile.length, 'each hostile line counted');
  t.same(
    problems.map((p) => p.line),
    hostile.map((_, i) => i + 2),
    'named by line number',
  );
  t.ok(
    problems.every((p) => p.text.length <= 80),
    'the quoted text is cut',
  );
  t.match(problems.find((p) => p.line === 9)?.reason, /wider than \/8/);
  t.ok(matcher.has('192.0.2.200') && matcher.has('192.0.2.201'), 'good lines around them kept');
  t.notOk(matcher.has('8.8.8.8'), 'a /0 did not list the whole internet');

  const many = Array.from({ length: 500 }, () => 'junk').join('\n');
  const r = parseIpList(many);
  t.equal(r.bad, 500);
  t.equal(r.problems.length, MAX_PROBLEMS, 'only the first few are kept for the log');
});

t.test('bad lines are logged with file:line', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'tor.txt');
  writeFileSync(file, '192.0.2.1\nbogus\n192.0.2.2\n\n300.0.0.1\n');
  const { logger, lines } = captureLogger();
  const list = new IpListFile(file, 'anonymous', { logger, watch: false });
  await list.start();
  t.teardown(() => list.close());
  await waitFor(() => lines.some((l) => l['msg'] === 'IP list loaded'), { what: 'load line' });
  t.same(
    lines.filter((l) => l['msg'] === 'IP list line skipped').map((l) => l['where']),
    [`${file}:2`, `${file}:5`],
  );
  t.match(
    lines.find((l) => l['msg'] === 'IP list loaded'),
    { entries: 2, bad_lines: 2, list: 'anonymous' },
  );
  t.match(list.stats, { entries: 2, bad: 2, loads: 1, error: null });
});

t.test('a 100k-line file loads and answers fast', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'big.txt');
  const lines: string[] = ['# generated'];
  for (let i = 0; i < 100_000; i++) {
    const a = 11 + (i % 200);
    const b = (i >> 8) & 255;
    const c = i & 255;
    if (i % 10 === 0) lines.push(`2001:db8:${(i & 0xffff).toString(16)}::/48`);
    else if (i % 3 === 0) lines.push(`${a}.${b}.${c}.0/24`);
    else lines.push(`${a}.${b}.${c}.${i % 250}`);
  }
  writeFileSync(file, lines.join('\n'));
  const list = new IpListFile(file, 'malicious', { watch: false });
  const began = performance.now();
  await list.start();
  const loadMs = performance.now() - began;
  t.teardown(() => list.close());
  t.equal(list.stats.entries, 100_000);
  t.ok(loadMs < 3000, `100k lines loaded in ${Math.round(loadMs)} ms`);
  const q0 = performance.now();
  let hits = 0;
  for (let i = 0; i < 20_000; i++) if (list.has(`${11 + (i % 200)}.${(i >> 8) & 255}.${i & 255}.7`)) hits++;
  const perLookupUs = ((performance.now() - q0) * 1000) / 20_000;
  t.ok(hits > 0, `${hits} hits`);
  t.ok(perLookupUs < 100, `a lookup takes ${perLookupUs.toFixed(1)} µs`);
  t.ok(list.has('2001:db8:a::1'), 'IPv6 ranges in the big file');
});

t.test('re-read on change (fs.watch), across a rename, keeping the last list while the file is gone', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'exits.txt');
  writeFileSync(file, '192.0.2.1\n');
  const { logger, lines } = captureLogger();
  const list = new IpListFile(file, 'anonymous', { settleMs: 20, pollMs: 3_600_000, logger });
  await list.start();
  t.teardown(() => list.close());
  t.ok(list.has('192.0.2.1'));

  writeFileSync(file, '192.0.2.2\n');
  await waitFor(() => list.has('192.0.2.2'), { what: 'the rewritten file' });
  t.notOk(list.has('192.0.2.1'), 'the old entry is gone');

  // As a cron job replaces it: write beside, rename over.
  writeFileSync(path.join(dir, 'exits.txt.tmp'), 'ExitAddress 192.0.2.3 2026-06-01 00:00:00\n');
  renameSync(path.join(dir, 'exits.txt.tmp'), file);
  await waitFor(() => list.has('192.0.2.3'), { what: 'the renamed file' });

  unlinkSync(file);
  await waitFor(() => list.stats.error === 'ENOENT', { what: 'the vanished file noticed' });
  t.ok(list.has('192.0.2.3'), 'the last good list is kept');
  await waitFor(() => lines.some((l) => l['msg'] === 'IP list unreadable; keeping the last one read'));

  writeFileSync(file, '192.0.2.4\n');
  await waitFor(() => list.has('192.0.2.4'), { what: 'the file back' });
  t.equal(list.stats.error, null);
  t.ok(list.stats.loads >= 4, `read ${list.stats.loads} times`);
});

t.test('the stat poll finds a change fs.watch missed', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'vpn.txt');
  writeFileSync(file, '198.51.100.0/24\n');
  const clock = new ManualClock();
  const list = new IpListFile(file, 'anonymous', { clock, watch: false, pollMs: 30_000 });
  await list.start();
  t.teardown(() => list.close());
  t.equal(clock.timers, 1, 'one poll timer');

  await clock.advance(30_000);
  t.equal(list.stats.loads, 1, 'unchanged: not re-read');

  writeFileSync(file, '198.51.100.0/24\n203.0.113.0/24\n');
  t.notOk(list.has('203.0.113.9'), 'nothing happens before the poll');
  await clock.advance(29_000);
  t.notOk(list.has('203.0.113.9'));
  await clock.advance(1_000);
  await waitFor(() => list.has('203.0.113.9'), { what: 'the poll to re-read' });
  t.equal(list.stats.loads, 2);

  // Unreadable (a directory now stands there): the last list stays.
  rmSync(file);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(file);
  await clock.advance(30_000);
  await waitFor(() => list.stats.error !== null, { what: 'the unreadable file noticed' });
  t.ok(list.has('203.0.113.9'), 'kept');

  list.close();
  t.equal(clock.timers, 0, 'close stops the poll');
});

t.test('a list missing at start is refused', async (t) => {
  const dir = tempDir(t);
  const good = path.join(dir, 'good.txt');
  writeFileSync(good, '192.0.2.1\n');
  const lists = new IpLists({ anonymous: [good], malicious: [path.join(dir, 'missing.txt')] }, { watch: false });
  await t.rejects(lists.start(), { code: 'ERR_CONFIG_READ' });
  t.ok(await lists.start().catch((err: unknown) => isProxyctlError(err, 'ERR_CONFIG_READ')));

  const ok = new IpLists({ anonymous: [good], malicious: [] }, { watch: false });
  await ok.start();
  t.teardown(() => ok.close());
  t.equal(ok.listing('anonymous', '192.0.2.1'), good, 'names the file');
  t.ok(ok.isAnonymous('::ffff:192.0.2.1'));
  t.notOk(ok.isMalicious('192.0.2.1'));
  t.notOk(ok.isAnonymous(null));
  t.same(
    ok.stats.map((s) => [s.kind, s.entries]),
    [['anonymous', 1]],
  );
});
