// Load-generating clients, each run in its own process by bench/run.mjs so their
// CPU and memory never mix with the relay's:
//   node bench/client.mjs <mode> '<json options>'
// Modes (every one prints JSON lines on stdout; the last is the result):
//   load      autocannon: { url, connections, duration | amount, warmup?, host?, headers?, ca?, rate?, timeout? }
//   download  { url, bytes, host?, ca? }       streams and discards, reports MB/s
//   upload    { url, bytes, host?, ca? }       streams from one reused buffer, reports MB/s
//   slow      { url, rate, seconds, host?, ca? } reads at `rate` B/s for `seconds`, then leaves
//   idle      { port, host, path, count, concurrency, ca, h2? }  opens `count` TLS keep-alive
//             connections, one request each, then idles; answers "status" lines on stdin.
//             h2: each an HTTP/2 session (ALPN h2 only), its one request a stream on it
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import tls from 'node:tls';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';

const [mode, json] = process.argv.slice(2);
const opts = JSON.parse(json ?? '{}');
const ca = opts.ca ? readFileSync(opts.ca) : undefined;

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Options for one request: https with the relay CA and the published host, or plain http. */
function requestOptions(method, extraHeaders = {}) {
  const u = new URL(opts.url);
  const headers = { ...(opts.host ? { host: opts.host } : {}), ...extraHeaders };
  const base = { method, hostname: u.hostname, port: u.port, path: u.pathname + u.search, headers, agent: false };
  if (u.protocol === 'https:') return { mod: https, options: { ...base, ca, servername: opts.host ?? u.hostname } };
  return { mod: http, options: base };
}

async function load() {
  const u = new URL(opts.url);
  const result = await autocannon({
    url: opts.url,
    connections: opts.connections,
    // A fixed number of requests (--callgrind), else a fixed time.
    ...(opts.amount ? { amount: opts.amount } : { duration: opts.duration }),
    headers: { ...(opts.host ? { host: opts.host } : {}), ...opts.headers },
    // A fixed request rate over all connections (the p99-at-half-load test), else as fast as answered.
    ...(opts.rate ? { overallRate: opts.rate } : {}),
    // Seconds before a request counts as timed out (autocannon's default is 10; valgrind needs more).
    ...(opts.timeout ? { timeout: opts.timeout } : {}),
    ...(u.protocol === 'https:' ? { servername: opts.host ?? u.hostname, tlsOptions: { ca } } : {}),
    ...(opts.warmup ? { warmup: { connections: opts.connections, duration: opts.warmup } } : {}),
  });
  emit({
    msg: 'result',
    rps: result.requests.average,
    total: result.requests.total,
    warmupTotal: result.warmup?.requests?.total ?? 0,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    mean: result.latency.average,
    non2xx: result.non2xx,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([k, v]) => [k, v.count])),
    errors: result.errors,
    timeouts: result.timeouts,
    duration: result.duration,
  });
}

function download() {
  return new Promise((resolve, reject) => {
    const { mod, options } = requestOptions('GET');
    const t0 = performance.now();
    const req = mod.request(options, (res) => {
      let bytes = 0;
      res.on('data', (c) => {
        bytes += c.length;
      });
      res.on('error', reject);
      res.on('end', () => {
        const seconds = (performance.now() - t0) / 1000;
        emit({
          msg: 'result',
          status: res.statusCode,
          bytes,
          seconds,
          mbps: bytes / seconds / 1e6,
          complete: bytes === opts.bytes,
        });
        resolve();
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function upload() {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(64 * 1024, 'u');
    const { mod, options } = requestOptions('POST', {
      'content-type': 'application/octet-stream',
      'content-length': String(opts.bytes),
    });
    const t0 = performance.now();
    const req = mod.request(options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
      });
      res.on('error', reject);
      res.on('end', () => {
        const seconds = (performance.now() - t0) / 1000;
        let received = -1;
        try {
          received = JSON.parse(text).bytes;
        } catch {
          // reported below as incomplete
        }
        emit({
          msg: 'result',
          status: res.statusCode,
          bytes: opts.bytes,
          received,
          seconds,
          mbps: opts.bytes / seconds / 1e6,
          complete: received === opts.bytes,
        });
        resolve();
      });
    });
    req.on('error', reject);
    let left = opts.bytes;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

function slow() {
  return new Promise((resolve, reject) => {
    const { mod, options } = requestOptions('GET');
    let t0 = 0;
    let bytes = 0;
    const req = mod.request(options, (res) => {
      t0 = performance.now();
      emit({ msg: 'started', status: res.statusCode });
      const stop = setTimeout(() => {
        const seconds = (performance.now() - t0) / 1000;
        req.destroy();
        emit({ msg: 'result', status: res.statusCode, bytes, seconds, rate: bytes / seconds });
        resolve();
      }, opts.seconds * 1000);
      // Token bucket: whenever we are ahead of `rate`, stop reading (TCP back-pressure does the rest).
      res.on('data', (c) => {
        bytes += c.length;
        const aheadMs = (bytes / opts.rate) * 1000 - (performance.now() - t0);
        if (aheadMs > 0) {
          res.pause();
          setTimeout(() => res.resume(), aheadMs);
        }
      });
      res.on('error', () => undefined);
      res.on('end', () => {
        clearTimeout(stop);
        reject(new Error(`the download ended early after ${bytes} bytes`));
      });
    });
    req.on('error', (err) => {
      if (t0 === 0) reject(err);
    });
    req.end();
  });
}

async function idle() {
  const request = Buffer.from(`GET ${opts.path} HTTP/1.1\r\nhost: ${opts.host}\r\nuser-agent: proxyctl-bench\r\n\r\n`);
  const sockets = new Set();
  let opened = 0;
  let failed = 0;
  let closedEarly = 0;
  let firstError;
  const t0 = performance.now();
  /**
   * One connection attempt, settled once: kept (open and counted) when its GET was
   * answered 200, else failed and destroyed. A kept one that closes counts as closed early.
   */
  const attempt = (conn, resolve) => {
    let answered = false;
    const settle = (problem) => {
      if (answered) return;
      answered = true;
      if (problem) {
        failed++;
        firstError ??= problem;
        conn.destroy();
      } else {
        opened++;
        sockets.add(conn);
      }
      resolve();
    };
    conn.on('error', (err) => settle(err.message));
    conn.on('close', () => {
      if (sockets.delete(conn)) closedEarly++;
      settle('closed before the response');
    });
    const timer = setTimeout(() => settle('timeout'), 30_000);
    return (problem) => {
      clearTimeout(timer);
      settle(problem);
    };
  };
  /** HTTP/2: one session per connection, one GET on it, kept open. */
  const oneH2 = () =>
    new Promise((resolve) => {
      const session = http2.connect(`https://127.0.0.1:${opts.port}`, {
        ca,
        servername: opts.host,
        ALPNProtocols: ['h2'],
      });
      const done = attempt(session, resolve);
      const stream = session.request({ ':path': opts.path, ':authority': opts.host, 'user-agent': 'proxyctl-bench' });
      stream.on('error', (err) => done(err.message));
      stream.on('response', (headers) => {
        stream.resume();
        stream.on('end', () => done(headers[':status'] === 200 ? undefined : `status ${headers[':status']}`));
      });
      stream.end();
    });
  /** HTTP/1.1: a raw TLS socket, one GET written on it, kept open after the first bytes of a 200. */
  const oneH1 = () =>
    new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: opts.port, ca, servername: opts.host });
      const done = attempt(socket, resolve);
      socket.once('secureConnect', () => socket.write(request));
      socket.once('data', (d) =>
        done(d.toString('latin1', 0, 12).startsWith('HTTP/1.1 200') ? undefined : d.toString('latin1', 0, 40)),
      );
    });
  const one = opts.h2 ? oneH2 : oneH1;
  let next = 0;
  const workers = Array.from({ length: opts.concurrency }, async () => {
    while (next < opts.count) {
      next++;
      await one();
      if ((opened + failed) % 1000 === 0) emit({ msg: 'progress', opened, failed });
    }
  });
  await Promise.all(workers);
  emit({ msg: 'idle ready', opened, failed, firstError, seconds: (performance.now() - t0) / 1000 });
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() === 'status') emit({ msg: 'status', open: sockets.size, closedEarly });
  });
  await new Promise((resolve) => rl.once('close', resolve));
  for (const s of sockets) s.destroy();
}

const modes = { load, download, upload, slow, idle };
if (!modes[mode]) {
  process.stderr.write(`unknown mode ${mode}; one of ${Object.keys(modes).join(', ')}\n`);
  process.exit(2);
}
modes[mode]().then(
  () => process.exit(0),
  (err) => {
    emit({ msg: 'error', error: err.message });
    process.exit(1);
  },
);
