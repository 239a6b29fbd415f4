// Failover inside a group, at the queue: when a channel dies, a request the
// connector cannot have acted on moves to another channel of the group, and
// every other request fails with ERR_CONNECTOR_LOST; a request is never sent a
// second time once its connector started it. The rule as a table, then the queue
// and registry with stand-in WebSockets on a manual clock, then the rule end to
// end: a real relay, a hand-driven connector over mutual TLS, a real connector.
import t from 'tap';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request, type Dispatcher } from 'undici';
import WebSocket from 'ws';
import { parseRelayConfig, type AppConfig, type RelayConfig } from '../src/config/relay-config.js';
import { RelayClient, tlsOptions } from '../src/connector/relay-client.js';
import { silentLogger } from '../src/log.js';
import { API, VERSION_HEADER, requestPath, type QueuedRequest } from '../src/protocol/connector-api.js';
import { decodeRequestFrame } from '../src/protocol/binary-frames.js';
import { Channel, ChannelRegistry, type Delivery } from '../src/relay/connectors/channels.js';
import { RequestQueue, mayResend, type Exchange } from '../src/relay/connectors/queue.js';
import { startBackend, type EchoBody } from './helpers/backend.js';
import { ManualClock, turn } from './helpers/clock.js';
import { startHarness } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

t.test('mayResend: which requests on a dead channel may go to another connector', async (t) => {
  const rows: [string, Delivery, { body?: true; started?: true; resent?: number }, boolean][] = [
    // method, delivery, the exchange → may move
    ['GET', 'unsent', {}, true],
    ['POST', 'unsent', {}, true],
    ['PATCH', 'unsent', { body: true, resent: 5 }, true],
    ['GET', 'unacknowledged', {}, true],
    ['HEAD', 'unacknowledged', {}, true],
    ['OPTIONS', 'unacknowledged', {}, true],
    ['PUT', 'unacknowledged', {}, true],
    ['DELETE', 'unacknowledged', {}, true],
    ['POST', 'unacknowledged', {}, false],
    ['PATCH', 'unacknowledged', {}, false],
    ['GET', 'received', {}, false],
    ['DELETE', 'received', {}, false],
    ['POST', 'unacknowledged', { body: true }, true],
    ['POST', 'received', { body: true }, true],
    ['PUT', 'received', { body: true }, true],
    ['POST', 'received', { body: true, started: true }, false],
    ['PUT', 'unacknowledged', { body: true, started: true }, false],
    ['GET', 'unacknowledged', { resent: 1 }, false],
    ['POST', 'received', { body: true, resent: 1 }, false],
  ];
  for (const [method, delivery, ex, expected] of rows)
    t.equal(
      mayResend({
        method,
        delivery,
        hasBody: ex.body ?? false,
        started: ex.started ?? false,
        resent: ex.resent ?? 0,
      }),
      expected,
      `${method} ${delivery}${ex.body ? ', with a body' : ''}${ex.started ? ' it pulled' : ''}` +
        `${ex.resent ? `, moved ${ex.resent} time(s)` : ''}: ${expected ? 'moves' : 'fails'}`,
    );
});

/** A WebSocket as the registry and queue use it: frames and pings are recorded, pongs sent by hand. */
class StandInWs extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  /** Text frames (protocol 1) and binary ones (protocol 2). */
  readonly frames: (string | Buffer)[] = [];
  readonly pings: string[] = [];
  /** Answers every ping at once, as a live connector's WebSocket does. */
  answering = false;
  send(data: string | Buffer): void {
    this.frames.push(data);
  }
  ping(data?: string): void {
    this.pings.push(data ?? '');
    if (this.answering) queueMicrotask(() => this.emit('pong', Buffer.from(data ?? '')));
  }
  close(): void {
    this.terminate();
  }
  /** Dies as a killed peer's socket does: no close frame, code 1006. */
  terminate(): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.emit('close', 1006, Buffer.alloc(0));
  }
  /** Ids of the requests put on this channel. */
  requests(): string[] {
    return this.frames.flatMap((f) => {
      if (typeof f === 'string') return (JSON.parse(f) as { type: string; id?: string }).id ?? [];
      const parsed = decodeRequestFrame(f);
      return parsed.ok ? [parsed.message.id] : [];
    });
  }
  /** Answers the acknowledging pings sent so far, as a live connector does. */
  pongAll(): void {
    for (const p of this.pings) if (p) this.emit('pong', Buffer.from(p));
  }
}

interface Answer {
  status: number;
  code: string | undefined;
}

function fixture() {
  const clock = new ManualClock();
  const registry = new ChannelRegistry(silentLogger, { onSeen: () => undefined }, clock);
  const queue = new RequestQueue(registry, silentLogger, clock);
  const app = { name: 'app', connectorGroup: 'g', backendTimeoutMs: 10_000 } as AppConfig;
  const config = { connectors: { queueTimeoutMs: 1000 } } as RelayConfig;
  let n = 0;
  return {
    clock,
    registry,
    queue,
    /** protocol 2: the channel sends binary request frames; 1, JSON. */
    channel(connectorId: string, protocol = 1): { ch: Channel; ws: StandInWs } {
      const ws = new StandInWs();
      const ch = new Channel(ws as unknown as WebSocket, connectorId, 'g', 'serial', 'test', Infinity, protocol);
      registry.add(ch);
      return { ch, ws };
    },
    /** A request put on a channel as the request path does (open, send, arm the deadline). */
    send(
      method: string,
      channel: Channel,
      opts: { body?: boolean; headers?: [string, string][] } = {},
    ): { ex: Exchange; answer: Answer } {
      const id = `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}`;
      const answer: Answer = { status: 0, code: undefined };
      const req = { method, headers: { accept: 'application/json' } } as IncomingMessage;
      // What renderError uses of a response: the page's status and code land in `answer`.
      const res = {
        get headersSent() {
          return answer.status !== 0;
        },
        writeHead(status: number) {
          answer.status = status;
        },
        end(body?: string) {
          answer.code = body ? (JSON.parse(body) as { error: { code: string } }).error.code : undefined;
        },
        destroy() {},
      } as unknown as ServerResponse;
      const ex = queue.open({ id, app, config, channel, req, res, hasBody: opts.body ?? false });
      const msg: QueuedRequest = {
        type: 'request',
        id,
        app: 'app',
        method,
        target: '',
        headers: opts.headers ?? [],
        body: opts.body ?? false,
        upgrade: false,
      };
      channel.send(msg);
      ex.armTimeout(app.backendTimeoutMs);
      return { ex, answer };
    },
  };
}

t.test('queue: a request moved between channels of different protocols', async (t) => {
  await t.test('from a binary channel to a JSON one: sent there as JSON', async (t) => {
    const fx = fixture();
    const a = fx.channel('A', 2);
    const b = fx.channel('B', 1);
    const { ex } = fx.send('GET', a.ch, { headers: [['x-q', 'say "hi"']] });
    await turn();
    t.ok(Buffer.isBuffer(a.ws.frames[0]), 'the binary channel got a binary frame');
    a.ws.terminate();
    await turn();
    t.same(b.ws.requests(), [ex.id], 'moved to the protocol-1 connector');
    t.equal(typeof b.ws.frames[0], 'string', 'as JSON text');
  });

  await t.test('one that fits a binary frame but not JSON: 431, never sent to the JSON channel', async (t) => {
    const fx = fixture();
    const a = fx.channel('A', 2);
    const b = fx.channel('B', 1);
    // 600,000 quotes: 600 KB in a binary frame, 1.2 MB escaped in JSON (over MAX_CONTROL_MESSAGE).
    const { answer } = fx.send('GET', a.ch, { headers: [['x-q', '"'.repeat(600_000)]] });
    await turn();
    t.equal(a.ws.requests().length, 1, 'the binary channel took it');
    a.ws.terminate();
    await turn();
    t.same(answer, { status: 431, code: 'ERR_HEADERS_TOO_LARGE' });
    t.same(b.ws.frames, [], 'nothing was sent that would close the JSON channel');
  });
});

t.test('queue: a request on a channel that dies', async (t) => {
  await t.test('unacknowledged GET: moves to the other connector, sent there once', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    const { ex, answer } = fx.send('GET', a.ch);
    await turn();
    t.equal(a.ws.pings.filter(Boolean).length, 1, 'an acknowledging ping follows the request');
    a.ws.terminate();
    await turn();
    t.same(b.ws.requests(), [ex.id], 'sent on the other connector');
    t.equal(ex.connectorId, 'B', 'only that connector may answer it now');
    t.equal(ex.state, 'queued');
    t.equal(answer.status, 0, 'the user has no answer yet');
    t.equal(a.ws.requests().length, 1, 'the dead channel got it once');
  });

  await t.test('unacknowledged POST without a body: may have reached the backend, so it fails', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    const { answer } = fx.send('POST', a.ch);
    await turn();
    a.ws.terminate();
    await turn();
    t.same(answer, { status: 502, code: 'ERR_CONNECTOR_LOST' });
    t.same(b.ws.requests(), [], 'never sent to another connector');
  });

  await t.test(
    'a POST with a body the connector read but never pulled: the backend cannot have it, so it moves',
    async (t) => {
      const fx = fixture();
      const a = fx.channel('A');
      const b = fx.channel('B');
      const { ex } = fx.send('POST', a.ch, { body: true });
      await turn();
      a.ws.pongAll();
      t.equal(a.ch.delivery(ex.id), 'received');
      a.ws.terminate();
      await turn();
      t.same(b.ws.requests(), [ex.id]);
      t.equal(ex.connectorId, 'B', 'only B may pull the body now');
    },
  );

  await t.test('acknowledged GET: the connector read it (the backend may be acting on it), so it fails', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    const { answer } = fx.send('GET', a.ch);
    await turn();
    a.ws.pongAll();
    t.equal(a.ch.delivery(fx.queue.get(a.ws.requests()[0]!)!.id), 'received');
    a.ws.terminate();
    await turn();
    t.same(answer, { status: 502, code: 'ERR_CONNECTOR_LOST' });
    t.same(b.ws.requests(), []);
  });

  await t.test('a PUT whose body the connector pulled: started, so never sent again', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    const { ex, answer } = fx.send('PUT', a.ch, { body: true });
    ex.bodyTaken = true; // what the data plane records when the connector pulls the body
    a.ws.terminate();
    await turn();
    t.same(answer, { status: 502, code: 'ERR_CONNECTOR_LOST' });
    t.same(b.ws.requests(), []);
  });

  await t.test('a POST never written (the socket was already closing): moves', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    a.ws.readyState = 2; // CLOSING: picked a moment before
    const { ex } = fx.send('POST', a.ch);
    t.same(a.ws.frames, [], 'nothing was written');
    t.equal(a.ch.delivery(ex.id), 'unsent');
    a.ws.terminate();
    await turn();
    t.same(b.ws.requests(), [ex.id]);
  });

  await t.test('a POST sent on a channel already dropped: moves at once', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    a.ws.terminate();
    const { ex } = fx.send('POST', a.ch);
    await turn();
    t.same(b.ws.requests(), [ex.id]);
    t.equal(ex.deadline, fx.clock.now() + 10_000, 'its deadline was armed before it moved');
  });

  await t.test("another connector first: the dead channel's siblings are likely dying too", async (t) => {
    const fx = fixture();
    const a1 = fx.channel('A');
    const a2 = fx.channel('A');
    const b = fx.channel('B');
    const first = fx.send('GET', a1.ch);
    const busy = [fx.send('GET', b.ch), fx.send('GET', b.ch)]; // B is the busier connector
    await turn();
    b.ws.pongAll();
    a1.ws.terminate();
    await turn();
    t.same(b.ws.requests(), [busy[0]!.ex.id, busy[1]!.ex.id, first.ex.id], 'on B, busier as it is');
    t.same(a2.ws.requests(), []);
    // With no other connector, a sibling channel will do.
    const second = fx.send('GET', b.ch);
    await turn();
    b.ws.terminate();
    await turn();
    t.same(a2.ws.requests(), [second.ex.id], 'the request that was on B moved to A');
    t.equal(first.answer.status, 502, 'the one already moved once (and unacknowledged on B) fails');
  });

  await t.test('no channel left: it waits as a new request would, then goes to the first that opens', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const { ex } = fx.send('GET', a.ch);
    a.ws.terminate();
    await turn();
    t.equal(ex.state, 'queued');
    t.equal(ex.connectorId, undefined, 'no connector may answer it while it waits');
    await fx.clock.advance(500);
    const c = fx.channel('C');
    await turn();
    t.same(c.ws.requests(), [ex.id]);
  });

  await t.test('no channel comes within the queue timeout: 503, as for a new request', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const { answer } = fx.send('GET', a.ch);
    a.ws.terminate();
    await fx.clock.advance(1000);
    t.same(answer, { status: 503, code: 'ERR_NO_CONNECTOR' });
    t.equal(fx.queue.size, 0);
  });

  await t.test('the user leaves after the move: the connector it moved to is told', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    const { ex } = fx.send('GET', a.ch);
    a.ws.terminate();
    await turn();
    ex.abortUser();
    const sent = b.ws.frames.map((f) => JSON.parse(String(f)) as { type: string; id: string });
    t.same(sent, [
      { ...sent[0], type: 'request', id: ex.id },
      { type: 'cancel', id: ex.id },
    ]);
  });

  await t.test('past its deadline: not moved', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const b = fx.channel('B');
    const { ex } = fx.send('GET', a.ch);
    ex.deadline = fx.clock.now();
    a.ws.terminate();
    await turn();
    t.same(b.ws.requests(), []);
    t.equal(ex.state, 'done');
  });

  await t.test('acknowledging pings: one outstanding per channel, whatever the request rate', async (t) => {
    const fx = fixture();
    const a = fx.channel('A');
    const ids = Array.from({ length: 5 }, () => fx.send('GET', a.ch).ex.id);
    await turn();
    t.same(a.ws.pings, ['1'], 'one ping for the five requests of this turn');
    const more = fx.send('GET', a.ch).ex.id;
    await turn();
    t.same(a.ws.pings, ['1'], 'none while it is unanswered');
    a.ws.emit('pong', Buffer.from('1'));
    t.same(
      ids.map((id) => a.ch.delivery(id)),
      ids.map(() => 'received'),
    );
    t.equal(a.ch.delivery(more), 'unacknowledged', 'the request sent after the ping waits for the next');
    await turn();
    t.same(a.ws.pings, ['1', '2']);
    a.ws.emit('pong', Buffer.from('2'));
    t.equal(a.ch.delivery(more), 'received');
  });
});

t.test('a silent connector (no FIN, no pong) under the default heartbeat: cut within two intervals', async (t) => {
  const { connectors } = parseRelayConfig('connectors: {}\n', undefined, { dataDir: tempDir(t) });
  const interval = connectors.heartbeatIntervalMs;
  t.equal(interval, 2000, 'the default heartbeat is 2 s');
  const fx = fixture();
  fx.registry.startHeartbeat(interval);
  const a = fx.channel('A');
  const b = fx.channel('B');
  a.ws.answering = b.ws.answering = true;
  let droppedAt = 0;
  fx.registry.subscribe({ onSeen: () => undefined, onClose: () => (droppedAt = fx.clock.now()) });
  // The worst moment to fall silent: just after answering a heartbeat.
  await fx.clock.advance(interval);
  const silentAt = fx.clock.now();
  a.ws.answering = false;
  const { ex } = fx.send('GET', a.ch);
  while (!droppedAt && fx.clock.now() - silentAt < 10 * interval) await fx.clock.advance(100);
  t.equal(droppedAt - silentAt, 2 * interval, `dropped ${droppedAt - silentAt} ms after it fell silent`);
  t.equal(a.ws.readyState, 3, 'its socket was cut');
  t.same(b.ws.requests(), [ex.id], 'the GET it never acknowledged went to the other connector');
  t.equal(b.ws.readyState, 1, 'the connector that answers stays');
});

t.test('the rule end to end: a hand-driven connector over mutual TLS, a real one beside it', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const h = await startHarness(t, {
    yaml: () => `apps:
  - name: ha
    externalUrl: "https://ha.test/"
    internalUrl: "${backend.origin}/ha/"
    preauth: passthrough
    connectorGroup: ha
`,
  });
  // The hand-driven connector: registered like any other, answers heartbeats, and
  // acknowledges requests (answers the pings that follow them) only when told to.
  const { issued, creds } = await h.register('hand', 'ha');
  const data = new RelayClient(h.apiUrl, creds);
  t.teardown(() => data.close());
  const real = await h.addConnector({ group: 'ha' });
  const realChannels = () => h.relay.channels.byConnector(real.connectorId);

  async function handChannel(ack: boolean): Promise<{ ws: WebSocket; requests: QueuedRequest[]; acks: string[] }> {
    const ws = new WebSocket(`${h.apiUrl.replace(/^https/, 'wss')}${API.channel}`, {
      ...tlsOptions(creds),
      headers: { [VERSION_HEADER]: 'test' },
      autoPong: false,
    });
    const requests: QueuedRequest[] = [];
    const acks: string[] = [];
    ws.on('ping', (d: Buffer) => {
      if (d.length > 0) acks.push(d.toString());
      if (d.length === 0 || ack) ws.pong(d);
    });
    ws.on('message', (m: Buffer) => {
      const msg = JSON.parse(m.toString('utf8')) as QueuedRequest;
      if (msg.type === 'request') requests.push(msg);
    });
    ws.on('error', () => undefined);
    await new Promise((resolve) => ws.once('open', resolve));
    await waitFor(() => h.relay.channels.byConnector(issued.connectorId).length === 1, { what: 'the hand channel' });
    return { ws, requests, acks };
  }

  /** Sends one request while only the hand-driven connector takes new ones; resolves once it has it. */
  async function onHand(
    ack: boolean,
    method: Dispatcher.HttpMethod,
    path: string,
    body?: string,
  ): Promise<{ ws: WebSocket; msg: QueuedRequest; answer: Promise<Dispatcher.ResponseData> }> {
    const hand = await handChannel(ack);
    for (const ch of realChannels()) ch.draining = true;
    const answer = request(h.url('ha.test', path), {
      dispatcher: h.client,
      method,
      headers: { accept: 'application/json', ...(body ? { 'content-type': 'text/plain' } : {}) },
      body,
    });
    await waitFor(() => hand.requests.length === 1 && hand.acks.length === 1, {
      what: 'the request, and the ping after it, on the hand-driven connector',
    });
    for (const ch of realChannels()) ch.draining = false;
    const msg = hand.requests[0]!;
    const [relaySide] = h.relay.channels.byConnector(issued.connectorId);
    const known = ack ? 'received' : 'unacknowledged';
    await waitFor(() => relaySide!.delivery(msg.id) === known, { what: `the relay to hold the request ${known}` });
    return { ws: hand.ws, msg, answer };
  }

  /** The connector's process dies: its socket closes without a WebSocket close frame. */
  const kill = (ws: WebSocket) => (ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
  const atBackend = (id: string) => backend.seen.filter((s) => s.headers['x-request-id'] === id).length;

  await t.test('a GET it never acknowledged: answered by the other connector', async (t) => {
    const { ws, msg, answer } = await onHand(false, 'GET', '/unacked-get');
    kill(ws);
    const r = await answer;
    t.equal(r.statusCode, 200);
    t.equal(((await r.body.json()) as EchoBody).url, '/ha/unacked-get');
    t.equal(atBackend(msg.id), 1, 'the backend saw it once');
  });

  await t.test('a PUT it never acknowledged nor pulled: moved, body intact', async (t) => {
    const { ws, msg, answer } = await onHand(false, 'PUT', '/unacked-put', 'the body');
    kill(ws);
    const r = await answer;
    t.equal(r.statusCode, 200);
    t.equal(((await r.body.json()) as EchoBody).bodyLength, 'the body'.length);
    t.equal(atBackend(msg.id), 1);
  });

  await t.test('a POST without a body it never acknowledged: it may have arrived, so 502', async (t) => {
    const { ws, msg, answer } = await onHand(false, 'POST', '/unacked-post');
    kill(ws);
    const r = await answer;
    t.equal(r.statusCode, 502);
    t.equal(((await r.body.json()) as { error: { code: string } }).error.code, 'ERR_CONNECTOR_LOST');
    t.equal(atBackend(msg.id), 0, 'and no other connector got it');
  });

  await t.test('a POST with a body it read but never pulled: moved, and the backend saw it once', async (t) => {
    const { ws, msg, answer } = await onHand(true, 'POST', '/upload', 'the upload');
    kill(ws);
    const r = await answer;
    t.equal(r.statusCode, 200);
    t.equal(((await r.body.json()) as { length: number }).length, 'the upload'.length);
    t.equal(atBackend(msg.id), 1);
    const late = await data.dispatcher.request({
      origin: data.origin,
      path: requestPath(msg.id, 'body'),
      method: 'GET',
    });
    await late.body.dump();
    t.equal(late.statusCode, 404, 'the connector it left may not pull the body any more');
  });

  await t.test('a GET it acknowledged: it may be at the backend, so 502 and not sent again', async (t) => {
    const { ws, msg, answer } = await onHand(true, 'GET', '/acked-get');
    kill(ws);
    const r = await answer;
    t.equal(r.statusCode, 502);
    t.equal(((await r.body.json()) as { error: { code: string } }).error.code, 'ERR_CONNECTOR_LOST');
    t.equal(atBackend(msg.id), 0);
  });

  await t.test('a PUT whose body it pulled: started, so 502 and never sent to a second backend', async (t) => {
    const { ws, msg, answer } = await onHand(false, 'PUT', '/pulled-put', 'pulled');
    const pulled = await data.dispatcher.request({
      origin: data.origin,
      path: requestPath(msg.id, 'body'),
      method: 'GET',
    });
    t.equal(await pulled.body.text(), 'pulled', 'the connector has the body');
    kill(ws);
    const r = await answer;
    t.equal(r.statusCode, 502);
    t.equal(atBackend(msg.id), 0);
  });

  await t.test('a POST written to a socket that had already died: moved', async (t) => {
    const hand = await handChannel(false);
    const [relaySide] = h.relay.channels.byConnector(issued.connectorId);
    for (const ch of realChannels()) ch.draining = true;
    // The socket dies between the pick and the send, before the relay has seen its end.
    relaySide!.send = (m) => {
      relaySide!.socket?.destroy();
      for (const ch of realChannels()) ch.draining = false;
      Channel.prototype.send.call(relaySide, m);
    };
    const r = await request(h.url('ha.test', '/unsent-post'), {
      dispatcher: h.client,
      method: 'POST',
      body: 'y',
    });
    t.equal(r.statusCode, 200);
    const echo = (await r.body.json()) as EchoBody;
    t.equal(echo.method, 'POST');
    t.same(hand.requests, [], 'the hand-driven connector never got it');
    t.equal(atBackend(String(echo.headers['x-request-id'])), 1, 'the backend saw it once');
  });
});
