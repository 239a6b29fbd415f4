// limits.drainTimeout: how long a SIGTERM drain lets requests in flight finish.
import t from 'tap';
import { buildLimits } from '../src/config/limits-config.js';
import { Validation } from '../src/config/schema.js';

function parse(raw: unknown) {
  const v = new Validation();
  const limits = buildLimits(v, raw);
  return { ms: limits.drainTimeoutMs, issues: v.issues.map((i) => i.path) };
}

t.test('limits.drainTimeout', async (t) => {
  const cases: [string, unknown, number, string[]][] = [
    ['default 30 s', undefined, 30_000, []],
    ['a duration', { drainTimeout: '5s' }, 5_000, []],
    ['0: cut at once', { drainTimeout: 0 }, 0, []],
    ['"0ms"', { drainTimeout: '0ms' }, 0, []],
    ['one hour at most', { drainTimeout: '1h' }, 3_600_000, []],
    ['longer than an hour is refused', { drainTimeout: '2h' }, 7_200_000, ['limits.drainTimeout']],
    ['not a duration', { drainTimeout: 'soon' }, 30_000, ['limits.drainTimeout']],
    ['a bare number other than 0', { drainTimeout: 5 }, 30_000, ['limits.drainTimeout']],
    ['negative', { drainTimeout: '-1s' }, 30_000, ['limits.drainTimeout']],
  ];
  for (const [name, raw, ms, issues] of cases) {
    const got = parse(raw);
    t.same(got.issues, issues, `${name}: issues`);
    if (issues.length === 0) t.equal(got.ms, ms, `${name}: value`);
  }
});
