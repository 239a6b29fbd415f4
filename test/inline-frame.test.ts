// The inline response frame (a small complete answer on the control channel):
// what the connector encodes the relay decodes byte for byte, and a frame a
// connector could send malformed is refused rather than misread.
import t from 'tap';
import { decodeInlineResponse, encodeInlineResponse, type InlineResponseHead } from '../src/protocol/connector-api.js';

const head = (headers: [string, string][] = [['content-type', 'text/plain']]): InlineResponseHead => ({
  type: 'response',
  id: 'a6f2c1de-0c1b-4d7e-9a41-6a3f1e2d9b70',
  status: 200,
  headers,
});

t.test('round trip: head and body as sent', async (t) => {
  const cases: [string, InlineResponseHead, Buffer][] = [
    ['empty body', head(), Buffer.alloc(0)],
    ['text body', head(), Buffer.from('hello\n')],
    [
      'non-ASCII header value and body',
      head([
        ['content-disposition', 'attachment; filename="résumé.pdf"'],
        ['set-cookie', 'a=1'],
        ['set-cookie', 'b=2'],
      ]),
      Buffer.from('€ and ✓', 'utf8'),
    ],
    [
      'binary body of 64 KiB',
      head([['content-type', 'application/octet-stream']]),
      Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7) & 0xff)),
    ],
  ];
  for (const [what, h, body] of cases) {
    const frame = encodeInlineResponse(h, body);
    const back = decodeInlineResponse(frame);
    t.ok(back, what);
    t.same(back?.head, h, `${what}: head`);
    t.ok(back?.body.equals(body), `${what}: body`);
    t.equal(
      frame.readUInt32BE(0),
      Buffer.byteLength(JSON.stringify(h)),
      `${what}: length prefix counts bytes, not characters`,
    );
  }
});

t.test('malformed frames are refused', async (t) => {
  const good = encodeInlineResponse(head(), Buffer.from('x'));
  const json = (v: unknown) => {
    const j = Buffer.from(JSON.stringify(v));
    const p = Buffer.alloc(4);
    p.writeUInt32BE(j.length, 0);
    return Buffer.concat([p, j]);
  };
  const bad: [string, Buffer][] = [
    ['shorter than the prefix', Buffer.from([0, 0])],
    ['length past the end', Buffer.concat([Buffer.from([0, 0, 1, 0]), Buffer.from('{}')])],
    ['head cut short', good.subarray(0, 10)],
    ['not JSON', Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from('{x}')])],
    ['wrong type', json({ ...head(), type: 'request' })],
    ['status not an integer', json({ ...head(), status: '200' })],
    ['headers not pairs', json({ ...head(), headers: [['a']] })],
    ['header value not a string', json({ ...head(), headers: [['a', 1]] })],
    ['id missing', json({ type: 'response', status: 200, headers: [] })],
  ];
  for (const [what, frame] of bad) t.equal(decodeInlineResponse(frame), undefined, what);
});
