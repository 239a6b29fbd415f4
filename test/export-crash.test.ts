// A relay killed with SIGKILL during an export burst and started again loses nothing:
// a child process records sign-ins in a real SQLite store and exports them to Debian's
// rsyslogd (as the relay does); it is killed mid-burst, a new one takes over the sink
// once the dead one's lease expired, and every id in the store arrives at rsyslog.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Exporter } from '../src/export/exporter.js';
import { openStore } from '../src/store/index.js';
import { silentLogger } from '../src/log.js';
import { rsyslogMissing, signInRecord, startRsyslog, syslogSink } from './helpers/rsyslog.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const CHILD = process.env['PROXYCTL_EXPORT_CHILD'];

/** The child: records `count` sign-ins (publishing each, as the request path does) while exporting them. */
async function child(): Promise<void> {
  const { dataDir, port, count } = JSON.parse(CHILD!) as { dataDir: string; port: number; count: number };
  const store = await openStore({ kind: 'sqlite', dataDir });
  const x = new Exporter({
    store,
    sinks: [syslogSink({ port, name: 'siem', confirmMs: 200, batchSize: 25, from: 'head' })],
    log: silentLogger,
    owner: `child-${process.pid}`,
    leaseMs: 1500,
    pollMs: 50,
    retryBaseMs: 50,
    retryMaxMs: 200,
  });
  await x.start();
  for (let i = 0; i < count; i++) {
    const { id: _id, ...rec } = signInRecord(0, { at: Date.now() });
    const id = await store.signIns.record(rec);
    x.publish({ id: `signin-${id}`, kind: 'signIn', at: rec.at, data: { ...rec, id } });
    process.stdout.write(`recorded ${id}\n`);
    if (i % 10 === 9) await new Promise((r) => setTimeout(r, 5));
  }
  process.stdout.write('done\n');
  // Keep exporting until the parent is satisfied and stops us.
  await new Promise(() => undefined);
}

function startChild(cfg: { dataDir: string; port: number; count: number }): { proc: ChildProcess; out: () => string } {
  let out = '';
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, NODE_OPTIONS: undefined, PROXYCTL_EXPORT_CHILD: JSON.stringify(cfg) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  proc.stdout.on('data', (b: Buffer) => (out += b.toString()));
  return { proc, out: () => out };
}

if (CHILD) {
  await child();
} else if (rsyslogMissing) {
  t.test('export survives kill -9', { skip: rsyslogMissing }, () => undefined);
} else {
  t.test('kill -9 during a burst, restart: every stored event arrives', async (t) => {
    const rs = await startRsyslog(t);
    const dataDir = tempDir(t, 'proxyctl-export-crash-');
    // The store exists before the first child, so the sink's starting head is 0.
    await (await openStore({ kind: 'sqlite', dataDir })).close();
    const first = startChild({ dataDir, port: rs.tcpPort, count: 1500 });
    t.teardown(() => void first.proc.kill('SIGKILL'));
    await waitFor(() => rs.ids().length >= 200, { what: 'the export under way', timeoutMs: 30_000 });
    t.notMatch(first.out(), /done/, 'still recording when killed');
    first.proc.kill('SIGKILL');
    await new Promise((r) => first.proc.once('exit', r));
    const recordedBefore = (first.out().match(/recorded/g) ?? []).length;
    t.ok(recordedBefore < 1500, `killed after ${recordedBefore} sign-ins, ${new Set(rs.ids()).size} exported`);

    const second = startChild({ dataDir, port: rs.tcpPort, count: 200 });
    t.teardown(() => void second.proc.kill('SIGKILL'));
    await waitFor(() => /done/.test(second.out()), { what: 'the second burst recorded', timeoutMs: 30_000 });
    const store = await openStore({ kind: 'sqlite', dataDir });
    const stored = (await store.signIns.list(10_000)).map((s) => `signin-${s.id}`);
    await store.close();
    t.ok(stored.length >= recordedBefore + 200, `${stored.length} sign-ins in the store`);
    await waitFor(() => stored.every((id) => rs.ids().includes(id)), {
      what: 'every stored sign-in at rsyslog',
      timeoutMs: 30_000,
      everyMs: 200,
    }).catch((err: unknown) => {
      const got = new Set(rs.ids());
      t.comment(`missing: ${stored.filter((id) => !got.has(id)).join(' ')}`);
      throw err;
    });
    const received = new Set(rs.ids());
    t.same(
      stored.filter((id) => !received.has(id)),
      [],
      'nothing lost',
    );
    t.ok(rs.ids().length >= stored.length, `${rs.ids().length - stored.length} duplicates (allowed)`);
    second.proc.kill('SIGKILL');
  });
}
