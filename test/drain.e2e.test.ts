// Graceful shutdown of the built `proxyctl` binary under load: keep-alive clients
// sending continuously and long transfers (downloads and an upload, 64 MiB each,
// held half-way by the backend) through a connector; then SIGTERM. The relay must
// take no new connection and no new request on an open one, let the transfers
// finish (hashed end to end), and exit 0 as soon as they have; a transfer that
// outlives limits.drainTimeout is cut at the deadline. The connector's own SIGTERM
// finishes its in-flight transfer and exits 0 too.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type LookupFunction } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Agent, Client, request } from 'undici';
import { drain, patternChunks, patternSha256 } from './helpers/backend.js';
import { startIdp } from './helpers/idp.js';
import { Proc, runCli, tempDir } from './helpers/proc.js';
import { waitFor, within } from './helpers/wait.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const HALF = SIZE / 2;

const lookup: LookupFunction = (_host, opts, cb) => {
  if ((opts as { all?: boolean }).all)
    (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  else cb(null, '127.0.0.1', 4);
};

/** Opens when the test says so: the backend holds transfers half-way on it. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/**
 * The backend: /echo answers at once; /big streams SIZE pattern bytes and holds after
 * HALF until the gate opens; /upload hashes what it reads; /held answers (headers and
 * all) only once the gate opens. It counts what it has written and read per tag.
 */
async function startBackend(t: Test, g: { wait: Promise<void> }) {
  const progress = new Map<string, number>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const tag = u.searchParams.get('tag') ?? '';
    if (u.pathname.endsWith('/big')) {
      res.writeHead(200, { 'content-length': String(SIZE), 'content-type': 'application/octet-stream' });
      void (async () => {
        let n = 0;
        for (const chunk of patternChunks(SIZE)) {
          if (n === HALF) await g.wait;
          if (res.destroyed) return;
          n += chunk.length;
          progress.set(tag, n);
          if (!res.write(chunk)) await writable(res);
        }
        res.end();
      })();
      return;
    }
    if (u.pathname.endsWith('/upload')) {
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        n += c.length;
        progress.set(tag, n);
      });
      req.on('end', () => res.end(JSON.stringify({ length: n, sha256: hash.digest('hex') })));
      return;
    }
    if (u.pathname.endsWith('/held')) {
      progress.set(tag, 1);
      void g.wait.then(() => res.end('held'));
      return;
    }
    req.resume();
    res.end('ok');
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, progress };
}

/** Resolves when res can take more, or has closed (one listener of each at a time). */
function writable(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done).off('close', done);
      resolve();
    };
    res.on('drain', done).on('close', done);
  });
}

/** An upload body of SIZE pattern bytes that stops after HALF until the gate opens. */
function heldUpload(g: { wait: Promise<void> }): Readable {
  return Readable.from(
    (async function* () {
      let n = 0;
      for (const chunk of patternChunks(SIZE)) {
        if (n === HALF) await g.wait;
        n += chunk.length;
        yield chunk;
      }
    })(),
  );
}

interface Seen {
  startedAt: number;
  status: number | undefined;
  connection: string | undefined;
  error: string | undefined;
}

/**
 * A keep-alive client (one connection) sending GET /echo back to back until it gets
 * an error or stop() is called; records every request. A connection reset under a
 * request is followed by one more request, so each client ends on what a reconnect gets.
 */
function loadClient(origin: string, ca: string) {
  const client = new Client(origin, { connect: { ca, lookup }, keepAliveTimeout: 60_000, pipelining: 1 });
  const seen: Seen[] = [];
  let stopped = false;
  let reconnected = false;
  const done = (async () => {
    while (!stopped) {
      const s: Seen = { startedAt: performance.now(), status: undefined, connection: undefined, error: undefined };
      seen.push(s);
      try {
        const r = await client.request({ path: '/echo', method: 'GET' });
        s.status = r.statusCode;
        s.connection = String(r.headers['connection'] ?? '');
        await r.body.dump();
      } catch (err) {
        s.error = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        // A connection reset under a request: one more request shows what reconnecting gets
        // (refused during the drain), whichever way the connection ended.
        if (reconnected || s.error === 'ECONNREFUSED') return;
        reconnected = true;
      }
    }
  })();
  return {
    seen,
    done,
    stop: async () => {
      stopped = true;
      await done;
      await client.destroy();
    },
  };
}

/** A relay (with limits.drainTimeout) and one connector, both the built binary. */
async function setup(t: Test, drainTimeout: string) {
  let g = gate();
  const held = {
    get wait() {
      return g.wait;
    },
  };
  const [idp, backend] = await Promise.all([startIdp(), startBackend(t, held)]);
  t.teardown(() => idp.close());
  const dir = tempDir(t, 'proxyctl-drain-e2e-');
  const configFile = path.join(dir, 'relay.yaml');
  writeFileSync(
    configFile,
    `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "${idp.issuer}" }
connectors: { heartbeatInterval: 300ms, queueTimeout: 10s, channels: 2 }
limits: { drainTimeout: ${drainTimeout} }
apps:
  - name: files
    externalUrl: "https://files.test/"
    internalUrl: "${backend.origin}/files/"
    preauth: passthrough
`,
  );
  const procs: Proc[] = [];
  t.teardown(() => Promise.all(procs.map((p) => p.stop('SIGKILL'))));
  const relay = new Proc(['relay', 'serve', '--config', configFile], { cwd: dir });
  procs.push(relay);
  const apiUrl = String((await relay.waitMsg('connector API listening'))['url']);
  const port = ((await relay.waitMsg('public listener ready'))['listen'] as { port: number }).port;
  await relay.waitMsg('relay ready');
  const caFile = path.join(dir, 'data', 'ca.pem');
  const ca = readFileSync(caFile, 'utf8');
  const stateDir = path.join(dir, 'edge');
  const r = await runCli(
    ['connector', 'register', '--relay', apiUrl, '--relay-ca', caFile, '--state-dir', stateDir, '--name', 'edge'],
    { env: { PROXYCTL_TOKEN: await idp.adminToken() } },
  );
  t.equal(r.code, 0, `register: ${r.stderr}`);
  const connector = new Proc(['connector', 'run', '--state-dir', stateDir]);
  procs.push(connector);
  await connector.waitFor((l) => l.msg === 'control channel open' && l['slot'] === 1);
  const origin = `https://files.test:${port}`;
  const agent = new Agent({ connect: { ca, lookup }, connections: 8 });
  t.teardown(() => agent.close());
  return {
    g,
    /** A new gate for the transfers started from now on. */
    regate: () => (g = gate()),
    backend,
    relay,
    connector,
    procs,
    stateDir,
    port,
    ca,
    origin,
    agent,
  };
}

/** How a new TCP connection to the port ends: 'connected' or the error code. */
function connectResult(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

/** The relay's exit: its code and when it happened. */
function exitOf(p: Proc): Promise<{ code: number | null; at: number }> {
  return p.exited.then((code) => ({ code, at: performance.now() }));
}

t.test('SIGTERM under load', async (t) => {
  const env = await setup(t, '30s');
  const { backend, port, ca, origin, agent, stateDir } = env;
  const call = (p: string, opts: Parameters<typeof request>[1] = {}) =>
    request(`${origin}${p}`, { dispatcher: agent, ...opts });

  await t.test('connector: finishes its in-flight transfer, then exits 0', async (t) => {
    const { g, connector } = env;
    const download = call('/big?tag=cdl').then((r) => drain(r.body));
    await waitFor(() => (backend.progress.get('cdl') ?? 0) >= HALF, {
      timeoutMs: 20_000,
      what: 'the transfer half-way',
    });
    const exit = exitOf(connector);
    connector.child.kill('SIGTERM');
    await connector.waitMsg('connector draining', 10_000);
    t.equal(connector.child.exitCode, null, 'still running while the transfer is in flight');
    const releasedAt = performance.now();
    g.open();
    const d = await download;
    t.equal(d.error, undefined, 'not cut');
    t.equal(d.sha256, patternSha256(SIZE), 'sha256 intact');
    const { code, at } = await within(exit, 15_000, 'the connector to exit');
    t.equal(code, 0, 'exit status 0');
    t.comment(`connector exit ${Math.round(at - releasedAt)} ms after its transfer resumed`);
  });

  await t.test('relay: in-flight transfers finish, nothing new is taken, exit 0', async (t) => {
    const { relay } = env;
    const g = env.regate();
    const connector = new Proc(['connector', 'run', '--state-dir', stateDir]);
    env.procs.push(connector);
    await connector.waitFor((l) => l.msg === 'control channel open' && l['slot'] === 1);

    const downloads = ['dl1', 'dl2'].map((tag) => call(`/big?tag=${tag}`).then((r) => drain(r.body)));
    const upload = call('/upload?tag=up', {
      method: 'POST',
      body: heldUpload(g),
      headers: { 'content-length': String(SIZE) },
    }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as { length: number; sha256: string } }));
    const held = call('/held?tag=held').then(async (r) => ({
      status: r.statusCode,
      connection: r.headers['connection'],
      text: await r.body.text(),
    }));
    const loads = Array.from({ length: 4 }, () => loadClient(origin, ca));
    t.teardown(() => Promise.all(loads.map((l) => l.stop())));
    // A connection whose next request has begun (headers half sent) at TERM: not idle, so it stays open.
    const partial = tlsConnect({ port, host: '127.0.0.1', servername: 'files.test', ca });
    await new Promise<void>((resolve, reject) => partial.once('secureConnect', resolve).once('error', reject));
    partial.write(`GET /echo?late=1 HTTP/1.1\r\nHost: files.test:${port}\r\n`);
    let partialText = '';
    partial.on('data', (d: Buffer) => (partialText += d.toString('latin1')));
    const partialClosed = new Promise<void>((resolve) => partial.once('close', () => resolve()));
    partial.on('error', () => undefined);
    await waitFor(
      () =>
        ['dl1', 'dl2', 'up'].every((tag) => (backend.progress.get(tag) ?? 0) >= HALF) &&
        backend.progress.get('held') === 1 &&
        loads.every((l) => l.seen.filter((s) => s.status === 200).length >= 5),
      { timeoutMs: 30_000, what: 'the transfers half-way and the load running' },
    );

    const mark = relay.lines.length;
    const exit = exitOf(relay);
    const termAt = performance.now();
    relay.child.kill('SIGTERM');
    await relay.waitMsg('relay stopping', 10_000, mark);
    const stoppingSeenAt = performance.now();
    partial.write('\r\n');
    await within(
      Promise.all(loads.map((l) => l.done)),
      10_000,
      'every load client to lose its connection and fail to open another',
    );
    await within(partialClosed, 10_000, 'the relay to close the connection after its refusal');
    const head = partialText.split('\r\n\r\n')[0]!.toLowerCase();
    t.match(head, /^http\/1\.1 503 /, 'a request completed on an open connection after TERM is refused: 503');
    t.match(head, /\r\nconnection: close\r\n/, 'with Connection: close');
    t.match(head, /\r\nretry-after: 1\r\n/, 'and Retry-After');

    const after = loads.flatMap((l) => l.seen.filter((s) => s.startedAt >= stoppingSeenAt));
    t.same(
      after.filter((s) => s.status !== undefined && s.status !== 503),
      [],
      'no request sent after TERM was served',
    );
    t.same(
      after.filter((s) => s.status !== undefined && s.connection !== 'close'),
      [],
      'every answer after TERM carries Connection: close',
    );
    for (const l of loads) {
      // Idle at TERM: closed at once (a request racing that close sees a reset, never an answer);
      // busy: its answer closed it. Then no new connection.
      t.match(
        l.seen.at(-1)!.error,
        /^(ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET)$/,
        'the load client lost its connection',
      );
    }
    t.ok(
      loads.every((l) => l.seen.at(-1)!.error === 'ECONNREFUSED'),
      'every client trying to reconnect during the drain is refused',
    );
    t.equal(await connectResult(port), 'ECONNREFUSED', 'a new connection is refused during the drain');
    t.equal(relay.child.exitCode, null, 'the relay is still running: transfers are in flight');

    const releasedAt = performance.now();
    g.open();
    const [d1, d2] = await Promise.all(downloads);
    const expected = patternSha256(SIZE);
    for (const [i, d] of [d1!, d2!].entries()) {
      t.equal(d.error, undefined, `download ${i + 1} was not cut`);
      t.equal(d.bytes, SIZE, `download ${i + 1}: every byte`);
      t.equal(d.sha256, expected, `download ${i + 1}: sha256 intact`);
    }
    const up = await upload;
    t.equal(up.status, 200);
    t.same(up.body, { length: SIZE, sha256: expected }, 'the upload reached the backend intact');
    const h = await held;
    t.equal(h.status, 200, 'a request in flight before TERM, answered after it, is served');
    t.equal(h.text, 'held');
    t.equal(h.connection, 'close', 'its answer (headers not sent at TERM) carries Connection: close');

    const { code, at } = await within(exit, 20_000, 'the relay to exit');
    t.equal(code, 0, 'exit status 0');
    const drainMs = Math.round(at - termAt);
    const afterRelease = Math.round(at - releasedAt);
    t.ok(afterRelease < 10_000, `exit follows the in-flight work (${afterRelease} ms after the transfers resumed)`);
    t.ok(drainMs < 30_000, `the whole drain (${drainMs} ms) is below the 30 s deadline`);
    const drained = relay.lines.find((l) => l.msg === 'relay drained');
    t.equal(drained?.['cut'], 0, 'nothing was cut');
    t.comment(`relay drain: ${drainMs} ms from TERM to exit; ${afterRelease} ms after the transfers resumed`);
  });
});

t.test('a transfer that outlives limits.drainTimeout is cut at the deadline, exit 0', async (t) => {
  const { backend, relay, origin, agent } = await setup(t, '2s');
  const download = request(`${origin}/big?tag=late`, { dispatcher: agent }).then((r) => drain(r.body));
  await waitFor(() => (backend.progress.get('late') ?? 0) >= HALF, {
    timeoutMs: 20_000,
    what: 'the transfer half-way',
  });
  const exit = exitOf(relay);
  const termAt = performance.now();
  relay.child.kill('SIGTERM');
  const d = await within(download, 15_000, 'the transfer to end');
  t.ok(d.error, 'the transfer was cut, not completed');
  t.ok(d.bytes < SIZE, 'short of its length');
  const { code, at } = await within(exit, 15_000, 'the relay to exit');
  t.equal(code, 0, 'exit status 0');
  const drainMs = Math.round(at - termAt);
  t.ok(drainMs >= 1_900, `not before the deadline (${drainMs} ms)`);
  t.ok(drainMs < 6_000, `promptly after it (${drainMs} ms)`);
  const warned = relay.lines.find((l) => l.msg === 'drain deadline reached; cutting');
  t.equal(warned?.['in_flight'], 1, 'the cut is logged with what was in flight');
  t.comment(`drain with a 2 s deadline: ${drainMs} ms from TERM to exit`);
});
