// Syslog export against Debian's rsyslogd: every event of a burst arrives over TCP
// and over TLS (client certificate), JSON and CEF read back as sent, a receiver the
// relay cannot trust gets nothing, and a receiver stopped for a while and restarted
// gets everything (counted by event id; duplicates allowed, losses not).
import t, { type Test } from 'tap';
import { Exporter } from '../src/export/exporter.js';
import type { SyslogSinkConfig } from '../src/config/export-config.js';
import type { SecurityEvent, SignInRecord } from '../src/store/types.js';
import { silentLogger } from '../src/log.js';
import {
  MemoryStore,
  makeTestPki,
  parseCef,
  rsyslogMissing,
  sdParam,
  startRsyslog,
  syslogSink,
} from './helpers/rsyslog.js';
import { waitFor } from './helpers/wait.js';
import { createServer, type AddressInfo, type Socket } from 'node:net';

if (rsyslogMissing) {
  t.test('syslog export against rsyslog', { skip: rsyslogMissing }, () => undefined);
} else {
  await run();
}

async function exporter(t: Test, mem: MemoryStore, cfg: SyslogSinkConfig): Promise<Exporter> {
  const x = new Exporter({
    store: mem.store,
    sinks: [cfg],
    log: silentLogger,
    pollMs: 50,
    retryBaseMs: 50,
    retryMaxMs: 400,
  });
  t.teardown(() => x.close());
  await x.start();
  return x;
}

/** A burst of mixed events, some with hostile values, published as the request path would. */
function burst(mem: MemoryStore, x: Exporter, n: number): SecurityEvent[] {
  const out: SecurityEvent[] = [];
  for (let i = 0; i < n; i++) {
    const e = mem.add(i % 10 === 9 ? 'riskDetection' : i % 10 === 8 ? 'audit' : 'signIn');
    if (e.kind === 'signIn' && i % 7 === 0)
      Object.assign(e.data as SignInRecord, {
        userAgent: `evil\n<13>1 - - - - - [x id="forged"] |CEF:0|x suser=root ]"\\ 😀`,
        subject: 'mallory=admin|x',
      });
    out.push(e);
    x.publish(e);
  }
  return out;
}

async function run(): Promise<void> {
  const pki = await makeTestPki();

  t.test('TCP: a burst arrives whole, JSON reads back as stored', async (t) => {
    const rs = await startRsyslog(t);
    const mem = new MemoryStore();
    const x = await exporter(t, mem, syslogSink({ port: rs.tcpPort }));
    const sent = burst(mem, x, 1000);
    await waitFor(() => new Set(rs.ids()).size >= 1000, { what: '1000 ids at rsyslog', timeoutMs: 30_000 });
    const records = rs.records();
    t.same(new Set(rs.ids()), new Set(sent.map((e) => e.id)), 'every event id arrived');
    t.equal(records.length, new Set(rs.ids()).size, 'no forged extra record');
    const byId = new Map(sent.map((e) => [e.id, e]));
    let checked = 0;
    for (const r of records) {
      const id = sdParam(r.sd, 'id')!;
      const e = byId.get(id)!;
      const body = JSON.parse(r.msg) as { id: string; data: unknown };
      if (body.id !== id || JSON.stringify(body.data) !== JSON.stringify(e.data)) t.fail(`${id} reads back`);
      else checked++;
      if (r.msgid !== e.kind || r.app !== 'proxyctl') t.fail(`${id}: header fields`);
    }
    t.equal(checked, records.length, 'every record parses back to the stored event');
    t.equal(records.find((r) => r.msgid === 'riskDetection')?.pri, String(10 * 8 + 3), 'authpriv.err for high risk');
    await waitFor(() => x.stats()[0]!.delivered === 1000, { what: 'delivery confirmed' });
    t.match(x.stats()[0], { delivered: 1000, dropped: 0, queueDepth: 0 });
  });

  t.test('TLS with a client certificate: a burst arrives whole, CEF reads back', async (t) => {
    const rs = await startRsyslog(t, { caPem: pki.caPem, ...pki.server });
    const mem = new MemoryStore();
    const x = await exporter(
      t,
      mem,
      syslogSink({
        port: rs.tlsPort,
        protocol: 'tls',
        format: 'cef',
        caPem: pki.caPem,
        certPem: pki.client.certPem,
        keyPem: pki.client.keyPem,
      }),
    );
    const sent = burst(mem, x, 500);
    await waitFor(() => new Set(rs.ids()).size >= 500, { what: '500 ids over TLS', timeoutMs: 30_000 });
    t.same(new Set(rs.ids()), new Set(sent.map((e) => e.id)), 'every event id arrived');
    const records = rs.records();
    t.equal(records.length, 500, 'no forged extra record');
    let ok = 0;
    for (const r of records) {
      const cef = parseCef(r.msg);
      const id = sdParam(r.sd, 'id');
      if (
        cef.header[0] === 'CEF:0' &&
        cef.ext['externalId'] === id &&
        cef.keys.filter((k) => k === 'suser').length <= 1
      )
        ok++;
    }
    t.equal(ok, 500, 'every record is CEF with its id, no forged field');
    const hostile = records.map((r) => parseCef(r.msg)).find((c) => c.ext['suser'] === 'mallory=admin|x');
    t.ok(hostile, 'a hostile user name reads back as one value');
    t.match(
      hostile?.ext['requestClientApplication'],
      /^evil\n<13>1/,
      'the user agent keeps its newline, escaped in transit',
    );
  });

  t.test('TLS to a receiver whose certificate the relay does not trust: nothing is sent', async (t) => {
    const rs = await startRsyslog(t, { caPem: pki.caPem, ...pki.server });
    const other = await makeTestPki();
    const mem = new MemoryStore();
    const x = await exporter(t, mem, syslogSink({ port: rs.tlsPort, protocol: 'tls', caPem: other.caPem }));
    burst(mem, x, 5);
    await waitFor(() => x.stats()[0]!.failures >= 2, { what: 'failed attempts', timeoutMs: 10_000 });
    t.equal(rs.records().length, 0, 'no record reached the untrusted receiver');
    t.equal(x.stats()[0]!.delivered, 0);
  });

  t.test('a receiver stopped for a while and restarted gets every event', async (t) => {
    const rs = await startRsyslog(t);
    const mem = new MemoryStore();
    const x = await exporter(t, mem, syslogSink({ port: rs.tcpPort, batchSize: 20 }));
    const first = burst(mem, x, 300);
    await waitFor(() => rs.ids().length >= 100, { what: 'part of the burst', timeoutMs: 20_000 });
    await rs.stop();
    const second = burst(mem, x, 300);
    await waitFor(() => x.stats()[0]!.failures >= 2, { what: 'delivery failing while the receiver is down' });
    const down = x.stats()[0]!;
    t.ok(down.lagSeconds > 0 || down.queueDepth > 0, 'events wait while the receiver is down');
    // The SIEM comes back at its address.
    await rs.start();
    await waitFor(() => new Set(rs.ids()).size >= 600, { what: 'all 600 after the restart', timeoutMs: 30_000 });
    t.same(new Set(rs.ids()), new Set([...first, ...second].map((e) => e.id)), 'nothing lost');
    t.ok(rs.ids().length >= 600, `duplicates allowed (${rs.ids().length - 600} resent)`);
  });

  t.test('a receiver that stops reading: the queue fills, drops are counted, publish stays cheap', async (t) => {
    // A SIEM that accepts connections and never reads: TCP buffers fill, writes stall.
    const sockets: Socket[] = [];
    const stuck = createServer((s) => {
      s.pause();
      sockets.push(s);
    });
    await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', r));
    t.teardown(() => {
      for (const s of sockets) s.destroy();
      stuck.close();
    });
    const mem = new MemoryStore();
    const port = (stuck.address() as AddressInfo).port;
    const x = await exporter(t, mem, syslogSink({ port, queueSize: 500, batchSize: 100, confirmMs: 60_000 }));
    const N = 20_000;
    const events = Array.from({ length: N }, () => mem.add());
    // In chunks with turns of the event loop between, so the worker fills the socket meanwhile.
    let spent = 0n;
    for (let i = 0; i < N; i += 1000) {
      const begin = process.hrtime.bigint();
      for (const e of events.slice(i, i + 1000)) x.publish(e);
      spent += process.hrtime.bigint() - begin;
      await new Promise((r) => setImmediate(r));
    }
    const perCall = Number(spent) / N;
    const s = x.stats()[0]!;
    t.ok(s.dropped >= N - 500 - 16 * 100, `drops counted (${s.dropped})`);
    t.ok(s.queueDepth <= 500, `queue bounded at queueSize (${s.queueDepth})`);
    t.ok(perCall < 20_000, `publish: ${perCall.toFixed(0)} ns a call while the sink is stuck`);
    t.equal(s.delivered, 0, 'nothing counted delivered without confirmation');
    t.comment(`publish ${perCall.toFixed(0)} ns/call, dropped ${s.dropped}`);
  });
}
