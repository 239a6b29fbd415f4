// Connection storms (issue 22, "Memory after connection storms"): cycles of opening
// many idle keep-alive TLS connections to the relay's public listener (one
// GET /robots.txt each, answered by the relay itself), holding them, closing them
// all and waiting for quiet, then reading the server's RSS. A server whose native
// memory is given back plateaus: every cycle's retained RSS within 10% of the
// first cycle's. Exit status 1 when it does not.
//
//   node bench/storm.mjs [--cycles 4] [--connections 10000] [--clients N]
//                        [--hold 2] [--settle 3] [--server relay|bare|bare-sni]
//                        [--env KEY=VAL,KEY=VAL]  extra environment for the server
//                        [--jemalloc]             LD_PRELOAD libjemalloc.so.2 into the server
//                        [--node-flags=--max-semi-space-size=8]  extra node flags for the server
//                        [--gc]                   full GC in the server before each reading
//                        [--attach PID/PORT]      a running relay (or any TLS server answering
//                                                 GET /robots.txt with 200); RSS only
//                        [--reclaim-wait 45]      seconds to wait, after the last close, for the
//                                                 relay's memory reclaim to run (0: do not wait)
//                        [--root DIR] [--json FILE] [--keep] [--limit 1.10]
//
// STORM_PROBE=FILE preloads another probe in place of bench/storm-probe.mjs (the
// investigation used one that also called malloc_trim through koffi).
//
// The server is the built binary (`npm run build` first): `proxyctl relay serve`
// with a small config (one passthrough app; no connector is needed since
// /robots.txt is the relay's own), or bench/bare.mjs, a bare Node HTTPS server with
// proxyctl's TLS settings, to tell Node's and OpenSSL's share from ours. Clients
// are bench/client.mjs `idle` processes (--clients of them, default one per 5,000
// connections), each under a raised descriptor limit.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cliFlags } from './flags.mjs';
import { tcpSockets } from './proc-net.mjs';
import { childProcesses } from './children.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const APP_HOST = 'storm.example.com';
const MIB = 1024 ** 2;

// ---------------------------------------------------------------- options

const { flag, positive } = cliFlags();
const ROOT = path.resolve(String(flag('root', path.resolve(HERE, '..'))));
const BIN = path.join(ROOT, 'bin/proxyctl.js');
const CYCLES = Math.floor(positive('cycles', 4));
const CONNECTIONS = Math.floor(positive('connections', 10_000));
const CLIENTS = Math.floor(positive('clients', Math.ceil(CONNECTIONS / 5000)));
const HOLD_S = positive('hold', 2);
const SETTLE_S = positive('settle', 3);
const LIMIT = positive('limit', 1.1);
const SERVER = String(flag('server', 'relay'));
if (!['relay', 'bare', 'bare-sni'].includes(SERVER))
  throw new Error(`--server: relay, bare or bare-sni, not ${SERVER}`);
const EXTRA_ENV = Object.fromEntries(
  String(flag('env', ''))
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const i = kv.indexOf('=');
      if (i <= 0) throw new Error(`--env: KEY=VALUE pairs, not ${kv}`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
);
const JEMALLOC = flag('jemalloc', false) === true;
const JEMALLOC_SO = ['/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2'].find(
  (f) => existsSync(f),
);
if (JEMALLOC && !JEMALLOC_SO) throw new Error('--jemalloc: libjemalloc.so.2 not found (apt-get install libjemalloc2)');
const NODE_FLAGS = String(flag('node-flags', '')).split(',').filter(Boolean);
const GC = flag('gc', false) === true;
const ATTACH = flag('attach', undefined);
const JSON_OUT = flag('json', undefined);
const KEEP = flag('keep', false) === true;
/**
 * After the last close, how long to wait (s) for the relay's own memory reclaim
 * (src/memory-reclaim.ts: 2 s after a storm, at most every 30 s) before reading; 0: do not wait.
 */
const RECLAIM_WAIT_S = Number(flag('reclaim-wait', 45));

// ---------------------------------------------------------------- processes

const { spawnNode, stopChild, killAll } = childProcesses(ROOT);
let workDir;
function cleanUp() {
  killAll();
  if (workDir && !KEEP) rmSync(workDir, { recursive: true, force: true });
}
process.on('exit', () => killAll());
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanUp();
    process.exit(130);
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves to the first stdout/log JSON line matching pred. */
async function waitForLine(file, child, pred, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // not written yet
    }
    for (const line of text.split('\n')) {
      try {
        const l = JSON.parse(line);
        if (pred(l)) return l;
      } catch {
        // a partial or non-JSON line
      }
    }
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${what}: the server exited (${child.exitCode ?? child.signalCode}):\n${text.slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${text.slice(-2000)}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------- measuring

function status(pid) {
  return readFileSync(`/proc/${pid}/status`, 'utf8');
}
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(status(pid));
  return m ? Number(m[1]) * 1024 : NaN;
}
function threads(pid) {
  return Number(/Threads:\s+(\d+)/.exec(status(pid))?.[1] ?? NaN);
}

/**
 * Where the RSS is, from /proc/PID/smaps: the brk heap (glibc's main malloc arena),
 * anonymous mappings of 64 MiB reserve (glibc's per-thread arenas, jemalloc's
 * extents and V8's reservations look alike here, so this is only a hint), and
 * the rest (code, files).
 */
function smapsSummary(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return undefined;
  }
  const out = { brkHeap: 0, anon: 0, other: 0 };
  let kind = 'other';
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1].trim();
      kind = name === '[heap]' ? 'brkHeap' : name === '' ? 'anon' : 'other';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) out[kind] += Number(rss[1]) * 1024;
  }
  return out;
}

/** TCP connections in ESTABLISHED (or closing) state whose local port is `port`. */
function serverConnections(port) {
  // 01 ESTABLISHED, 08 CLOSE_WAIT, 09 LAST_ACK, 0B CLOSING: the server still holds the socket.
  const held = ['01', '08', '09', '0B'];
  return tcpSockets().filter((s) => held.includes(s.state) && s.localPort === port).length;
}

/** Median RSS over `ms`. */
async function steadyRss(pid, ms = 1000) {
  const xs = [];
  for (let t = 0; t < ms; t += 100) {
    xs.push(rssBytes(pid));
    await sleep(100);
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)];
}

/**
 * After the clients left: no connection held by the server, the relay's memory reclaim
 * done (when `reclaimsBefore` is given), then RSS stable (two 1 s medians within 0.5 %).
 */
async function waitForQuiet(server, reclaimsBefore, timeoutMs = 60_000) {
  const { pid, port } = server;
  const deadline = Date.now() + timeoutMs;
  while (serverConnections(port) > 0 && Date.now() < deadline) await sleep(200);
  const left = serverConnections(port);
  if (reclaimsBefore !== undefined) {
    const until = Date.now() + RECLAIM_WAIT_S * 1000;
    while (reclaims(server) <= reclaimsBefore && Date.now() < until) await sleep(200);
  }
  await sleep(SETTLE_S * 1000);
  let prev = await steadyRss(pid);
  for (;;) {
    const cur = await steadyRss(pid);
    if (Math.abs(cur - prev) / prev < 0.005 || Date.now() > deadline) return { rss: cur, left };
    prev = cur;
  }
}

/** How many times the relay logged a memory reclaim (src/memory-reclaim.ts) so far. */
function reclaims(server) {
  if (!server.logFile) return undefined;
  try {
    return readFileSync(server.logFile, 'utf8').split('memory reclaimed after a connection storm').length - 1;
  } catch {
    return undefined;
  }
}

/** process.memoryUsage() of the server through bench/storm-probe.mjs (undefined when attached). */
async function probe(server) {
  if (!server.probeFile) return undefined;
  const before = existsSync(server.probeFile) ? readFileSync(server.probeFile, 'utf8').split('\n').length : 0;
  process.kill(server.pid, 'SIGUSR2');
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (existsSync(server.probeFile)) {
      const lines = readFileSync(server.probeFile, 'utf8').split('\n');
      if (lines.length > before) return JSON.parse(lines[lines.length - 2]);
    }
    await sleep(50);
  }
  return undefined;
}

// ---------------------------------------------------------------- servers

function relayYaml() {
  return `dataDir: ./data
public:
  listen: "127.0.0.1:0"
connectorApi:
  listen: "127.0.0.1:0"
# One client address opens every connection: no per-address limits.
limits:
  perIp: false
  connectionsPerIp: 1000000
# Info: one JSON line per request, to a file, as in production.
log:
  level: info
apps:
  - name: storm
    externalUrl: "https://${APP_HOST}/"
    internalUrl: "http://127.0.0.1:9/"
    preauth: passthrough
`;
}

/** Starts the relay (or the bare server) with the environment and flags under test. */
async function startServer(dir) {
  const configFile = path.join(dir, 'relay.yaml');
  writeFileSync(configFile, relayYaml());
  const env = { ...EXTRA_ENV, ...(JEMALLOC ? { LD_PRELOAD: JEMALLOC_SO } : {}) };
  const probeFile = path.join(dir, 'probe.jsonl');
  const nodeFlags = [
    `--import=${process.env.STORM_PROBE ?? path.join(HERE, 'storm-probe.mjs')}`,
    ...(GC ? ['--expose-gc'] : []),
    ...NODE_FLAGS,
  ];
  const probeEnv = { STORM_PROBE_FILE: probeFile, STORM_PROBE_GC: GC ? '1' : '0' };
  const logFile = path.join(dir, 'server.log');
  const start = (args, extraEnv) => {
    const fd = openSync(logFile, 'a');
    const child = spawnNode(args, { stdio: ['ignore', fd, fd], nodeFlags, env: { ...env, ...probeEnv, ...extraEnv } });
    closeSync(fd);
    return child;
  };
  const relay = start([BIN, 'relay', 'serve', '--config', configFile], {});
  const ready = await waitForLine(logFile, relay, (l) => l.msg === 'public listener ready', 'public listener ready');
  await waitForLine(logFile, relay, (l) => l.msg === 'relay ready', 'relay ready');
  const caFile = path.join(dir, 'data', 'ca.pem');
  if (SERVER === 'relay') return { child: relay, pid: relay.pid, port: ready.listen.port, caFile, probeFile, logFile };
  // The bare server presents the relay's own certificate for the app host (issued by the relay CA).
  await stopChild(relay);
  const tls = { cert: path.join(dir, 'data/tls/public-cert.pem'), key: path.join(dir, 'data/tls/public-key.pem') };
  const bare = start([path.join(HERE, 'bare.mjs'), JSON.stringify({ ...tls, sni: SERVER === 'bare-sni' })], {});
  const line = await waitForLine(logFile, bare, (l) => l.msg === 'bare ready', 'bare ready');
  return { child: bare, pid: bare.pid, port: line.port, caFile, probeFile, logFile };
}

// ---------------------------------------------------------------- clients

/** One bench/client.mjs `idle` process: opens `count` connections, holds them until its stdin closes. */
function idleClient(port, caFile, count) {
  const child = spawnNode(
    [
      path.join(HERE, 'client.mjs'),
      'idle',
      JSON.stringify({ port, host: APP_HOST, path: '/robots.txt', count, concurrency: 64, ca: caFile }),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let buf = '';
  let stderr = '';
  const waiters = [];
  const lines = [];
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      try {
        lines.push(JSON.parse(buf.slice(0, i)));
      } catch {
        // not ours
      }
      buf = buf.slice(i + 1);
      for (const w of waiters.splice(0)) w();
    }
  });
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
  const take = async (msg, timeoutMs) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = lines.find((x) => x.msg === msg || x.msg === 'error');
      if (l?.msg === 'error') throw new Error(`idle client: ${l.error}`);
      if (l) return l;
      if (child.exitCode !== null) throw new Error(`idle client exited (${child.exitCode}) before ${msg}: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`idle client: timed out waiting for ${msg}`);
      await Promise.race([new Promise((r) => waiters.push(r)), sleep(200)]);
    }
  };
  return {
    ready: () => take('idle ready', 300_000),
    close: async () => {
      child.stdin.end();
      await child.exited;
    },
  };
}

// ---------------------------------------------------------------- the run

const fmtMiB = (b) => (Number.isFinite(b) ? `${(b / MIB).toFixed(1)}` : '-');

async function main() {
  let server;
  if (ATTACH) {
    const m = /^(\d+)\/(\d+)$/.exec(String(ATTACH));
    if (!m) throw new Error(`--attach: PID/PORT, not ${ATTACH}`);
    const caFile = flag('ca', undefined);
    if (!caFile) throw new Error('--attach needs --ca FILE (the relay CA, <dataDir>/ca.pem)');
    server = { pid: Number(m[1]), port: Number(m[2]), caFile: String(caFile) };
  } else {
    workDir = mkdtempSync(path.join(tmpdir(), 'proxyctl-storm-'));
    server = await startServer(workDir);
  }
  const setting = [
    { relay: 'relay', bare: 'bare Node HTTPS server', 'bare-sni': 'bare Node HTTPS server with an SNICallback' }[
      SERVER
    ],
    ...Object.entries(EXTRA_ENV).map(([k, v]) => `${k}=${v}`),
    ...(JEMALLOC ? ['jemalloc'] : []),
    ...NODE_FLAGS,
    ...(GC ? ['gc() before readings'] : []),
  ].join(', ');
  console.log(
    `storm: ${setting}; pid ${server.pid}, port ${server.port}; ${CYCLES} cycles of ${CONNECTIONS} idle TLS connections from ${CLIENTS} client process(es), hold ${HOLD_S} s`,
  );
  /** The relay reclaims memory after storms unless told not to: the readings wait for it. */
  const reclaimWaited =
    SERVER === 'relay' && !ATTACH && RECLAIM_WAIT_S > 0 && EXTRA_ENV.PROXYCTL_MEMORY_RECLAIM !== 'off';
  const baseline = await steadyRss(server.pid, 2000);
  const baseProbe = await probe(server);
  const baseSmaps = smapsSummary(server.pid);
  console.log(
    `baseline RSS ${fmtMiB(baseline)} MiB${baseProbe ? `, heap used ${fmtMiB(baseProbe.heapUsed)} MiB, external ${fmtMiB(baseProbe.external)} MiB` : ''}${baseSmaps ? `, brk heap ${fmtMiB(baseSmaps.brkHeap)} MiB, anon ${fmtMiB(baseSmaps.anon)} MiB` : ''}`,
  );
  console.log(
    'cycle  opened  failed  open s  RSS open  retained  heap used  external  arrayBufs  brk heap  anon   threads  reclaims  ratio',
  );
  const rows = [];
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    const t0 = performance.now();
    const per = Math.ceil(CONNECTIONS / CLIENTS);
    const clients = Array.from({ length: CLIENTS }, (_, i) =>
      idleClient(server.port, server.caFile, Math.min(per, CONNECTIONS - i * per)),
    );
    const ready = await Promise.all(clients.map((c) => c.ready()));
    const openS = (performance.now() - t0) / 1000;
    const opened = ready.reduce((n, r) => n + r.opened, 0);
    const failed = ready.reduce((n, r) => n + r.failed, 0);
    const firstError = ready.find((r) => r.firstError)?.firstError;
    await sleep(HOLD_S * 1000);
    const rssOpen = rssBytes(server.pid);
    const reclaimsBefore = reclaimWaited ? reclaims(server) : undefined;
    await Promise.all(clients.map((c) => c.close()));
    const quiet = await waitForQuiet(server, reclaimsBefore);
    const mem = await probe(server);
    const smaps = smapsSummary(server.pid);
    const rss = GC ? await steadyRss(server.pid) : quiet.rss;
    const row = {
      cycle,
      opened,
      failed,
      firstError,
      openSeconds: +openS.toFixed(1),
      rssOpenBytes: rssOpen,
      retainedBytes: rss,
      heapUsedBytes: mem?.heapUsed,
      externalBytes: mem?.external,
      arrayBuffersBytes: mem?.arrayBuffers,
      brkHeapBytes: smaps?.brkHeap,
      anonBytes: smaps?.anon,
      threads: threads(server.pid),
      connectionsLeft: quiet.left,
      reclaims: reclaims(server),
    };
    row.ratio = rss / (rows[0]?.retainedBytes ?? rss);
    rows.push(row);
    console.log(
      [
        String(cycle).padStart(5),
        String(opened).padStart(7),
        String(failed).padStart(7),
        openS.toFixed(1).padStart(7),
        fmtMiB(rssOpen).padStart(9),
        fmtMiB(rss).padStart(9),
        fmtMiB(mem?.heapUsed).padStart(10),
        fmtMiB(mem?.external).padStart(9),
        fmtMiB(mem?.arrayBuffers).padStart(10),
        fmtMiB(smaps?.brkHeap).padStart(9),
        fmtMiB(smaps?.anon).padStart(6),
        String(row.threads).padStart(8),
        String(row.reclaims ?? '-').padStart(9),
        row.ratio.toFixed(3).padStart(6),
      ].join(' ') +
        (firstError ? `  first error: ${firstError}` : '') +
        (quiet.left ? `  (${quiet.left} connections still held)` : ''),
    );
  }
  const worst = Math.max(...rows.map((r) => r.ratio));
  const allOpened = rows.every((r) => r.failed === 0);
  const pass = worst <= LIMIT && allOpened;
  console.log(
    `retained RSS (MiB) per cycle: ${rows.map((r) => fmtMiB(r.retainedBytes)).join(' -> ')}; worst ratio to cycle 1 ${worst.toFixed(3)} (limit ${LIMIT.toFixed(2)})${allOpened ? '' : '; some connections failed'}: ${pass ? 'PASS' : 'FAIL'}`,
  );
  if (JSON_OUT) {
    writeFileSync(
      String(JSON_OUT),
      `${JSON.stringify({ when: new Date().toISOString(), setting, connections: CONNECTIONS, cycles: CYCLES, baselineBytes: baseline, rows, worst, limit: LIMIT, pass }, null, 2)}\n`,
    );
  }
  if (server.child) await stopChild(server.child);
  return pass;
}

main().then(
  (pass) => {
    cleanUp();
    process.exitCode = pass ? 0 : 1;
  },
  (err) => {
    console.error(`storm: ${err.stack ?? err.message}`);
    cleanUp();
    process.exitCode = 2;
  },
);
