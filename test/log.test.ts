// The log's time field must read exactly as Date#toISOString, whatever the
// cache of the formatted second holds.
import t from 'tap';
import { isoTimeField } from '../src/log.js';

t.test('time field equals toISOString across milliseconds, seconds, days and years', async (t) => {
  const base = Date.UTC(2026, 10, 27, 23, 59, 58, 0);
  const times = [
    base,
    base + 1,
    base + 9,
    base + 10,
    base + 99,
    base + 100,
    base + 999,
    base + 1000,
    base + 1001,
    base + 2000,
    base + 2500,
    Date.UTC(2027, 0, 1, 0, 0, 0, 5),
    Date.UTC(2024, 1, 29, 12, 0, 0, 42),
    base - 1,
    0,
    999,
    1000,
  ];
  for (const now of times)
    t.equal(isoTimeField(now), `,"time":"${new Date(now).toISOString()}"`, new Date(now).toISOString());
  // Back and forth between two seconds: the cache never serves the other one.
  for (let i = 0; i < 4; i++) {
    t.equal(isoTimeField(base + 1500), `,"time":"${new Date(base + 1500).toISOString()}"`);
    t.equal(isoTimeField(base + 500), `,"time":"${new Date(base + 500).toISOString()}"`);
  }
});

t.test('without an argument it is the current time', async (t) => {
  const before = Date.now();
  const field = isoTimeField();
  const after = Date.now();
  const m = /^,"time":"(.+)"$/.exec(field);
  t.ok(m, field);
  const at = Date.parse(m![1]!);
  t.ok(at >= before && at <= after, `${m![1]} within [${before}, ${after}]`);
});
