// Coalesce: chunks of one event-loop turn leave as one write, nothing waits
// for a later turn, bytes and order are kept, errors and back-pressure pass.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable, Writable, pipeline } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { COALESCE_MAX, Coalesce } from '../src/connector/coalesce.js';

const collect = (s: Readable): Buffer[] => {
  const out: Buffer[] = [];
  s.on('data', (c: Buffer) => out.push(c));
  return out;
};

t.test('chunks written in one turn come out as one chunk', async (t) => {
  const c = new Coalesce();
  const out = collect(c);
  for (let i = 0; i < 4; i++) c.write(Buffer.alloc(16 * 1024, i));
  t.equal(out.length, 0, 'nothing yet within the turn');
  await turn();
  t.equal(out.length, 1, 'one joined chunk after the turn');
  t.equal(out[0]!.length, 64 * 1024);
  t.equal(out[0]![16 * 1024], 1, 'in order');
});

t.test('a chunk arriving in a later turn is not held back', async (t) => {
  const c = new Coalesce();
  const out = collect(c);
  c.write(Buffer.from('event: one\n\n'));
  await turn();
  t.same(out.map(String), ['event: one\n\n'], 'the first event left in its own turn');
  c.write(Buffer.from('event: two\n\n'));
  await turn();
  t.same(out.map(String), ['event: one\n\n', 'event: two\n\n']);
});

t.test('a big burst is cut at COALESCE_MAX', async (t) => {
  const c = new Coalesce();
  const out = collect(c);
  const chunk = Buffer.alloc(16 * 1024, 7);
  const n = (3 * COALESCE_MAX) / chunk.length;
  for (let i = 0; i < n; i++) c.write(chunk);
  await turn();
  t.equal(
    out.reduce((a, b) => a + b.length, 0),
    3 * COALESCE_MAX,
    'every byte',
  );
  for (const b of out) t.ok(b.length <= COALESCE_MAX, `chunk of ${b.length} bytes within the bound`);
});

t.test('end flushes what is pending; bytes are exact through a slow reader', async (t) => {
  const data = randomBytes(5 * 1024 * 1024 + 123);
  const src = Readable.from(
    (function* () {
      for (let i = 0; i < data.length; i += 16 * 1024) yield data.subarray(i, i + 16 * 1024);
    })(),
  );
  const hash = createHash('sha256');
  let buffered = 0;
  const c = new Coalesce();
  const slow = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      // What the coalescer holds stays bounded while its reader is slow.
      buffered = Math.max(buffered, c.readableLength + c.writableLength);
      setTimeout(cb, 1);
    },
  });
  await new Promise<void>((resolve, reject) => pipeline(src, c, slow, (err) => (err ? reject(err) : resolve())));
  t.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'), 'sha256 matches');
  t.ok(buffered <= 3 * COALESCE_MAX, `at most ${buffered} bytes held`);
});

t.test('an error upstream reaches the destination: never a clean end', async (t) => {
  const src = new PassThrough();
  const c = new Coalesce();
  const err = await new Promise<Error | undefined>((resolve) => {
    pipeline(src, c, new Writable({ write: (_c, _e, cb) => cb() }), (e) => resolve(e ?? undefined));
    src.write(Buffer.alloc(1000));
    setImmediate(() => src.destroy(new Error('upstream broke')));
  });
  t.equal(err?.message, 'upstream broke');
  t.ok(c.destroyed, 'the coalescer is destroyed');
});

t.test('destroyed with a flush pending: nothing more is emitted', async (t) => {
  const c = new Coalesce();
  const out = collect(c);
  c.on('error', () => undefined);
  c.write(Buffer.alloc(10));
  c.destroy();
  await turn();
  await turn();
  t.equal(out.length, 0);
});
