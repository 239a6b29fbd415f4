// The connector's reconnect backoff: doubling ceilings with full jitter, and a low
// highest ceiling so a restarted relay gets its connectors back within seconds.
import t from 'tap';
import { BACKOFF_BASE_MS, Backoff, RECONNECT_CEILING_MS } from '../src/connector/backoff.js';

t.test('ceilings double up to maxMs with full jitter', async (t) => {
  const top = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 1 });
  const seen = Array.from({ length: 7 }, () => top.next());
  t.same(seen, [100, 200, 400, 800, 1000, 1000, 1000], 'random()=1 shows the ceilings');
  t.equal(top.attempts, 7);

  const half = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.5 });
  t.same(
    Array.from({ length: 6 }, () => half.next()),
    [50, 100, 200, 400, 500, 500],
    'jitter scales the ceiling',
  );

  top.reset();
  t.equal(top.attempts, 0, 'reset clears the attempt count');
  t.equal(top.next(), 100, 'and restarts from baseMs');

  const floor = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
  t.same(
    Array.from({ length: 5 }, () => floor.next()),
    [50, 50, 50, 50, 50],
    'never below baseMs/2',
  );

  const tiny = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.1 });
  t.same([tiny.next(), tiny.next(), tiny.next(), tiny.next()], [50, 50, 50, 80], 'a small draw is lifted to baseMs/2');

  const many = new Backoff({ baseMs: 250, maxMs: 30_000, random: () => 0.999999 });
  for (let i = 0; i < 200; i++) many.next();
  t.equal(many.next(), 30_000, 'after many attempts the delay is still the finite cap');

  let draws = 0;
  const rnd = new Backoff({ baseMs: 10, maxMs: 5000 });
  for (let i = 0; i < 500; i++) {
    const d = rnd.next();
    const ceiling = Math.min(5000, 10 * 2 ** Math.min(i, 30));
    if (d >= 5 && d <= ceiling) draws++;
  }
  t.equal(draws, 500, 'with real randomness every delay is within [baseMs/2, ceiling]');
});

t.test('defaults: first retry within 250 ms, never more than 2 s apart', async (t) => {
  t.equal(BACKOFF_BASE_MS, 250);
  t.equal(RECONNECT_CEILING_MS, 2_000);
  const worst = new Backoff({ random: () => 1 });
  t.same(
    Array.from({ length: 8 }, () => worst.next()),
    [250, 500, 1000, 2000, 2000, 2000, 2000, 2000],
    'the ceilings with the worst draw',
  );
  const jittered = new Backoff({ random: () => 0.5 });
  for (let i = 0; i < 20; i++) jittered.next();
  t.equal(jittered.next(), 1000, 'a middle draw waits half the ceiling');
});

/**
 * Regression (outside reliability run): after a relay kill -9 the connector waited up to
 * 4.2 s more once the relay listened again, because the ceiling kept doubling towards
 * 30 s while the relay restarted. Simulated here: a connector that lost its relay at 0
 * retries against a relay that listens again at `downMs`; how long after that does its
 * next attempt come, with the worst draw every time?
 */
t.test('a relay that restarts gets the connector back within the ceiling, however long it took', async (t) => {
  const lateness = (downMs: number, random: () => number): number => {
    const b = new Backoff({ random });
    let at = 0;
    while (at < downMs) at += b.next();
    return at - downMs;
  };
  let worst = 0;
  for (let downMs = 0; downMs <= 120_000; downMs += 37)
    worst = Math.max(
      worst,
      lateness(downMs, () => 1),
    );
  t.ok(worst <= RECONNECT_CEILING_MS, `worst wait after the relay listens: ${worst} ms`);
  t.ok(lateness(3_500, () => 1) <= 2_000, 'a busy relay start (3.5 s) costs at most 2 s more');

  // With real jitter the mean wait is well under the ceiling (uniform phase, uniform draw).
  let sum = 0;
  const n = 2000;
  for (let i = 0; i < n; i++) sum += lateness(1_000 + Math.random() * 4_000, Math.random);
  t.ok(sum / n < RECONNECT_CEILING_MS * 0.75, `mean wait after the relay listens: ${Math.round(sum / n)} ms`);
});
