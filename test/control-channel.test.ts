// The connector's side of the control channel against a stand-in relay (a real
// WebSocket server over TLS, certificate from a real relay CA): a relay that goes
// silent is given up after 2.5 heartbeats, while messages and pings keep the channel.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlChannel, type ChannelEnd } from '../src/connector/channel.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import type { RelayMessage } from '../src/protocol/connector-api.js';
import { testLogger } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';

const HEARTBEAT_MS = 200;

async function standInRelay(t: Test) {
  const ca = await loadOrCreateCa(tempDir(t));
  const cert = await ca.issueServerCertificate(['127.0.0.1'], 3_600_000);
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem });
  const wss = new WebSocketServer({ server });
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => sockets.push(ws));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const ws of sockets) ws.terminate();
    wss.close();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { caPem: ca.certPem, url, sockets };
}

function open(relay: { caPem: string; url: string }, received: RelayMessage[], log: Logger = testLogger()) {
  let opened!: () => void;
  const isOpen = new Promise<void>((resolve) => (opened = resolve));
  const channel = new ControlChannel(relay.url, { caPem: relay.caPem }, HEARTBEAT_MS, log, {
    onOpen: () => opened(),
    onMessage: (msg) => received.push(msg),
  });
  const started = Date.now();
  const ended = channel.run().then((end): { end: ChannelEnd; afterMs: number } => ({ end, afterMs: Date.now() - started }));
  return { channel, isOpen, ended };
}

t.test('a relay that goes silent is given up after 2.5 heartbeats', async (t) => {
  const relay = await standInRelay(t);
  const { isOpen, ended, channel } = open(relay, []);
  t.teardown(() => channel.close());
  await isOpen;
  const { end, afterMs } = await ended;
  t.equal(end.kind, 'closed', 'the channel ends as closed, so the supervisor reconnects');
  t.ok(afterMs >= 2.5 * HEARTBEAT_MS - 50 && afterMs < 2.5 * HEARTBEAT_MS + 1500, `ended after ${afterMs} ms (2.5 heartbeats = ${2.5 * HEARTBEAT_MS} ms)`);
});

t.test('messages and pings from the relay keep the channel open', async (t) => {
  const relay = await standInRelay(t);
  const received: RelayMessage[] = [];
  const { isOpen, ended, channel } = open(relay, received);
  let over = false;
  void ended.then(() => (over = true));
  await isOpen;
  const ws = relay.sockets[0]!;
  // Ten heartbeats long: a config announcement or a ping every half heartbeat, never a gap of 2.5.
  for (let i = 0; i < 20; i++) {
    if (i % 2) ws.ping();
    else ws.send(JSON.stringify({ type: 'config-changed', configVersion: String(i) }));
    await new Promise((r) => setTimeout(r, HEARTBEAT_MS / 2));
  }
  t.equal(over, false, 'still open after ten heartbeats of traffic');
  t.equal(received.length, 10, 'every message reached the handler');
  t.ok(channel.isOpen);
  // Then silence: the same timer that was restarted by each message now runs out.
  const { end, afterMs } = await ended;
  t.equal(end.kind, 'closed');
  t.ok(afterMs >= 20 * (HEARTBEAT_MS / 2), `ended only after the traffic stopped (${afterMs} ms)`);
});

t.test('closing the channel stops its timer (the process can exit)', async (t) => {
  const relay = await standInRelay(t);
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const { isOpen, ended, channel } = open(relay, [], log);
  await isOpen;
  channel.close();
  const { end } = await ended;
  t.equal(end.kind, 'closed');
  // A timer left running would fire 2.5 heartbeats on and report a dead relay.
  await new Promise((resolve) => setTimeout(resolve, 3 * HEARTBEAT_MS));
  t.same(warnings.filter((l) => l.includes('no heartbeat')), [], 'no dead-relay report after the close');
});
