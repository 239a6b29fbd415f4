// The connector's side of the control channel against a stand-in relay (a real
// WebSocket server over TLS, certificate from a real relay CA): a relay that goes
// silent is given up after 2.5 heartbeats, while messages and pings keep the channel,
// and a message outside the contract closes it as a protocol error. Time is a
// manual clock: the heartbeat is 15 s, as in production, and no test waits for it.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlChannel, type ChannelEnd } from '../src/connector/channel.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { decodeRequestFrame, encodeRequestFrame, encodeResponseFrame } from '../src/protocol/binary-frames.js';
import { CLOSE, PROTOCOL_HEADER, type QueuedRequest, type RelayMessage } from '../src/protocol/connector-api.js';
import { ManualClock } from './helpers/clock.js';
import { testLogger } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const HEARTBEAT_MS = 15_000;

/** protocol: what the relay names in its 101 (none: a relay from before the header, version 1). */
async function standInRelay(t: Test, protocol?: number) {
  const ca = await loadOrCreateCa(tempDir(t));
  const cert = await ca.issueServerCertificate(['127.0.0.1'], 3_600_000);
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem });
  const wss = new WebSocketServer({ server });
  if (protocol !== undefined) wss.on('headers', (headers) => headers.push(`${PROTOCOL_HEADER}: ${protocol}`));
  const sockets: WebSocket[] = [];
  const pongs: number[] = [];
  wss.on('connection', (ws) => {
    sockets.push(ws);
    ws.on('pong', () => pongs.push(sockets.indexOf(ws)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const ws of sockets) ws.terminate();
    wss.close();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { caPem: ca.certPem, url, sockets, pongs };
}

function open(relay: { caPem: string; url: string }, received: RelayMessage[], log: Logger = testLogger()) {
  const clock = new ManualClock();
  let opened!: () => void;
  const isOpen = new Promise<void>((resolve) => (opened = resolve));
  const channel = new ControlChannel(
    relay.url,
    { caPem: relay.caPem },
    HEARTBEAT_MS,
    log,
    {
      onOpen: () => opened(),
      onMessage: (msg) => received.push(msg),
    },
    clock,
  );
  const started = clock.now();
  let over = false;
  const ended = channel.run().then((end): { end: ChannelEnd; afterMs: number } => {
    over = true;
    return { end, afterMs: clock.now() - started };
  });
  return { channel, isOpen, ended, clock, isOver: () => over };
}

t.test('a relay that goes silent is given up after 2.5 heartbeats', async (t) => {
  const relay = await standInRelay(t);
  const { isOpen, ended, channel, clock, isOver } = open(relay, []);
  t.teardown(() => channel.close());
  await isOpen;
  await clock.advance(2.5 * HEARTBEAT_MS - 1);
  t.equal(isOver(), false, 'still open 1 ms before 2.5 heartbeats');
  await clock.advance(1);
  const { end, afterMs } = await ended;
  t.equal(end.kind, 'closed', 'the channel ends as closed, so the supervisor reconnects');
  t.equal(afterMs, 2.5 * HEARTBEAT_MS, 'ended exactly at 2.5 heartbeats');
});

t.test('messages and pings from the relay keep the channel open', async (t) => {
  const relay = await standInRelay(t);
  const received: RelayMessage[] = [];
  const { isOpen, ended, channel, clock, isOver } = open(relay, received);
  await isOpen;
  const ws = relay.sockets[0]!;
  // Ten heartbeats long: a config announcement or a ping every half heartbeat, never a gap of 2.5.
  for (let i = 0; i < 20; i++) {
    if (i % 2) {
      const n = relay.pongs.length;
      ws.ping();
      // ws answers a ping in the same turn it reports it, so the pong means the ping was seen.
      await waitFor(() => relay.pongs.length > n, { what: 'the pong' });
    } else {
      const n = received.length;
      ws.send(JSON.stringify({ type: 'config-changed', configVersion: String(i) }));
      await waitFor(() => received.length > n, { what: 'the message' });
    }
    await clock.advance(HEARTBEAT_MS / 2);
  }
  t.equal(isOver(), false, 'still open after ten heartbeats of traffic');
  t.equal(received.length, 10, 'every message reached the handler');
  t.ok(channel.isOpen);
  // Then silence (half a heartbeat of it already): the timer each message restarted runs out.
  await clock.advance(1.5 * HEARTBEAT_MS);
  t.equal(isOver(), false, 'two silent heartbeats are not enough');
  await clock.advance(HEARTBEAT_MS / 2);
  const { end, afterMs } = await ended;
  t.equal(end.kind, 'closed');
  t.equal(afterMs, 20 * (HEARTBEAT_MS / 2) + 2 * HEARTBEAT_MS, 'ended 2.5 heartbeats after the last traffic');
});

t.test('closing the channel stops its timer (the process can exit)', async (t) => {
  const relay = await standInRelay(t);
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const { isOpen, ended, channel, clock } = open(relay, [], log);
  await isOpen;
  channel.close();
  const { end } = await ended;
  t.equal(end.kind, 'closed');
  // A timer left running would fire 2.5 heartbeats on and report a dead relay.
  await clock.advance(3 * HEARTBEAT_MS);
  t.same(
    warnings.filter((l) => l.includes('no heartbeat')),
    [],
    'no dead-relay report after the close',
  );
});

t.test('a control message outside the contract closes the channel as a protocol error', async (t) => {
  const cases: [string, string | Buffer][] = [
    ['not JSON', '{"type": hello'],
    ['an unknown message type', JSON.stringify({ type: 'reboot' })],
    [
      'a request with a numeric id',
      JSON.stringify({
        type: 'request',
        id: 7,
        app: 'a',
        method: 'GET',
        target: '',
        headers: [],
        body: false,
        upgrade: false,
      }),
    ],
    ['a binary frame', Buffer.from([1, 2, 3])],
  ];
  for (const [what, data] of cases) {
    const relay = await standInRelay(t);
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const received: RelayMessage[] = [];
    const { isOpen, ended } = open(relay, received, log);
    await isOpen;
    relay.sockets[0]!.send(data);
    const { end, afterMs } = await ended;
    t.equal(end.kind, 'closed', `${what}: the channel ends as closed (the supervisor reconnects)`);
    t.equal(end.kind === 'closed' && end.code, CLOSE.protocol, `${what}: with the protocol-error close code`);
    t.equal(afterMs, 0, `${what}: at once, not by the dead-relay timer`);
    t.same(received, [], `${what}: nothing reached the handler`);
    t.ok(
      warnings.some((l) => l.includes('invalid control message')),
      `${what}: logged`,
    );
  }
});

t.test('protocol 2: requests arrive as binary frames; a malformed one closes the channel', async (t) => {
  const request: QueuedRequest = {
    type: 'request',
    id: 'a6f2c1de-0c1b-4d7e-9a41-6a3f1e2d9b70',
    app: 'wiki',
    method: 'POST',
    target: 'p\u00e9?x=1',
    headers: [
      ['content-type', 'text/plain'],
      ['x-v', '\u{1f600}'],
    ],
    body: true,
    upgrade: false,
  };
  {
    const relay = await standInRelay(t, 2);
    const received: RelayMessage[] = [];
    const { isOpen, channel } = open(relay, received);
    t.teardown(() => channel.close());
    await isOpen;
    relay.sockets[0]!.send(encodeRequestFrame(request));
    await waitFor(() => received.length === 1, { what: 'the request at the handler' });
    t.same(received[0], request, 'the binary request reached the handler intact');
  }
  const good = encodeRequestFrame(request);
  const cases: [string, Buffer | string][] = [
    ['a request frame cut short', good.subarray(0, good.length - 1)],
    ['a request frame with a byte more', Buffer.concat([good, Buffer.from([0])])],
    [
      'a response frame',
      encodeResponseFrame({ type: 'response', id: request.id, status: 200, headers: [] }, Buffer.alloc(0)),
    ],
    ['an unknown kind', Buffer.from([0x09, 0, 0])],
    ['an empty binary frame', Buffer.alloc(0)],
  ];
  t.notOk(decodeRequestFrame(good.subarray(0, good.length - 1)).ok, 'the cut frame is refused by the decoder too');
  for (const [what, data] of cases) {
    const relay = await standInRelay(t, 2);
    const received: RelayMessage[] = [];
    const { isOpen, ended } = open(relay, received);
    await isOpen;
    relay.sockets[0]!.send(data);
    const { end } = await ended;
    t.equal(end.kind === 'closed' && end.code, CLOSE.protocol, `${what}: closed with the protocol-error code`);
    t.same(received, [], `${what}: nothing reached the handler`);
  }
});
