// HTTP/2 abuse against the public listener, with a raw client writing frames by hand
// (helpers/h2-raw.ts): rapid reset, CONTINUATION floods, an HPACK bomb, streams beyond
// the concurrency limit, a client that never opens its flow-control window, idle sessions
// and the per-address connection cap. Each case asserts what the relay sends back (GOAWAY
// and RST_STREAM codes) and what got through to the backend.
import t from 'tap';
import { startHarness } from './helpers/harness.js';
import { startBackend } from './helpers/backend.js';
import {
  ERR,
  FRAME,
  RawH2,
  SETTING,
  frame,
  hpackIndexed,
  hpackLiterals,
  hpackRefs,
  requestBlock,
} from './helpers/h2-raw.js';
import { h2Request, h2Session, closeSession } from './helpers/h2-client.js';
import { waitFor } from './helpers/wait.js';
import { HTTP2_MAX_CONCURRENT_STREAMS, HTTP2_RESET_BURST } from '../src/relay/edge/public-listener.js';

const MiB = 1024 * 1024;

t.test('HTTP/2 abuse on the public listener', { timeout: 120_000 }, async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const h = await startHarness(t, {
    yaml: () => `limits:
  perIp: false
  connectionsPerIp: 12
  idleTimeout: 1s
  maxHeaderBytes: 16KiB
apps:
  - { name: open, externalUrl: "https://open.test/", internalUrl: "${backend.origin}/", preauth: passthrough }
`,
  });
  await h.addConnector();
  const ca = h.relay.ca.certPem;
  const authority = `open.test:${h.publicPort}`;
  const raw = async (o: { settings?: [number, number][]; ackSettings?: boolean } = {}) => {
    const c = await RawH2.connect({ port: h.publicPort, host: 'open.test', ca, ...o });
    t.teardown(() => c.close());
    return c;
  };
  /** A normal client still gets an answer: the relay is up and serving. */
  const stillServing = async (t: { equal(a: unknown, b: unknown, m: string): void }) => {
    const s = h2Session({ ca, port: h.publicPort, host: 'open.test' });
    const r = await h2Request(s, { ':method': 'GET', ':path': '/echo?after' });
    await closeSession(s);
    t.equal(r.status, 200, 'another client is served afterwards');
  };

  await t.test('the raw client is understood: one GET answered 200', async (t) => {
    const c = await raw();
    c.write(c.headers(1, requestBlock(authority, '/echo?raw')));
    await c.until(() => c.streams.get(1)?.ended, 10_000, 'the answer');
    t.equal(c.streams.get(1)?.status, 200);
    t.ok(c.streams.get(1)!.dataBytes > 0, 'with a body');
    t.equal(
      c.serverSettings.get(SETTING.MAX_CONCURRENT_STREAMS),
      HTTP2_MAX_CONCURRENT_STREAMS,
      'streams limit advertised',
    );
    t.equal(c.serverSettings.get(SETTING.MAX_HEADER_LIST_SIZE), 16 * 1024, 'header list limit = limits.maxHeaderBytes');
    c.close();
  });

  await t.test('rapid reset: HEADERS + RST_STREAM by the thousand', async (t) => {
    const before = backend.hits('echo');
    const c = await raw();
    const total = 5000;
    let sent = 0;
    // 50 pairs per write: each write reaches the relay as one read or a few.
    for (let id = 1; sent < total && !c.closed && !c.goaway;) {
      const batch: Buffer[] = [];
      for (let i = 0; i < 50; i++, id += 2, sent++)
        batch.push(c.headers(id, requestBlock(authority, `/echo?rr=${id}`)), RawH2.rst(id, ERR.CANCEL));
      c.write(Buffer.concat(batch));
      await new Promise((r) => setTimeout(r, 1));
    }
    await c.ended(10_000);
    t.ok(c.goaway, 'the relay sent GOAWAY');
    t.equal(c.goaway?.code, ERR.ENHANCE_YOUR_CALM, 'ENHANCE_YOUR_CALM');
    t.ok(sent < total, `the session ended before the flood did (${sent} of ${total} pairs sent)`);
    // Whatever was forwarded before a reset arrived is bounded by the reset limit.
    const through = backend.hits('echo') - before;
    t.ok(through <= HTTP2_RESET_BURST, `few reset requests reached the backend (${through})`);
    t.comment(`rapid reset: ${sent} HEADERS+RST pairs sent, ${through} reached the backend, GOAWAY ${c.goaway?.code}`);
    await stillServing(t);
  });

  await t.test('rapid reset across reads: requests forwarded before their reset stay bounded', async (t) => {
    const before = backend.hits('slow');
    const c = await raw();
    let opened = 0;
    // HEADERS in one write, their RST_STREAMs in the next, once the relay has had time to forward them.
    for (let id = 1; opened < 5000 && !c.closed && !c.goaway;) {
      const first = id;
      const heads: Buffer[] = [];
      for (let i = 0; i < 20; i++, id += 2, opened++)
        heads.push(c.headers(id, requestBlock(authority, `/slow?ms=2000&x=${id}`)));
      c.write(Buffer.concat(heads));
      await new Promise((r) => setTimeout(r, 5));
      const rsts: Buffer[] = [];
      for (let s = first; s < id; s += 2) rsts.push(RawH2.rst(s, ERR.CANCEL));
      c.write(Buffer.concat(rsts));
      await new Promise((r) => setTimeout(r, 1));
    }
    await c.ended(10_000);
    const through = backend.hits('slow') - before;
    t.comment(
      `rapid reset across reads: ${opened} streams opened, ${through} reached the backend, GOAWAY ${c.goaway?.code}`,
    );
    t.equal(c.goaway?.code, ERR.ENHANCE_YOUR_CALM, 'GOAWAY ENHANCE_YOUR_CALM');
    t.ok(opened < 5000, `the session ended early (${opened} streams)`);
    t.ok(
      through <= HTTP2_RESET_BURST + HTTP2_MAX_CONCURRENT_STREAMS,
      `requests reaching the backend bounded by the reset burst (${through})`,
    );
    await stillServing(t);
  });

  await t.test('rapid reset in one read: no request reaches a connector', async (t) => {
    const before = backend.hits('echo');
    const c = await raw();
    const batch: Buffer[] = [];
    for (let i = 0, id = 1; i < 100; i++, id += 2)
      batch.push(c.headers(id, requestBlock(authority, `/echo?one=${id}`)), RawH2.rst(id, ERR.CANCEL));
    c.write(Buffer.concat(batch));
    // A request after them, so we know the relay has read the lot.
    c.write(c.headers(201, requestBlock(authority, '/echo?marker')));
    await c.until(() => c.streams.get(201)?.ended, 10_000, 'the marker request');
    t.equal(c.streams.get(201)?.status, 200);
    t.equal(backend.hits('echo') - before, 1, 'only the marker reached the backend');
    c.close();
  });

  await t.test('CONTINUATION flood without END_HEADERS: connection closed, little read', async (t) => {
    const c = await raw();
    c.write(c.headers(1, requestBlock(authority, '/echo?cont'), { endHeaders: false }));
    const empty = frame(FRAME.CONTINUATION, 0, 1);
    let frames = 0;
    while (!c.closed && !c.goaway && frames < 200_000) {
      const burst: Buffer[] = [];
      for (let i = 0; i < 1000; i++) burst.push(empty);
      frames += 1000;
      if (!c.write(Buffer.concat(burst))) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setImmediate(r));
    }
    await c.ended(5000);
    t.ok(c.goaway, 'GOAWAY');
    t.comment(`CONTINUATION flood (empty frames): closed after ${frames} frames written, GOAWAY ${c.goaway?.code}`);
    t.ok(frames < 200_000, 'closed long before the flood ended');

    const d = await raw();
    d.write(d.headers(1, requestBlock(authority, '/echo?cont2'), { endHeaders: false }));
    const field = hpackLiterals([['x-filler', 'f'.repeat(1000)]]);
    let bytes = 0;
    while (!d.closed && bytes < 64 * MiB) {
      d.write(frame(FRAME.CONTINUATION, 0, 1, field));
      bytes += field.length;
      if (bytes % (256 * 1024) < field.length) await new Promise((r) => setImmediate(r));
    }
    await d.ended(5000);
    t.ok(bytes < 64 * MiB, `a header block growing past the limit is cut (${Math.round(bytes / 1024)} KiB written)`);
    t.comment(`CONTINUATION flood (1 KB fields): closed after ${bytes} bytes, GOAWAY ${d.goaway?.code}`);
    t.notOk(
      backend.seen.some((r) => r.url.includes('cont')),
      'neither unfinished request reached the backend',
    );
    await stillServing(t);
  });

  await t.test('HPACK bomb: a small block decoding past maxHeaderBytes is refused', async (t) => {
    const before = backend.seen.length;
    const c = await raw();
    // One 4 KB entry in the dynamic table, then 1000 one-byte references: 4 MB decoded from 5 KB.
    const block = Buffer.concat([
      requestBlock(authority, '/echo?bomb'),
      hpackIndexed('x-bomb', 'b'.repeat(4000)),
      hpackRefs(1000),
    ]);
    t.ok(block.length < 6000, `the block is small (${block.length} bytes)`);
    c.write(c.headers(1, block));
    await c.until(
      () => c.streams.get(1)?.rst !== undefined || c.streams.get(1)?.ended || c.goaway || c.closed,
      5000,
      'the refusal',
    );
    const s = c.streams.get(1);
    t.comment(`HPACK bomb: stream 1 status ${s?.status} rst ${s?.rst}, GOAWAY ${c.goaway?.code}`);
    t.ok(
      s?.rst === ERR.ENHANCE_YOUR_CALM ||
        s?.status === 431 ||
        c.goaway?.code === ERR.COMPRESSION_ERROR ||
        c.goaway?.code === ERR.ENHANCE_YOUR_CALM,
      'refused: RST_STREAM ENHANCE_YOUR_CALM, 431 or GOAWAY',
    );
    t.equal(backend.seen.length - before, 0, 'nothing reached the backend');
    c.close();
    await stillServing(t);
  });

  await t.test('streams beyond SETTINGS_MAX_CONCURRENT_STREAMS are refused', async (t) => {
    const before = backend.hits('slow');
    // Without acknowledging the relay's SETTINGS: nghttp2 refuses each extra stream (REFUSED_STREAM).
    const c = await raw({ ackSettings: false });
    const n = HTTP2_MAX_CONCURRENT_STREAMS + 10;
    const batch: Buffer[] = [];
    for (let i = 0, id = 1; i < n; i++, id += 2)
      batch.push(c.headers(id, requestBlock(authority, `/slow?ms=3000&s=${id}`)));
    c.write(Buffer.concat(batch));
    await c.until(
      () => [...c.streams.values()].filter((s) => s.rst !== undefined).length >= 10 || c.goaway,
      10_000,
      'refusals',
    );
    const refused = [...c.streams.entries()].filter(([, s]) => s.rst === ERR.REFUSED_STREAM).map(([id]) => id);
    t.comment(`concurrent streams: ${refused.length} refused, GOAWAY ${c.goaway?.code}`);
    t.equal(refused.length, 10, 'exactly the streams beyond the limit');
    t.ok(
      refused.every((id) => id > 2 * HTTP2_MAX_CONCURRENT_STREAMS),
      'the last ones',
    );
    await waitFor(() => backend.hits('slow') - before >= HTTP2_MAX_CONCURRENT_STREAMS, { timeoutMs: 10_000 });
    t.equal(backend.hits('slow') - before, HTTP2_MAX_CONCURRENT_STREAMS, 'the backend saw the admitted streams only');
    c.close();

    // A client that acknowledged the limit and exceeds it anyway breaks the protocol (RFC 9113
    // §5.1.2): nghttp2 fails the session (PROTOCOL_ERROR) and the connection is closed.
    const before2 = backend.hits('slow');
    const d = await raw();
    await d.until(() => d.serverSettings.size > 0 || undefined, 5000, 'the SETTINGS');
    await new Promise((r) => setTimeout(r, 50)); // our ACK is read before the streams
    const batch2: Buffer[] = [];
    for (let i = 0, id = 1; i < n; i++, id += 2)
      batch2.push(d.headers(id, requestBlock(authority, `/slow?ms=3000&d=${id}`)));
    d.write(Buffer.concat(batch2));
    await d.ended(10_000);
    const answered = [...d.streams.values()].filter((s) => s.status !== undefined).length;
    t.comment(
      `concurrent streams after SETTINGS ACK: connection closed, GOAWAY ${d.goaway?.code}, ${answered} answered`,
    );
    t.equal(answered, 0, 'the connection is closed, nothing answered');
    await new Promise((r) => setTimeout(r, 300));
    t.equal(backend.hits('slow') - before2, 0, 'the streams of the failed session never reached the backend');
    d.close();
  });

  await t.test('a client that never opens its window: the backend is held back, not buffered', async (t) => {
    // INITIAL_WINDOW_SIZE 0: the relay may send headers but no DATA until the client says so.
    const c = await raw({ settings: [[SETTING.INITIAL_WINDOW_SIZE, 0]] });
    const n = 512 * MiB;
    c.write(c.headers(1, requestBlock(authority, `/bytes?n=${n}&tag=zw`)));
    await c.until(() => c.streams.get(1)?.status, 10_000, 'the response headers');
    t.equal(c.streams.get(1)?.status, 200);
    // The backend writes until the buffers on the way are full, then stops.
    let last = -1;
    const held = await waitFor(
      () => {
        const w = backend.written('zw');
        const still = w > 0 && w === last;
        last = w;
        return still ? w : 0;
      },
      { timeoutMs: 20_000, everyMs: 400, what: 'the backend to stop writing' },
    );
    t.equal(c.streams.get(1)?.dataBytes, 0, 'no DATA beyond the zero window');
    t.ok(held < 64 * MiB, `the backend is held back after ${Math.round(held / MiB)} MiB of ${n / MiB} MiB`);
    t.comment(`zero window: backend held at ${held} bytes`);
    // Opening the window lets bytes flow; resetting the stream cancels the backend response.
    c.write(Buffer.concat([RawH2.windowUpdate(1, 1 * MiB)]));
    await c.until(() => (c.streams.get(1)?.dataBytes ?? 0) > 0, 10_000, 'DATA after WINDOW_UPDATE');
    t.ok((c.streams.get(1)?.dataBytes ?? 0) <= 1 * MiB, 'no more than the window');
    c.write(RawH2.rst(1, ERR.CANCEL));
    const ended = await backend.ended('zw', 10_000);
    t.equal(ended.finished, false, 'the backend response was cut when the client reset');
    c.close();
  });

  await t.test('an idle session gets GOAWAY after limits.idleTimeout', async (t) => {
    const c = await raw();
    const started = performance.now();
    await c.ended(10_000);
    const ms = performance.now() - started;
    t.equal(c.goaway?.code, ERR.NO_ERROR, 'a graceful GOAWAY');
    t.ok(ms >= 900 && ms < 6000, `after about 1 s (${Math.round(ms)} ms)`);
  });

  await t.test('the per-address connection cap counts HTTP/2 sessions', async (t) => {
    const open: RawH2[] = [];
    for (let i = 0; i < 12; i++) open.push(await raw());
    await t.rejects(raw(), 'the 13th connection is refused before the handshake');
    for (const c of open) c.close();
    await waitFor(
      async () =>
        await raw()
          .then((c) => (c.close(), true))
          .catch(() => false),
      { timeoutMs: 5000 },
    );
  });
});
