// Protocol 2's binary frames on a real relay, driven by hand from the connector side:
// a channel opened with version 2 gets each request as a binary frame and may answer
// with a binary response frame; one opened with version 1 (or without the header: a
// connector from before it) gets JSON and answers with a JSON head, as before; and a
// frame of the wrong format for the channel, or a hostile one, closes that channel
// (CLOSE.protocol) without answering the user with anything the frame said.
import t from 'tap';
import { request } from 'undici';
import WebSocket from 'ws';
import { tlsOptions } from '../src/connector/relay-client.js';
import {
  decodeRequestFrame,
  encodeRequestFrame,
  encodeResponseFrame,
  FRAME_KIND,
} from '../src/protocol/binary-frames.js';
import {
  API,
  CLOSE,
  PROTOCOL_HEADER,
  VERSION_HEADER,
  encodeInlineResponse,
  type InlineResponseHead,
  type QueuedRequest,
} from '../src/protocol/connector-api.js';
import { startHarness } from './helpers/harness.js';
import { waitFor } from './helpers/wait.js';

t.test('binary frames are used only on channels that negotiated protocol 2', async (t) => {
  const h = await startHarness(t, {
    yaml: () => `apps:
  - name: hand
    externalUrl: "https://hand.test/"
    internalUrl: "http://127.0.0.1:9/"
    preauth: passthrough
    connectorGroup: hand
`,
  });
  const { issued, creds } = await h.register('hand', 'hand');

  interface Hand {
    ws: WebSocket;
    /** The relay's protocol from the 101. */
    relayProtocol: string | undefined;
    frames: { binary: boolean; data: Buffer }[];
    closed: Promise<number>;
  }

  /** A channel opened with `protocol` in PROTOCOL_HEADER (undefined: no header). */
  async function open(protocol: string | undefined): Promise<Hand> {
    const ws = new WebSocket(`${h.apiUrl.replace(/^https/, 'wss')}${API.channel}`, {
      ...tlsOptions(creds),
      headers: { [VERSION_HEADER]: 'test', ...(protocol === undefined ? {} : { [PROTOCOL_HEADER]: protocol }) },
    });
    const hand: Hand = {
      ws,
      relayProtocol: undefined,
      frames: [],
      closed: new Promise((resolve) => ws.on('close', (code) => resolve(code))),
    };
    ws.on('upgrade', (res) => (hand.relayProtocol = res.headers[PROTOCOL_HEADER] as string | undefined));
    ws.on('message', (data: Buffer, binary) => hand.frames.push({ binary, data }));
    ws.on('error', () => undefined);
    await new Promise((resolve) => ws.once('open', resolve));
    await waitFor(() => h.relay.channels.byConnector(issued.connectorId).length === 1, { what: 'the hand channel' });
    t.teardown(() => ws.terminate());
    return hand;
  }

  /** The next request the relay puts on the hand channel, as it arrived. */
  async function nextRequest(hand: Hand): Promise<{ binary: boolean; msg: QueuedRequest }> {
    await waitFor(
      () => hand.frames.some((f) => f.binary || (JSON.parse(f.data.toString()) as { type: string }).type === 'request'),
      { what: 'a request on the hand channel' },
    );
    const i = hand.frames.findIndex(
      (f) => f.binary || (JSON.parse(f.data.toString()) as { type: string }).type === 'request',
    );
    const [f] = hand.frames.splice(i, 1);
    if (f!.binary) {
      const parsed = decodeRequestFrame(f!.data);
      if (!parsed.ok) throw new Error(parsed.error);
      return { binary: true, msg: parsed.message };
    }
    return { binary: false, msg: JSON.parse(f!.data.toString()) as QueuedRequest };
  }

  const ask = (path: string) =>
    request(h.url('hand.test', path), {
      dispatcher: h.client,
      headers: { accept: 'application/json', 'x-probe': 'caf\u00e9' },
    });

  const head = (id: string): InlineResponseHead => ({
    type: 'response',
    id,
    status: 201,
    headers: [
      ['content-type', 'text/plain'],
      ['x-answer', 'r\u00e9ponse'],
    ],
  });

  await t.test('protocol 2: binary request, binary response', async (t) => {
    const hand = await open('2');
    t.equal(hand.relayProtocol, '2', 'the relay names protocol 2 in its 101');
    const answer = ask('/two?q=1');
    const { binary, msg } = await nextRequest(hand);
    t.ok(binary, 'the request came as a binary frame');
    t.equal(msg.method, 'GET');
    t.equal(msg.target, 'two?q=1');
    t.ok(
      msg.headers.some(([k, v]) => k === 'x-probe' && v === 'caf\u00e9'),
      'headers intact (Latin-1 value)',
    );
    hand.ws.send(encodeResponseFrame(head(msg.id), Buffer.from('from two')));
    const r = await answer;
    t.equal(r.statusCode, 201);
    t.equal(r.headers['x-answer'], 'r\u00e9ponse');
    t.equal(await r.body.text(), 'from two');
    hand.ws.terminate();
    await waitFor(() => h.relay.channels.byConnector(issued.connectorId).length === 0, { what: 'the channel gone' });
  });

  for (const [name, header] of [
    ['protocol 1', '1'],
    ['no header (a connector from before protocol 2)', undefined],
  ] as const) {
    await t.test(`${name}: JSON request, JSON-headed response`, async (t) => {
      const hand = await open(header);
      const answer = ask('/one');
      const { binary, msg } = await nextRequest(hand);
      t.notOk(binary, 'the request came as JSON text');
      t.equal(msg.type, 'request');
      hand.ws.send(encodeInlineResponse(head(msg.id), Buffer.from('from one')));
      const r = await answer;
      t.equal(r.statusCode, 201);
      t.equal(await r.body.text(), 'from one');
      hand.ws.terminate();
      await waitFor(() => h.relay.channels.byConnector(issued.connectorId).length === 0, { what: 'the channel gone' });
    });
  }

  const wrong: [string, string | undefined, (id: string) => Buffer][] = [
    ['a protocol-1 frame on a protocol-2 channel', '2', (id) => encodeInlineResponse(head(id), Buffer.from('x'))],
    ['a protocol-2 frame on a protocol-1 channel', '1', (id) => encodeResponseFrame(head(id), Buffer.from('x'))],
    [
      'a request frame sent back',
      '2',
      (id) =>
        encodeRequestFrame({
          type: 'request',
          id,
          app: 'hand',
          method: 'GET',
          target: '',
          headers: [],
          body: false,
          upgrade: false,
        }),
    ],
    [
      'a response frame cut in its headers',
      '2',
      (id) => encodeResponseFrame(head(id), Buffer.alloc(0)).subarray(0, 50),
    ],
    ['an unknown frame kind', '2', () => Buffer.from([0x7f, 0, 0, 0])],
    [
      'a response frame with unknown flags',
      '2',
      (id) => {
        const f = encodeResponseFrame(head(id), Buffer.alloc(0));
        f[1] = 0x80;
        return f;
      },
    ],
  ];
  for (const [what, protocol, frame] of wrong) {
    await t.test(`${what}: the channel closes, the user gets a refusal of the relay's own`, async (t) => {
      const hand = await open(protocol);
      const answer = ask('/wrong');
      const { msg } = await nextRequest(hand);
      hand.ws.send(frame(msg.id));
      t.equal(await hand.closed, CLOSE.protocol, 'closed with CLOSE.protocol');
      const r = await answer;
      t.equal(
        r.statusCode,
        502,
        'the request the connector had read fails (502), nothing of the frame reaches the user',
      );
      t.notOk(r.headers['x-answer'], 'no header of the frame');
      await r.body.dump();
      await waitFor(() => h.relay.channels.byConnector(issued.connectorId).length === 0, { what: 'the channel gone' });
    });
  }

  t.equal(FRAME_KIND.request, 0x01, 'request frames start with 0x01');
});
