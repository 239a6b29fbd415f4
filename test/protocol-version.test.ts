// The relay<->connector protocol version, both directions, with hostile values: the
// relay refuses a connector it does not speak (426, naming both versions and which side
// to upgrade; 400 for a header that is not one integer), the connector refuses a relay
// it does not speak (and its supervisor stops), and a peer without the header (today's
// deployments) counts as version 1.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import path from 'node:path';
import t, { type Test } from 'tap';
import { WebSocketServer, type WebSocket } from 'ws';
import { ControlChannel, type ChannelEnd } from '../src/connector/channel.js';
import { Connector } from '../src/connector/connector.js';
import { RelayClient } from '../src/connector/relay-client.js';
import { writeNewState } from '../src/connector/state.js';
import { loadOrCreateCa, type RelayCa } from '../src/crypto/ca.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import {
  API,
  PROTOCOL_HEADER,
  PROTOCOL_SUPPORTED,
  PROTOCOL_VERSION,
  parsePeerProtocol,
} from '../src/protocol/connector-api.js';
import { capturingLogger, startHarness, testLogger } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';

/** Header values a stranger can send, and what each must mean. */
const HOSTILE: [string, string | string[] | undefined, 'ok' | 'unsupported' | 'invalid'][] = [
  ['missing (a peer from before the header)', undefined, 'ok'],
  ['the current version', String(PROTOCOL_VERSION), 'ok'],
  ['surrounding blanks', ` ${PROTOCOL_VERSION} `, 'ok'],
  ['a newer version', String(PROTOCOL_SUPPORTED.max + 1), 'unsupported'],
  ['version 0', '0', 'unsupported'],
  ['the largest accepted number', '999999', 'unsupported'],
  ['huge', '99999999999999999999999', 'invalid'],
  ['negative', '-1', 'invalid'],
  ['plus sign', '+1', 'invalid'],
  ['non-numeric', 'abc', 'invalid'],
  ['decimal', '1.0', 'invalid'],
  ['exponent', '1e0', 'invalid'],
  ['hexadecimal', '0x1', 'invalid'],
  ['empty', '', 'invalid'],
  ['repeated, joined by Node', '1, 1', 'invalid'],
  ['repeated, as an array', ['1', '1'], 'invalid'],
  ['a list of versions', '1,2', 'invalid'],
  ['unicode digits', '١', 'invalid'],
];

t.test('parsePeerProtocol: exactly one plain integer; missing is version 1', async (t) => {
  for (const [name, raw, want] of HOSTILE) {
    const p = parsePeerProtocol(raw);
    const got = !p.ok ? 'invalid' : p.supported ? 'ok' : 'unsupported';
    t.equal(got, want, name);
  }
  const missing = parsePeerProtocol(undefined);
  t.same(missing, { ok: true, version: 1, supported: true }, 'no header = version 1');
});

/** One raw HTTP/1.1 request over TLS, so headers go on the wire exactly as given (repeated ones too). */
async function raw(
  port: number,
  caPem: string,
  head: string,
): Promise<{ status: number; headers: string; body: string }> {
  const sock = tlsConnect({ host: '127.0.0.1', port, ca: caPem, servername: undefined });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    sock.once('secureConnect', () => sock.end(`${head}\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.once('end', () => resolve());
    sock.once('error', reject);
  });
  const text = Buffer.concat(chunks).toString('utf8');
  const [headers = '', body = ''] = text.split('\r\n\r\n');
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1]), headers: headers.toLowerCase(), body };
}

t.test('the relay refuses a connector it does not speak, and names its own version', async (t) => {
  const h = await startHarness(t);
  const port = Number(new URL(h.apiUrl).port);
  const ca = h.relay.ca.certPem;
  const line = (v: string) => `${PROTOCOL_HEADER}: ${v}\r\n`;
  for (const [name, value, want] of HOSTILE) {
    const values = value === undefined ? [] : Array.isArray(value) ? value : [value];
    const r = await raw(port, ca, `GET ${API.identity} HTTP/1.1\r\n${values.map(line).join('')}`.replace(/\r\n$/, ''));
    t.match(r.headers, `${PROTOCOL_HEADER}: ${PROTOCOL_VERSION}`, `${name}: the answer names the relay's version`);
    if (want === 'ok') t.equal(r.status, 200, `${name}: served`);
    else if (want === 'unsupported') {
      t.equal(r.status, 426, `${name}: 426`);
      const err = (JSON.parse(r.body) as { error: { code: string; message: string } }).error;
      t.equal(err.code, 'ERR_PROTOCOL_VERSION', `${name}: ERR_PROTOCOL_VERSION`);
      t.match(err.message, /upgrade the (relay|connector)/, `${name}: says which side to upgrade`);
    } else {
      t.equal(r.status, 400, `${name}: 400`);
      t.equal(
        (JSON.parse(r.body) as { error: { code: string } }).error.code,
        'ERR_BAD_REQUEST',
        `${name}: bad request`,
      );
    }
  }

  // The control channel's upgrade is checked before anything else (no certificate needed to be told).
  const upgrade = (v: string) =>
    raw(
      port,
      ca,
      `GET ${API.channel} HTTP/1.1\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${line(v)}`.replace(
        /\r\n$/,
        '',
      ),
    );
  const newer = await upgrade(String(PROTOCOL_SUPPORTED.max + 1));
  t.equal(newer.status, 426, 'channel from a newer connector: 426');
  t.match(newer.headers, `${PROTOCOL_HEADER}: ${PROTOCOL_VERSION}`, 'naming the relay version');
  t.equal((JSON.parse(newer.body) as { error: { code: string } }).error.code, 'ERR_PROTOCOL_VERSION');
  t.equal((await upgrade('1, 1')).status, 400, 'channel with a repeated header: 400');
  t.equal((await upgrade('-7')).status, 400, 'channel with a negative version: 400');

  // Today's connector, through its real client, is served.
  const addFine = await h.addConnector();
  t.ok(addFine.openChannels() > 0, 'a connector of this version opens its channels');
});

interface StandIn {
  url: string;
  caPem: string;
  ca: RelayCa;
  /** What the stand-in relay answers in PROTOCOL_HEADER (undefined: nothing). */
  answer: { version: string | string[] | undefined; refuse426: boolean };
  sockets: WebSocket[];
}

/** A relay of another version: config pulls and channel upgrades answer with `answer`. */
async function standInRelay(t: Test): Promise<StandIn> {
  const ca = await loadOrCreateCa(tempDir(t));
  const cert = await ca.issueServerCertificate(['127.0.0.1'], 3_600_000);
  const answer: StandIn['answer'] = { version: String(PROTOCOL_SUPPORTED.max + 1), refuse426: false };
  const sockets: WebSocket[] = [];
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    req.resume();
    if (answer.version !== undefined) res.setHeader(PROTOCOL_HEADER, answer.version);
    if (answer.refuse426) {
      res.writeHead(426, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: {
            code: 'ERR_PROTOCOL_VERSION',
            message: 'this relay speaks 2: upgrade the connector',
            requestId: 'r',
          },
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ connectorId: 'x', group: 'default', version: 'v', apps: [], replicas: [] }));
  });
  const wss = new WebSocketServer({ server });
  wss.on('headers', (headers) => {
    const v = answer.version;
    for (const one of v === undefined ? [] : Array.isArray(v) ? v : [v]) headers.push(`${PROTOCOL_HEADER}: ${one}`);
  });
  wss.on('connection', (ws) => sockets.push(ws));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const ws of sockets) ws.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    caPem: ca.certPem,
    ca,
    answer,
    sockets,
  };
}

t.test('the connector refuses a relay it does not speak', async (t) => {
  const relay = await standInRelay(t);
  const client = new RelayClient(relay.url, { caPem: relay.caPem });
  t.teardown(() => client.close());
  const pull = () =>
    client.fetchConfig().then(
      () => 'ok',
      (err: unknown) => (err as { code?: string }).code,
    );
  // Node's server cannot put non-Latin-1 text in a header; the other values go on the wire.
  for (const [name, value, want] of HOSTILE.filter(([, v]) => [...String(v)].every((ch) => ch.charCodeAt(0) < 256))) {
    relay.answer.version = value;
    t.equal(await pull(), want === 'ok' ? 'ok' : 'ERR_PROTOCOL_VERSION', `config pull, relay answering ${name}`);
  }
  relay.answer.version = String(PROTOCOL_VERSION);
  relay.answer.refuse426 = true;
  t.equal(await pull(), 'ERR_PROTOCOL_VERSION', 'a relay refusing this connector with 426 keeps the code');
  relay.answer.refuse426 = false;

  // The control channel checks the relay's version on the 101.
  const channel = async (version: string | string[] | undefined): Promise<ChannelEnd> => {
    relay.answer.version = version;
    const ch = new ControlChannel(relay.url, { caPem: relay.caPem }, 15_000, testLogger(), {
      onOpen: () => ch.close(),
      onMessage: () => undefined,
    });
    return ch.run();
  };
  for (const bad of [String(PROTOCOL_SUPPORTED.max + 1), 'abc', '-1', '99999999', ['1', '2']]) {
    const end = await channel(bad);
    t.equal(
      end.kind === 'fatal' ? end.error.code : end.kind,
      'ERR_PROTOCOL_VERSION',
      `channel: relay answering ${JSON.stringify(bad)}`,
    );
  }
  const fine = await channel(undefined);
  t.equal(fine.kind, 'closed', 'channel: a relay without the header (version 1) opens');
});

t.test('a connector whose relay speaks another protocol stops with one clear line', async (t) => {
  const relay = await standInRelay(t);
  const stateDir = path.join(tempDir(t), 'state');
  const { keyPem, csrPem } = await createKeyAndCsr('c');
  const id = '6f1c2a4e-0000-4000-8000-0000000000bb';
  const issued = await relay.ca.signConnectorCsr(csrPem, { connectorId: id, lifetimeMs: 3_600_000 });
  const now = new Date().toISOString();
  writeNewState(stateDir, {
    relayUrl: relay.url,
    connectorId: id,
    name: 'edge',
    group: 'default',
    registeredAt: now,
    certificateIssuedAt: now,
    serial: issued.serial,
    keyPem,
    certPem: issued.certPem,
    caPem: relay.caPem,
  });
  relay.answer.version = String(PROTOCOL_SUPPORTED.max + 1);
  const { log, lines } = capturingLogger();
  const c = new Connector({ stateDir, log });
  t.teardown(() => c.close(0));
  await t.rejects(c.start(), { code: 'ERR_PROTOCOL_VERSION' }, 'start fails: waiting will not fix it');
  await t.rejects(c.done, { code: 'ERR_PROTOCOL_VERSION' }, 'the connector is stopped (the CLI exits non-zero)');
  const errors = lines.filter((l) => Number(l['level']) === 50);
  t.equal(errors.length, 1, 'one error line');
  t.match(
    String(errors[0]?.['msg']),
    new RegExp(`speaks protocol version ${PROTOCOL_SUPPORTED.max + 1}.*upgrade the connector`),
    'naming both versions and the remedy',
  );
});
