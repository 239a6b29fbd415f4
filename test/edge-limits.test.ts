// Abuse limits at the edge, through the running relay: token-bucket rate limits
// per address and per app (429 + Retry-After, bounded counts under a burst),
// per-app body limits (413, declared or chunked), trusted proxies, and the
// connection cap — all before any work reaches a connector.
import t from 'tap';
import { createServer } from 'node:http';
import { connect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startHarness } from './helpers/harness.js';
import { waitFor } from './helpers/wait.js';

t.test('edge limits', async (t) => {
  let hits = 0;
  let lastXff: string | undefined;
  const backend = createServer((req, res) => {
    hits++;
    lastXff = req.headers['x-forwarded-for'] as string | undefined;
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const port = (backend.address() as { port: number }).port;
  const app = (name: string, extra = '') =>
    `  - { name: ${name}, externalUrl: "https://${name}.test/", internalUrl: "http://127.0.0.1:${port}/", preauth: passthrough${extra} }\n`;
  const h = await startHarness(t, {
    yaml: () => `limits:
  perIp: { ratePerSec: 2, burst: 10 }
  perApp: { ratePerSec: 1, burst: 15 }
  connectionsPerIp: 20
  trustedProxies: ["127.0.0.3/32"]
apps:
${app('a')}${app('b')}${app('small', ', maxBodyBytes: 1KiB')}`,
  });
  await h.addConnector();
  const get = async (host: string, dispatcher = h.client, headers: Record<string, string> = {}) => {
    const r = await request(h.url(host, '/'), { dispatcher, headers });
    await r.body.dump();
    return r;
  };

  await t.test('per address: a burst is served up to the bucket, then 429 with Retry-After', async (t) => {
    const before = hits;
    const results = [];
    for (let i = 0; i < 30; i++) results.push(await get('a.test'));
    const ok = results.filter((r) => r.statusCode === 200).length;
    const limited = results.filter((r) => r.statusCode === 429);
    t.ok(ok >= 10 && ok <= 11, `about the burst served (${ok})`);
    t.equal(ok + limited.length, 30);
    t.ok(
      limited.every((r) => Number(r.headers['retry-after']) >= 1),
      'Retry-After on every 429',
    );
    t.equal(hits - before, ok, 'refused requests never reached the backend');
  });

  await t.test('a trusted proxy passes the real client address; others cannot', async (t) => {
    const viaProxy = h.clientFrom('127.0.0.3');
    // 127.0.0.1 is exhausted; a client behind the trusted proxy has its own bucket.
    const r = await get('b.test', viaProxy, { 'x-forwarded-for': '203.0.113.7' });
    t.equal(r.statusCode, 200);
    t.equal(lastXff, '203.0.113.7, 127.0.0.3', 'the backend sees the vetted chain plus the proxy');
    const spoof = h.clientFrom('127.0.0.4');
    const s = await get('b.test', spoof, { 'x-forwarded-for': '198.51.100.1' });
    t.equal(s.statusCode, 200);
    t.equal(lastXff, '127.0.0.4', 'an untrusted peer cannot inject X-Forwarded-For');
  });

  await t.test('per app: the app bucket runs dry for every client', async (t) => {
    const results: number[] = [];
    for (let i = 0; i < 20; i++) results.push((await get('b.test', h.clientFrom(`127.0.1.${i + 1}`))).statusCode);
    t.ok(results.includes(429), 'the app limit applies across addresses');
  });

  await t.test('per-app body limit: declared length and chunked bodies', async (t) => {
    const c = h.clientFrom('127.0.2.1');
    const declared = await request(h.url('small.test', '/up'), {
      dispatcher: c,
      method: 'POST',
      body: Buffer.alloc(2048),
      headers: { accept: 'application/json' },
    });
    t.equal(declared.statusCode, 413);
    t.equal(((await declared.body.json()) as { error: { code: string } }).error.code, 'ERR_BODY_TOO_LARGE');
    const chunked = await request(h.url('small.test', '/up'), {
      dispatcher: h.clientFrom('127.0.2.2'),
      method: 'POST',
      headers: { accept: 'application/json' },
      body: Readable.from(
        (function* () {
          for (let i = 0; i < 8; i++) yield Buffer.alloc(512);
        })(),
      ),
    });
    t.equal(chunked.statusCode, 413, 'a chunked body is cut at the limit');
    await chunked.body.dump();
    const fine = await request(h.url('small.test', '/up'), {
      dispatcher: h.clientFrom('127.0.2.3'),
      method: 'POST',
      body: Buffer.alloc(1000),
    });
    t.equal(fine.statusCode, 200, 'within the limit');
    await fine.body.dump();
  });

  await t.test('connections beyond the cap are closed at once', async (t) => {
    const sockets = await Promise.all(
      Array.from(
        { length: 25 },
        () =>
          new Promise<{ ok: boolean; s: ReturnType<typeof connect> }>((resolve) => {
            const raw = netConnect({ host: '127.0.0.1', port: h.publicPort, localAddress: '127.0.0.9' });
            const s = connect({ socket: raw, servername: 'a.test', rejectUnauthorized: false });
            s.once('secureConnect', () => resolve({ ok: true, s }));
            s.once('error', () => resolve({ ok: false, s }));
            s.once('close', () => resolve({ ok: false, s }));
          }),
      ),
    );
    const open = sockets.filter((x) => x.ok && !x.s.destroyed).length;
    t.ok(open <= 20, `at most the cap stays open (${open})`);
    t.ok(
      sockets.some((x) => !x.ok),
      'the rest were refused',
    );
    for (const x of sockets) x.s.destroy();
  });
});

t.test('a slow body is cut after bodyIdleTimeout, the backend never sees it complete', async (t) => {
  let completed = 0;
  let aborted = 0;
  let closed = 0;
  const backend = createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => {
      completed++;
      res.end('ok');
    });
    req.on('aborted', () => aborted++);
    req.on('close', () => closed++);
    res.on('close', () => undefined);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const port = (backend.address() as { port: number }).port;
  const h = await startHarness(t, {
    yaml: () => `limits: { perIp: false, bodyIdleTimeout: 1s }
apps:
  - { name: up, externalUrl: "https://up.test/", internalUrl: "http://127.0.0.1:${port}/", preauth: passthrough }
`,
  });
  await h.addConnector();
  const started = Date.now();
  const answer = await new Promise<string>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: h.publicPort, servername: 'up.test', ca: h.relay.ca.certPem }, () => {
      s.write('POST /slow HTTP/1.1\r\nHost: up.test\r\nContent-Length: 1000\r\n\r\n0123456789');
    });
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
  t.match(answer, /^HTTP\/1\.1 408/, 'answered 408');
  t.ok(Date.now() - started < 5000, `within a few seconds (${Date.now() - started} ms)`);
  // Once the backend's request is torn down, its body can no longer complete.
  await waitFor(() => closed > 0, { what: 'the backend request to be torn down' });
  t.equal(completed, 0, 'the backend never saw a complete body');
});
