// A request travels to the connector as one control message, capped at
// MAX_CONTROL_MESSAGE on both ends. With maxHeaderBytes raised to its 1 MiB
// maximum, headers that grow on the way (Latin-1 bytes become two UTF-8 bytes)
// would exceed it: the relay refuses such a request (431) instead of sending it,
// which would close the channel and fail every other request on it. Headers just
// under the cap still go through. The connector here speaks protocol 2 (binary
// frames: nothing is escaped); the JSON of protocol 1 is judged in queue-failover.
import t from 'tap';
import { request } from 'undici';
import { MAX_CONTROL_MESSAGE } from '../src/protocol/connector-api.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startHarness } from './helpers/harness.js';

t.test('oversized control messages are refused at the relay, channels stay up', async (t) => {
  // A backend that takes headers as large as the relay does, and says how long x-big was.
  const backend = createServer({ maxHeaderSize: 2 * 1024 * 1024 }, (req, res) => {
    req.resume();
    res.end(JSON.stringify({ length: String(req.headers['x-big'] ?? '').length }));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const origin = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const h = await startHarness(t, {
    yaml: () => `limits: { maxHeaderBytes: 1MiB, perIp: false }
apps:
  - { name: files, externalUrl: "https://files.test/", internalUrl: "${origin}/", preauth: passthrough }
`,
  });
  const c = await h.addConnector();
  const channels = () => h.relay.channels.all().length;
  const before = channels();
  t.ok(before > 0, `the connector has ${before} channel(s)`);

  const get = async (headers: Record<string, string>) => {
    const r = await request(h.url('files.test', '/echo'), {
      dispatcher: h.client,
      headers: { accept: 'application/json', ...headers },
    });
    const text = await r.body.text();
    return { status: r.statusCode, text };
  };

  // 600 KB of backslashes: 1.2 MB once JSON-escaped, but a binary frame carries them as they are.
  const backslashes = await get({ 'x-big': '\\'.repeat(600_000) });
  t.equal(backslashes.status, 200, 'backslashes are not escaped in a binary frame: forwarded');
  t.same(JSON.parse(backslashes.text), { length: 600_000 }, 'the backend received them whole');
  // 600 KB of Latin-1 letters (one byte each from the user): 1.2 MB as UTF-8 to the connector.
  const latin1 = await get({ 'x-big': 'é'.repeat(600_000) });
  t.equal(latin1.status, 431, 'Latin-1 bytes are counted as the UTF-8 they become');
  t.match(latin1.text, /ERR_HEADERS_TOO_LARGE/);
  // Just under the cap, plain ASCII: forwarded, and the backend sees it whole.
  // Above half the cap, so the exact (serialised) check decides, and below the cap.
  const fits = 'a'.repeat(Math.floor(MAX_CONTROL_MESSAGE * 0.7));
  const ok = await get({ 'x-big': fits });
  t.equal(ok.status, 200, 'a large header that fits is forwarded');
  t.same(JSON.parse(ok.text), { length: fits.length }, 'the backend received it whole');

  t.equal(channels(), before, 'no channel was closed');
  t.equal((await get({})).status, 200, 'the connector still serves');
  void c;
});
