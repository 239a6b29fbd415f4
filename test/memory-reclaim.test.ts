// The relay gives native memory back after a storm of closed connections (issue 22):
// when a reclaim is due (the storm's size, quiet, the longest wait, the spacing), what
// it runs (full GC, then malloc_trim), the opt-out, and the real hooks on this machine.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  RECLAIM_TIMING,
  StormReclaimer,
  nativeReclaimHooks,
  onGlibc,
  reclaimSetting,
  type ReclaimResult,
} from '../src/memory-reclaim.js';
import { ManualClock } from './helpers/clock.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const timing = { afterCloses: 10, quietMs: 2000, maxWaitMs: 20_000, minIntervalMs: 30_000 };

function setup() {
  const clock = new ManualClock(1_000_000);
  const calls: string[] = [];
  const results: ReclaimResult[] = [];
  const hooks = {
    gc: () => void calls.push('gc'),
    trim: () => (calls.push('trim'), true),
  };
  const r = new StormReclaimer(hooks, (x) => results.push(x), clock, timing);
  const close = (n: number) => {
    for (let i = 0; i < n; i++) r.noteClose();
  };
  return { clock, calls, results, r, close };
}

t.test('defaults: 1,000 closes, 2 s quiet, 20 s longest wait, 30 s apart', async (t) => {
  t.same(RECLAIM_TIMING, { afterCloses: 1000, quietMs: 2000, maxWaitMs: 20_000, minIntervalMs: 30_000 });
});

t.test('fewer closes than the threshold: nothing runs', async (t) => {
  const { clock, calls, close } = setup();
  close(9);
  await clock.advance(60_000);
  t.same(calls, []);
  t.equal(clock.timers, 0, 'no timer pending');
});

t.test('a storm: one reclaim, GC before trim, once closing has been quiet', async (t) => {
  const { clock, calls, results, close } = setup();
  close(10);
  await clock.advance(1500);
  close(5); // still closing: the quiet wait starts again
  await clock.advance(1500);
  t.same(calls, [], 'not while connections keep closing');
  await clock.advance(500);
  t.same(calls, ['gc', 'trim'], 'full GC first, so the native memory of dead sockets is freed, then trim');
  t.equal(results.length, 1);
  t.equal(results[0]!.closed, 15, 'every close since the last reclaim is counted');
  t.equal(results[0]!.released, true);
  t.equal(clock.timers, 0);
});

t.test('closes that never stop: the reclaim runs after the longest wait', async (t) => {
  const { clock, calls, close } = setup();
  close(10);
  for (let ms = 0; ms < 19_000; ms += 1000) {
    await clock.advance(1000);
    close(1);
  }
  t.same(calls, [], 'refreshed while the next run stays within 20 s');
  for (let ms = 0; ms < 3000; ms += 500) {
    await clock.advance(500);
    close(1);
  }
  t.same(calls, ['gc', 'trim'], 'ran by 20 s after it became due');
});

t.test('two storms close together: the second waits for the 30 s spacing', async (t) => {
  const { clock, calls, close } = setup();
  close(10);
  await clock.advance(2000);
  t.equal(calls.length, 2);
  close(10);
  await clock.advance(2000);
  t.equal(calls.length, 2, 'not 4 s after the first');
  await clock.advance(27_900);
  t.equal(calls.length, 2, 'not 29.9 s after');
  await clock.advance(100);
  t.equal(calls.length, 4, '30 s after the first');
});

t.test('close() cancels a due reclaim and ignores later closes', async (t) => {
  const { clock, calls, r, close } = setup();
  close(10);
  r.close();
  t.equal(clock.timers, 0);
  close(100);
  await clock.advance(60_000);
  t.same(calls, []);
});

t.test('attach counts the closes of accepted connections', async (t) => {
  const { clock, calls, r } = setup();
  const server = new EventEmitter();
  r.attach(server);
  const sockets = Array.from({ length: 10 }, () => new EventEmitter());
  for (const s of sockets) server.emit('connection', s);
  await clock.advance(5000);
  t.same(calls, [], 'open connections are not counted');
  for (const s of sockets) s.emit('close');
  await clock.advance(2000);
  t.same(calls, ['gc', 'trim']);
});

t.test('PROXYCTL_MEMORY_RECLAIM: on, off, a storm size; anything else refused', async (t) => {
  t.same(reclaimSetting({}), {});
  t.same(reclaimSetting({ PROXYCTL_MEMORY_RECLAIM: 'on' }), {});
  t.equal(reclaimSetting({ PROXYCTL_MEMORY_RECLAIM: 'off' }), undefined);
  t.same(reclaimSetting({ PROXYCTL_MEMORY_RECLAIM: '250' }), { afterCloses: 250 });
  for (const bad of ['0', '-5', '1.5', 'yes', '1e3', '12345678901'])
    t.throws(() => reclaimSetting({ PROXYCTL_MEMORY_RECLAIM: bad }), { code: 'ERR_CONFIG_INVALID' }, bad);
});

t.test('the real hooks on this machine (glibc): a full GC and malloc_trim', { skip: !onGlibc() }, async (t) => {
  // In a fresh process: setting --expose-gc must not leak a global gc into the main context.
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const m = await import('./dist/memory-reclaim.js');
       const h = m.nativeReclaimHooks();
       const garbage = Array.from({ length: 20000 }, (_, i) => Buffer.alloc(2048, i));
       garbage.length = 0;
       h.gc();
       process.stdout.write(JSON.stringify({ hooks: !!h, globalGc: typeof globalThis.gc, trimmed: h.trim() }));`,
    ],
    { cwd: root, encoding: 'utf8' },
  );
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { hooks: true, globalGc: 'undefined', trimmed: true });
  t.ok(nativeReclaimHooks(), 'koffi and libc load in this process too');
});
