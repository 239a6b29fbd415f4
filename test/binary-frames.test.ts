// The binary control frames of protocol 2 (src/protocol/binary-frames.ts): what one end
// encodes the other decodes exactly, strings of every kind included, and a frame a
// stranger shaped (cut short, padded, lying lengths and counts, unknown kinds and flags,
// invalid UTF-8, fields over their limits, random corruption) is refused whole, never
// misread and never thrown out of the decoder.
import t from 'tap';
import {
  FRAME_KIND,
  decodeRequestFrame,
  decodeResponseFrame,
  encodeRequestFrame,
  encodeResponseFrame,
  requestFrameFits,
} from '../src/protocol/binary-frames.js';
import {
  MAX_CONTROL_MESSAGE,
  MESSAGE_LIMITS,
  type InlineResponseHead,
  type QueuedRequest,
} from '../src/protocol/connector-api.js';

const ID = 'a6f2c1de-0c1b-4d7e-9a41-6a3f1e2d9b70';

const request = (over: Partial<QueuedRequest> = {}): QueuedRequest => ({
  type: 'request',
  id: ID,
  app: 'wiki',
  method: 'GET',
  target: 'a/b?c=1',
  headers: [
    ['accept', '*/*'],
    ['cookie', 'a=1'],
    ['cookie', 'b=2'],
  ],
  body: false,
  upgrade: false,
  ...over,
});

const response = (over: Partial<InlineResponseHead> = {}): InlineResponseHead => ({
  type: 'response',
  id: ID,
  status: 200,
  headers: [['content-type', 'text/plain']],
  ...over,
});

/** Strings a header, target or name may hold on the way: Latin-1 from Node's parser, UTF-8, astral, U+FFFD, NUL, CR/LF. */
const STRINGS = [
  '',
  'plain',
  'caf\u00e9 \u00ff',
  'r\u00e9sum\u00e9 \u20ac \u2713',
  '\u{1f600} \u{10ffff}',
  '\ufffd',
  'a\u0000b',
  'x\r\ny',
];

t.test('requests: every field survives the trip exactly', async (t) => {
  const cases: [string, QueuedRequest][] = [
    ['a GET', request()],
    ['a POST with a body', request({ method: 'POST', body: true })],
    ['an upgrade', request({ upgrade: true, headers: [['upgrade', 'websocket']] })],
    ['body and upgrade flags together', request({ body: true, upgrade: true })],
    ['empty target, no headers', request({ target: '', headers: [] })],
    [
      'fields at their limits',
      request({
        id: 'i'.repeat(MESSAGE_LIMITS.id),
        app: 'a'.repeat(MESSAGE_LIMITS.name),
        method: 'M'.repeat(MESSAGE_LIMITS.method),
      }),
    ],
    [
      'non-ASCII app and method at their limits',
      request({ app: '\u00e9'.repeat(MESSAGE_LIMITS.name), method: '\u20ac'.repeat(MESSAGE_LIMITS.method) }),
    ],
    [
      'every kind of string in names, values and target',
      request({ target: STRINGS.join('/'), headers: STRINGS.map((s, i) => [`${s}${i}`, s]) }),
    ],
    ['a thousand headers', request({ headers: Array.from({ length: 1000 }, (_, i) => [`x-h${i}`, `v${i}`]) })],
    ['a header value of 256 KiB', request({ headers: [['x-big', 'v'.repeat(256 * 1024)]] })],
  ];
  for (const [what, msg] of cases) {
    const frame = encodeRequestFrame(msg);
    t.equal(frame[0], FRAME_KIND.request, `${what}: kind`);
    const back = decodeRequestFrame(frame);
    t.ok(back.ok, `${what}: accepted`);
    if (back.ok) t.same(back.message, msg, `${what}: unchanged`);
  }
});

t.test('responses: head, trailers and body survive the trip exactly', async (t) => {
  const cases: [string, InlineResponseHead, Buffer][] = [
    ['empty body', response(), Buffer.alloc(0)],
    ['text body', response(), Buffer.from('hello\n')],
    ['no headers', response({ headers: [], status: 204 }), Buffer.alloc(0)],
    ['every status from 0 to 65535 fits', response({ status: 65535 }), Buffer.alloc(0)],
    [
      'non-ASCII values, repeated Set-Cookie',
      response({
        headers: [
          ['content-disposition', 'attachment; filename="r\u00e9sum\u00e9.pdf"'],
          ['set-cookie', 'a=1'],
          ['set-cookie', 'b=2'],
        ],
      }),
      Buffer.from('\u20ac and \u2713', 'utf8'),
    ],
    [
      'trailers (gRPC)',
      response({
        trailers: [
          ['grpc-status', '0'],
          ['grpc-message', 'ok \u{1f600}'],
        ],
      }),
      Buffer.from([0, 0, 0, 0, 0]),
    ],
    ['a binary body of 64 KiB', response(), Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7) & 0xff))],
  ];
  for (const [what, head, body] of cases) {
    const frame = encodeResponseFrame(head, body);
    t.equal(frame[0], FRAME_KIND.response, `${what}: kind`);
    const back = decodeResponseFrame(frame);
    t.ok(back.ok, `${what}: accepted`);
    if (!back.ok) continue;
    t.same(back.message.head, head, `${what}: head`);
    t.ok(back.message.body.equals(body), `${what}: body`);
  }
  const none = decodeResponseFrame(encodeResponseFrame(response({ trailers: [] }), Buffer.alloc(0)));
  t.equal(none.ok && none.message.head.trailers, undefined, 'an empty trailer list reads as none');
});

t.test('a frame cut anywhere before its end is refused', async (t) => {
  const req = encodeRequestFrame(
    request({
      target: 'p\u00e9',
      headers: [
        ['a', 'b'],
        ['c', '\u20ac'],
      ],
    }),
  );
  let refused = 0;
  for (let n = 0; n < req.length; n++) if (!decodeRequestFrame(req.subarray(0, n)).ok) refused++;
  t.equal(refused, req.length, `all ${req.length} shorter request frames refused`);
  // A response's body is the rest of the frame: every cut inside the head is refused.
  const head = encodeResponseFrame(response({ trailers: [['t', 'v']] }), Buffer.alloc(0));
  refused = 0;
  for (let n = 0; n < head.length; n++) if (!decodeResponseFrame(head.subarray(0, n)).ok) refused++;
  t.equal(refused, head.length, `all ${head.length} cuts of a response head refused`);
});

/**
 * A request frame built by hand: [kind, flags, u32 header count, u32 lengths of id, app,
 * method, target and each name and value, the strings, tail]. `count` and `lengths` lie
 * when given.
 */
function rawRequest(parts: {
  kind?: number;
  flags?: number;
  id?: Buffer;
  app?: Buffer;
  method?: Buffer;
  target?: Buffer;
  count?: number;
  lengths?: number[];
  pairs?: Buffer[];
  tail?: Buffer;
}): Buffer {
  const strings = [
    parts.id ?? Buffer.from(ID),
    parts.app ?? Buffer.from('wiki'),
    parts.method ?? Buffer.from('GET'),
    parts.target ?? Buffer.from('a'),
    ...(parts.pairs ?? []),
  ];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n, 0);
    return b;
  };
  return Buffer.concat([
    Buffer.from([parts.kind ?? FRAME_KIND.request, parts.flags ?? 0]),
    u32(parts.count ?? (parts.pairs ?? []).length / 2),
    ...(parts.lengths ?? strings.map((b) => b.length)).map(u32),
    ...strings,
    parts.tail ?? Buffer.alloc(0),
  ]);
}

t.test('hostile request frames are refused with a reason', async (t) => {
  const invalidUtf8 = [
    Buffer.from([0xc3]),
    Buffer.from([0xff, 0xfe]),
    Buffer.from([0xed, 0xa0, 0x80]),
    Buffer.from([0xc0, 0xaf]),
  ];
  t.ok(decodeRequestFrame(rawRequest({})).ok, 'the hand-built frame itself is good');
  const cases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['kind 0 (a protocol-1 inline frame starts so)', rawRequest({ kind: 0 })],
    ['a response sent the wrong way', encodeResponseFrame(response(), Buffer.alloc(0))],
    ['unknown kind', rawRequest({ kind: 0x7f })],
    ['unknown flag', rawRequest({ flags: 0x04 })],
    ['every flag', rawRequest({ flags: 0xff })],
    ['empty id', rawRequest({ id: Buffer.alloc(0) })],
    ['empty app', rawRequest({ app: Buffer.alloc(0) })],
    ['empty method', rawRequest({ method: Buffer.alloc(0) })],
    ['id over its limit', rawRequest({ id: Buffer.from('i'.repeat(MESSAGE_LIMITS.id + 1)) })],
    ['app over its limit', rawRequest({ app: Buffer.from('a'.repeat(MESSAGE_LIMITS.name + 1)) })],
    ['method over its limit', rawRequest({ method: Buffer.from('M'.repeat(MESSAGE_LIMITS.method + 1)) })],
    ['bytes after the headers', rawRequest({ tail: Buffer.from([0]) })],
    ['a header count the frame cannot hold', rawRequest({ count: 0xffffffff })],
    ['one header more than sent', rawRequest({ count: 2, pairs: [Buffer.from('a'), Buffer.from('b')] })],
    ['a name without its value', rawRequest({ count: 1, pairs: [Buffer.from('a')] })],
    ['a target length past the end', rawRequest({ lengths: [ID.length, 4, 3, 0x7fffffff] })],
    ['lengths that add up past the end', rawRequest({ lengths: [ID.length, 4, 3, 2] })],
    ['lengths that add up short of the end', rawRequest({ lengths: [ID.length, 4, 2, 1] })],
    ['a length table past the end', rawRequest({ count: 1000 })],
    ['cut inside the length table', rawRequest({}).subarray(0, 6 + 7)],
    ['larger than any control message', Buffer.concat([rawRequest({}), Buffer.alloc(MAX_CONTROL_MESSAGE)])],
  ];
  for (const [i, bad] of invalidUtf8.entries()) {
    cases.push([`invalid UTF-8 #${i} in the id`, rawRequest({ id: bad })]);
    cases.push([`invalid UTF-8 #${i} in the app`, rawRequest({ app: bad })]);
    cases.push([`invalid UTF-8 #${i} in the method`, rawRequest({ method: bad })]);
    cases.push([`invalid UTF-8 #${i} in the target`, rawRequest({ target: Buffer.concat([Buffer.from('a/'), bad]) })]);
    cases.push([`invalid UTF-8 #${i} in a header name`, rawRequest({ pairs: [bad, Buffer.from('v')] })]);
    cases.push([`invalid UTF-8 #${i} in a header value`, rawRequest({ pairs: [Buffer.from('n'), bad] })]);
  }
  for (const [what, frame] of cases) {
    const parsed = decodeRequestFrame(frame);
    t.notOk(parsed.ok, what);
    if (!parsed.ok) t.match(parsed.error, /\S/, `${what}: says why`);
  }
  const real = decodeRequestFrame(rawRequest({ pairs: [Buffer.from('x'), Buffer.from('\ufffd')] }));
  t.ok(real.ok && real.message.headers[0]![1] === '\ufffd', 'a real U+FFFD is valid UTF-8 and kept');
});

t.test('hostile response frames are refused with a reason', async (t) => {
  const good = encodeResponseFrame(response({ trailers: [['t', 'v']] }), Buffer.from('body'));
  const patch = (at: number, bytes: number[]) => {
    const f = Buffer.from(good);
    Buffer.from(bytes).copy(f, at);
    return f;
  };
  // [kind, flags, status, header count @4, trailer count @8, lengths @12: id, a, b, t, v][strings][body]
  const cases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['a request sent the wrong way', encodeRequestFrame(request())],
    ['a protocol-1 frame (JSON head)', Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from('{}')])],
    ['unknown flags', patch(1, [1])],
    ['empty id', encodeResponseFrame(response({ id: '' }), Buffer.alloc(0))],
    ['id over its limit', encodeResponseFrame(response({ id: 'i'.repeat(MESSAGE_LIMITS.id + 1) }), Buffer.alloc(0))],
    ['id length past the end', patch(12, [0x7f, 0xff, 0xff, 0xff])],
    ['a header count the frame cannot hold', patch(4, [0x7f, 0xff, 0xff, 0xff])],
    ['a trailer count the frame cannot hold', patch(8, [0x00, 0x10, 0x00, 0x00])],
    ['a header name length past the end', patch(16, [0x00, 0xff, 0xff, 0xff])],
    ['cut inside the length table', good.subarray(0, 14)],
    [
      'invalid UTF-8 in a header value',
      Buffer.from(encodeResponseFrame(response({ headers: [['a', 'b']] }), Buffer.alloc(0))).fill(
        0xff,
        12 + 3 * 4 + ID.length + 1,
      ),
    ],
    ['larger than any control message', encodeResponseFrame(response(), Buffer.alloc(MAX_CONTROL_MESSAGE))],
  ];
  for (const [what, frame] of cases) {
    const parsed = decodeResponseFrame(frame);
    t.notOk(parsed.ok, what);
    if (!parsed.ok) t.match(parsed.error, /\S/, `${what}: says why`);
  }
});

/** A small deterministic generator, so a failure reproduces. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

t.test('random corruption is refused or read as a well-formed message, never thrown', async (t) => {
  const rand = prng(22);
  const reqFrame = encodeRequestFrame(request({ headers: STRINGS.map((s, i) => [`h${i}`, s]) }));
  const resFrame = encodeResponseFrame(response({ trailers: [['grpc-status', '0']] }), Buffer.from('payload'));
  let accepted = 0;
  let refused = 0;
  for (let i = 0; i < 4000; i++) {
    const base = i % 2 === 0 ? reqFrame : resFrame;
    const f = Buffer.from(base);
    const flips = 1 + Math.floor(rand() * 4);
    for (let j = 0; j < flips; j++) f[Math.floor(rand() * f.length)] = Math.floor(rand() * 256);
    const cut = rand() < 0.2 ? f.subarray(0, Math.floor(rand() * f.length)) : f;
    if (i % 2 === 0) {
      const p = decodeRequestFrame(cut);
      if (!p.ok) {
        refused++;
        continue;
      }
      accepted++;
      const m = p.message;
      const wellFormed =
        m.id.length > 0 &&
        m.id.length <= MESSAGE_LIMITS.id &&
        m.app.length > 0 &&
        m.method.length > 0 &&
        m.headers.every((h) => h.length === 2 && typeof h[0] === 'string' && typeof h[1] === 'string');
      if (!wellFormed) t.fail(`iteration ${i}: accepted a malformed request`);
    } else {
      const p = decodeResponseFrame(cut);
      if (!p.ok) {
        refused++;
        continue;
      }
      accepted++;
      if (!(p.message.head.id.length > 0 && Number.isInteger(p.message.head.status)))
        t.fail(`iteration ${i}: accepted a malformed response`);
    }
  }
  t.equal(accepted + refused, 4000, `every frame judged (${refused} refused, ${accepted} read as well-formed)`);
  t.ok(refused > 1000, 'most corruptions are caught by the layout');
});

t.test('frames carry nothing but their contents, ASCII or not', async (t) => {
  for (const [what, msg] of [
    ['ASCII', request()],
    ['non-ASCII', request({ target: 'caf\u00e9', headers: [['x', '\u{1f600}']] })],
  ] as const) {
    const strings = [msg.id, msg.app, msg.method, msg.target, ...msg.headers.flat()];
    const bytes = strings.reduce((n, s) => n + Buffer.byteLength(s), 0);
    t.equal(encodeRequestFrame(msg).length, 6 + 4 * strings.length + bytes, `${what}: request size`);
  }
  const head = response({ trailers: [['grpc-status', '0']] });
  const body = Buffer.from('body');
  const strings = [head.id, ...head.headers.flat(), ...head.trailers!.flat()];
  const bytes = strings.reduce((n, s) => n + Buffer.byteLength(s), 0);
  t.equal(encodeResponseFrame(head, body).length, 12 + 4 * strings.length + bytes + body.length, 'response size');
});

t.test('requestFrameFits is exact at MAX_CONTROL_MESSAGE, ASCII and not', async (t) => {
  for (const fill of ['v', '\u00e9', '\u20ac']) {
    const base = encodeRequestFrame(request({ headers: [['x-fill', '']] })).length;
    const perChar = Buffer.byteLength(fill);
    const room = Math.floor((MAX_CONTROL_MESSAGE - base) / perChar);
    const at = request({ headers: [['x-fill', fill.repeat(room)]] });
    const over = request({ headers: [['x-fill', fill.repeat(room + 1)]] });
    t.ok(
      encodeRequestFrame(at).length <= MAX_CONTROL_MESSAGE,
      `${JSON.stringify(fill)}: the frame at the bound is within it`,
    );
    t.ok(requestFrameFits(at), `${JSON.stringify(fill)}: at the bound fits`);
    t.ok(encodeRequestFrame(over).length > MAX_CONTROL_MESSAGE, `${JSON.stringify(fill)}: one more character is over`);
    t.notOk(requestFrameFits(over), `${JSON.stringify(fill)}: over the bound does not fit`);
    const back = decodeRequestFrame(encodeRequestFrame(at));
    t.ok(back.ok, `${JSON.stringify(fill)}: the largest frame is accepted`);
  }
});
