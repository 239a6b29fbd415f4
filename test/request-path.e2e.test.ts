// Black-box request path: the built `proxyctl` binary as relay and as two
// connectors, a real backend, an HTTPS client. 256 MiB each way through both
// TLS hops (streamed, hashed on both ends), a connector SIGKILLed mid-stream, and
// a SIGHUP reload that publishes a new app to a connector that keeps running.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { LookupFunction } from 'node:net';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { drain, patternStream, startBackend, type EchoBody } from './helpers/backend.js';
import { startIdp } from './helpers/idp.js';
import { Proc, closedPort, runCli, tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

/**
 * How long a held-back transfer is watched for bytes that should not move. The one fixed
 * wait left in the tests, on purpose: "nothing moves" has no event, only an observation
 * window. It starts when the transfer is seen held back and overlaps the other requests
 * the test sends meanwhile, so it adds at most this much.
 */
const WINDOW_MS = 600;

/** Starts an observation window: `ended` resolves after WINDOW_MS; `ms()` is how long it has watched. */
function observationWindow(): { ended: Promise<void>; ms(): number } {
  const from = performance.now();
  return { ended: sleep(WINDOW_MS), ms: () => Math.round(performance.now() - from) };
}

/** The value once it has not changed for 300 ms: the buffers on the way are full. */
async function steady(read: () => number): Promise<number> {
  let last = read();
  let since = Date.now();
  return waitFor(
    () => {
      const v = read();
      if (v !== last) [last, since] = [v, Date.now()];
      return v > 0 && Date.now() - since >= 300 ? v : 0;
    },
    { timeoutMs: 10_000, everyMs: 25, what: 'the transfer to be held back' },
  );
}

const MiB = 1024 * 1024;
const BIG = 256 * MiB;

const lookup: LookupFunction = (_host, opts, cb) => {
  if ((opts as { all?: boolean }).all)
    (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  else cb(null, '127.0.0.1', 4);
};

/** A BIG pattern body for an upload, hashing and counting what the client has handed out. */
function countedUpload(): { body: Readable; sent(): number; sha256(): string } {
  const hash = createHash('sha256');
  let sent = 0;
  const body = patternStream(BIG, (chunk) => {
    hash.update(chunk);
    sent += chunk.length;
  });
  return { body, sent: () => sent, sha256: () => hash.digest('hex') };
}

/** Samples the resident memory of processes while a transfer runs; stop() gives each one's growth over its start. */
function watchRss(pids: number[]): { stop(): number[] } {
  const rss = (pid: number) =>
    Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
  const base = pids.map(rss);
  const max = [...base];
  const timer = setInterval(() => pids.forEach((p, i) => (max[i] = Math.max(max[i]!, rss(p)))), 25);
  return {
    stop() {
      clearInterval(timer);
      pids.forEach((p, i) => (max[i] = Math.max(max[i]!, rss(p))));
      return max.map((m, i) => m - base[i]!);
    },
  };
}

t.test('request path through the proxyctl binary', async (t) => {
  const [idp, backend] = await Promise.all([startIdp(), startBackend()]);
  t.teardown(() => idp.close());
  t.teardown(() => backend.close());
  const dir = tempDir(t, 'proxyctl-rp-e2e-');
  const configFile = path.join(dir, 'relay.yaml');
  const deadPort = await closedPort();
  const app = (name: string, host: string, internal = `${backend.origin}/${name}/`) =>
    `  - name: ${name}\n    externalUrl: "https://${host}/"\n    internalUrl: "${internal}"\n    preauth: passthrough\n`;
  const dead = app('dead', 'dead.test', `http://127.0.0.1:${deadPort}/`);
  const config = (apps: string) => `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "${idp.issuer}" }
connectors: { heartbeatInterval: 300ms, queueTimeout: 10s, channels: 2 }
apps:
${apps}`;
  writeFileSync(configFile, config(app('files', 'files.test') + dead));

  const procs: Proc[] = [];
  t.teardown(() => Promise.all(procs.map((p) => p.stop('SIGKILL'))));
  // Debug level: the relay logs a request that waits for a connector.
  const relay = new Proc(['relay', 'serve', '--config', configFile], { env: { PROXYCTL_LOG_LEVEL: 'debug' } });
  procs.push(relay);
  const apiUrl = String((await relay.waitMsg('connector API listening'))['url']);
  const ready = await relay.waitMsg('public listener ready');
  await relay.waitMsg('relay ready');
  const publicPort = (ready['listen'] as { port: number }).port;
  const caFile = path.join(dir, 'data', 'ca.pem');
  const client = new Agent({ connect: { ca: readFileSync(caFile, 'utf8'), lookup }, connections: 16 });
  t.teardown(() => client.close());
  const url = (host: string, p: string) => `https://${host}:${publicPort}${p}`;
  const call = (host: string, p: string, opts: Partial<Dispatcher.RequestOptions> = {}) =>
    request(url(host, p), { dispatcher: client, ...opts });
  /** 20 small requests at once; their statuses and the slowest one's time. */
  const twentyOthers = async (label: string) => {
    const done = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const started = performance.now();
        const o = await call('files.test', `/echo?${label}=${i}`);
        await o.body.dump();
        return { status: o.statusCode, ms: performance.now() - started };
      }),
    );
    return { statuses: done.map((o) => o.status), slowestMs: Math.round(Math.max(...done.map((o) => o.ms))) };
  };

  const register = async (name: string) => {
    const stateDir = path.join(dir, name);
    const r = await runCli(
      ['connector', 'register', '--relay', apiUrl, '--relay-ca', caFile, '--state-dir', stateDir, '--name', name],
      { env: { PROXYCTL_TOKEN: await idp.adminToken() } },
    );
    t.equal(r.code, 0, `register ${name}: ${r.stderr}`);
    return stateDir;
  };
  const [dir1, dir2] = await Promise.all([register('edge-1'), register('edge-2')]);
  const startConnector = async (stateDir: string) => {
    const c = new Proc(['connector', 'run', '--state-dir', stateDir]);
    procs.push(c);
    await c.waitFor((l) => l.msg === 'control channel open' && l['slot'] === 0);
    await c.waitFor((l) => l.msg === 'control channel open' && l['slot'] === 1);
    return c;
  };

  let edge1!: Proc;
  const growth: number[] = [];
  await t.test('a request waiting for the group is served by a connector that comes online', async (t) => {
    const from = relay.lines.length;
    const pending = call('files.test', '/waited?x=1');
    let answeredAt = Infinity;
    pending.then(
      () => (answeredAt = performance.now()),
      () => undefined, // awaited below
    );
    const waiting = await relay.waitFor(
      (l) => l.msg === 'request waiting for a connector' && l['group'] === 'default',
      10_000,
      from,
    );
    t.ok(waiting, 'the relay holds the request: no connector online');
    const connectorStarted = performance.now();
    edge1 = await startConnector(dir1);
    const r = await pending;
    t.equal(r.statusCode, 200);
    t.equal(((await r.body.json()) as EchoBody).url, '/files/waited?x=1');
    t.ok(answeredAt > connectorStarted, 'it waited for the connector: answered only after it started');
  });

  await t.test('256 MiB download, byte-exact, streamed', async (t) => {
    const rss = watchRss([relay.pid, edge1.pid]);
    const r = await call('files.test', `/bytes?n=${BIG}&tag=dl256`);
    t.equal(r.statusCode, 200);
    t.equal(r.headers['content-length'], String(BIG));
    const got = await drain(r.body);
    t.equal(got.error, undefined);
    t.equal(got.bytes, BIG);
    const sent = await backend.ended('dl256');
    t.ok(sent.finished);
    t.equal(sent.bytes, BIG);
    t.equal(got.sha256, sent.sha256, 'sha256 the backend sent = sha256 the client received');
    growth.push(...rss.stop());
  });

  await t.test('256 MiB upload, byte-exact, streamed', async (t) => {
    const upload = countedUpload();
    const rss = watchRss([relay.pid, edge1.pid]);
    const r = await call('files.test', '/upload', {
      method: 'POST',
      body: upload.body,
      headers: { 'content-length': String(BIG) },
    });
    t.equal(r.statusCode, 200);
    const j = (await r.body.json()) as { sha256: string; length: number; contentLength: string };
    t.equal(upload.sent(), BIG);
    t.equal(j.length, BIG);
    t.equal(j.contentLength, String(BIG));
    t.equal(j.sha256, upload.sha256(), 'sha256 the client sent = sha256 the backend received');
    growth.push(...rss.stop());
  });

  await t.test('neither process held a transfer in memory', async (t) => {
    // [relay, connector] for the download, then for the upload; buffering 256 MiB would show as ≥ 256 MiB.
    t.equal(growth.length, 4);
    growth.forEach((g, i) =>
      t.ok(
        g < 96 * MiB,
        `${i % 2 ? 'connector' : 'relay'} grew ${Math.round(g / MiB)} MiB during the ${i < 2 ? 'download' : 'upload'}`,
      ),
    );
  });

  await t.test(
    'a client that stops reading: back-pressure reaches the backend, memory stays bounded, other requests go on',
    async (t) => {
      const rss = watchRss([relay.pid, edge1.pid]);
      const r = await call('files.test', `/bytes?n=${BIG}&tag=stalled`);
      t.equal(r.statusCode, 200);
      // The body is not read: every buffer on the way fills, then the backend must stop.
      const early = await steady(() => backend.written('stalled'));
      const watch = observationWindow();
      // Meanwhile the same relay and connector serve others, promptly.
      const others = await twentyOthers('while-download-stalled');
      t.same(
        others.statuses,
        others.statuses.map(() => 200),
        '20 other requests answered while the download stalls',
      );
      t.ok(others.slowestMs < 2000, `slowest of them: ${others.slowestMs} ms`);
      await watch.ended;
      const late = backend.written('stalled');
      const watchedMs = watch.ms();
      // What got out sits in loopback socket buffers (Linux autotunes a receive buffer up to
      // tcp_rmem's maximum, 32 MiB here, for each of three connections); the RSS check below
      // shows that relay and connector hold none of it.
      t.ok(
        early > 0 && early < BIG / 2,
        `the backend wrote ${Math.round(early / MiB)} MiB of ${BIG / MiB} MiB before it was held back`,
      );
      t.ok(late - early < 4 * MiB, `and ${((late - early) / MiB).toFixed(1)} MiB more in the next ${watchedMs} ms`);
      const [relayGrew, connectorGrew] = rss.stop();
      t.ok(
        relayGrew! < 64 * MiB && connectorGrew! < 64 * MiB,
        `RSS growth while stalled: relay ${Math.round(relayGrew! / MiB)} MiB, connector ${Math.round(connectorGrew! / MiB)} MiB`,
      );
      // Reading again, the client gets every byte.
      const got = await drain(r.body);
      t.equal(got.error, undefined);
      t.equal(got.bytes, BIG);
      const sent = await backend.ended('stalled');
      t.ok(sent.finished);
      t.equal(got.sha256, sent.sha256, 'byte-exact after the stall');
    },
  );

  await t.test(
    'a backend that stops reading an upload: the client is held back, memory stays bounded, other requests go on',
    async (t) => {
      const upload = countedUpload();
      const rss = watchRss([relay.pid, edge1.pid]);
      const pending = call('files.test', '/upload?stallMs=5000', {
        method: 'POST',
        body: upload.body,
        headers: { 'content-length': String(BIG) },
      });
      const early = await steady(() => upload.sent());
      const watch = observationWindow();
      const others = await twentyOthers('while-upload-stalled');
      t.same(
        others.statuses,
        others.statuses.map(() => 200),
        '20 other requests answered while the upload is held back',
      );
      t.ok(others.slowestMs < 2000, `slowest of them: ${others.slowestMs} ms`);
      await watch.ended;
      const late = upload.sent();
      const watchedMs = watch.ms();
      t.ok(
        early > 0 && early < BIG / 2,
        `the client got ${Math.round(early / MiB)} MiB of ${BIG / MiB} MiB out before it was held back (socket buffers)`,
      );
      t.ok(late - early < 4 * MiB, `and ${((late - early) / MiB).toFixed(1)} MiB more in the next ${watchedMs} ms`);
      const [relayGrew, connectorGrew] = rss.stop();
      t.ok(
        relayGrew! < 64 * MiB && connectorGrew! < 64 * MiB,
        `RSS growth while held back: relay ${Math.round(relayGrew! / MiB)} MiB, connector ${Math.round(connectorGrew! / MiB)} MiB`,
      );
      const r = await pending;
      t.equal(r.statusCode, 200);
      const j = (await r.body.json()) as { sha256: string; length: number };
      t.equal(j.length, BIG);
      t.equal(j.sha256, upload.sha256(), 'byte-exact once the backend reads again');
    },
  );

  let edge2: Proc;
  await t.test(
    'connector SIGKILLed mid-stream: in-flight requests fail fast, the other connector serves new ones',
    async (t) => {
      const waiting = call('files.test', '/slow?ms=20000&tag=killslow', { headers: { accept: 'application/json' } });
      const streaming = await call('files.test', `/bytes?n=${1024 * MiB}&tag=killdl`);
      t.equal(streaming.statusCode, 200);
      const reading = drain(streaming.body);
      await waitFor(() => backend.seen.some((s) => s.url.includes('tag=killslow')), {
        what: 'the slow request at the backend',
      }).catch(() => undefined);
      edge2 = await startConnector(dir2);
      const started = performance.now();
      edge1.child.kill('SIGKILL');
      await edge1.exited;
      const w = await waiting;
      t.equal(w.statusCode, 502, 'the waiting request gets a page');
      const j = (await w.body.json()) as { error: { code: string; requestId: string } };
      t.equal(j.error.code, 'ERR_CONNECTOR_LOST');
      t.equal(w.headers['x-request-id'], j.error.requestId);
      const s = await reading;
      t.ok(s.error, `the download broke off (${s.error?.message}) rather than ending cleanly`);
      t.ok(s.bytes < 1024 * MiB);
      const took = performance.now() - started;
      t.ok(took < 3000, `both failed within ${Math.round(took)} ms`);
      t.equal((await backend.ended('killdl')).finished, false, 'the backend saw its response aborted');
      for (let i = 0; i < 5; i++) {
        const r = await call('files.test', `/after-kill-${i}`);
        t.equal(r.statusCode, 200);
        t.equal(((await r.body.json()) as EchoBody).url, `/files/after-kill-${i}`);
      }
    },
  );

  await t.test('SIGHUP reload publishes a new app without restarting the connector', async (t) => {
    const opens = edge2.count('control channel open');
    const from = edge2.lines.length;
    writeFileSync(configFile, config(app('files', 'files.test') + dead + app('added', 'added.test')));
    const reloadFrom = relay.lines.length;
    relay.child.kill('SIGHUP');
    const pulled = await edge2.waitFor((l) => l.msg === 'configuration pulled' && l['changed'] === true, 10_000, from);
    t.equal(pulled['apps'], 3, 'the connector learned the new app');
    // A reload builds everything (the certificate naming the new host too) before it swaps.
    await relay.waitMsg('configuration reloaded', 10_000, reloadFrom);
    const r = await call('added.test', '/hello');
    t.equal(r.statusCode, 200);
    t.equal(((await r.body.json()) as EchoBody).url, '/added/hello');
    t.equal(edge2.child.exitCode, null, 'the connector process kept running');
    t.equal(edge2.count('control channel open'), opens, 'and kept its channels');
    const old = await call('files.test', '/still');
    t.equal(old.statusCode, 200, 'the existing app still answers');
    await old.body.dump();
  });

  await t.test('uploads to an unreachable backend get the 502 page, and the relay keeps serving', async (t) => {
    for (const size of [10, 256 * 1024, 4 * MiB]) {
      const r = await call('dead.test', '/upload', {
        method: 'POST',
        body: patternStream(size),
        headers: { accept: 'application/json', 'content-length': String(size) },
      }).catch((err: Error) => err);
      if (r instanceof Error) {
        t.fail(`${size}-byte upload: the connection was cut (${r.message})`);
        continue;
      }
      t.equal(r.statusCode, 502, `${size}-byte upload answered`);
      const j = (await r.body.json()) as { error: { code: string } };
      t.equal(j.error.code, 'ERR_BACKEND_UNREACHABLE');
    }
    t.equal(relay.child.exitCode, null, 'the relay process is still running');
    const r = await call('files.test', '/alive').catch((err: Error) => err);
    t.equal(r instanceof Error ? r.message : r.statusCode, 200, 'and answering');
    if (!(r instanceof Error)) await r.body.dump();
  });

  t.equal(await relay.stop(), 0, 'relay drains and exits 0');
});
