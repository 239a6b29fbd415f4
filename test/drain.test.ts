// The request path's drain (relay shutdown): from drain() on, a request on an open
// connection is refused with 503, Retry-After and Connection: close, nothing pipelined
// behind it is answered, and an upgrade is dropped. The e2e test covers the relay.
import t, { type Test } from 'tap';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createLogger } from '../src/log.js';
import { createRequestPath, type RequestPathDeps } from '../src/relay/edge/request-path.js';
import { ManualClock } from './helpers/clock.js';

async function drainingServer(t: Test) {
  // Only the log is read once draining: every other step is skipped.
  const path = createRequestPath({ log: createLogger('silent') } as unknown as RequestPathDeps);
  const server = createServer();
  server.on('request', (req, res) => path.handleRequest(req, res));
  server.on('upgrade', (req, socket, head) => path.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  path.drain();
  return { path, port: (server.address() as AddressInfo).port };
}

/** Sends raw bytes on a new connection; resolves with everything read until the server closes it. */
async function raw(port: number, bytes: string): Promise<string> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write(bytes);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('error', () => undefined);
  await once(s, 'close');
  return text;
}

t.test('draining: 503, Retry-After, Connection: close; nothing after it answered', async (t) => {
  const { port } = await drainingServer(t);
  const text = await raw(
    port,
    'GET /a HTTP/1.1\r\nHost: a.test\r\nAccept: application/json\r\n\r\nGET /b HTTP/1.1\r\nHost: a.test\r\n\r\n',
  );
  const head = text.split('\r\n\r\n')[0]!.toLowerCase();
  t.match(head, /^http\/1\.1 503 /);
  t.match(head, /\r\nconnection: close\r\n/);
  t.match(head, /\r\nretry-after: 1\r\n/);
  t.match(text, /"code":"ERR_SHUTTING_DOWN"/, 'the stable code, in JSON when asked');
  t.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'the pipelined request behind it is not answered');
});

t.test('draining: a request with a body is refused without reading it', async (t) => {
  const { port } = await drainingServer(t);
  const text = await raw(port, 'POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\npartial');
  t.match(text, /^HTTP\/1\.1 503 /);
});

t.test('draining: an upgrade is dropped', async (t) => {
  const { port } = await drainingServer(t);
  const text = await raw(
    port,
    'GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  t.equal(text, '', 'closed without an answer');
});

t.test('idle(): at once with nothing in flight, whatever the clock', async (t) => {
  const { path } = await drainingServer(t);
  t.equal(path.inFlight(), 0);
  await path.idle(30_000, new ManualClock());
  t.pass('resolved without the clock moving');
});
