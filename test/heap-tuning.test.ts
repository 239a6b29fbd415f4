// The relay and connector raise V8's heap growing factor at start (fewer
// fruitless full collections while streaming), unless the operator chose one.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { HEAP_GROWING_PERCENT, tuneHeapForStreaming } from '../src/heap-tuning.js';

const root = fileURLToPath(new URL('..', import.meta.url));

t.test('an operator flag on the node command line wins', async (t) => {
  t.equal(tuneHeapForStreaming(['--heap-growing-percent=50']), false, 'dash spelling');
  t.equal(tuneHeapForStreaming(['--enable-source-maps', '--heap_growing_percent=50']), false, 'underscore spelling');
});

t.test('without an operator choice the flag is set', async (t) => {
  t.equal(HEAP_GROWING_PERCENT, 300);
  t.equal(tuneHeapForStreaming(['--enable-source-maps', '--max-old-space-size=512']), true);
});

t.test('the built module, in a fresh node process, with and without the operator flag', async (t) => {
  const run = (flags: string[]) =>
    spawnSync(
      process.execPath,
      [
        ...flags,
        '--input-type=module',
        '-e',
        "const m = await import('./dist/heap-tuning.js'); process.stdout.write(String(m.tuneHeapForStreaming()));",
      ],
      { cwd: root, encoding: 'utf8' },
    );
  const plain = run([]);
  t.equal(plain.status, 0, plain.stderr);
  t.equal(plain.stdout, 'true');
  // V8 takes an unknown flag silently except for a line on stderr: a misspelt flag would show here.
  t.equal(plain.stderr, '', 'V8 knows the flag');
  const chosen = run(['--heap-growing-percent=120']);
  t.equal(chosen.status, 0, chosen.stderr);
  t.equal(chosen.stdout, 'false');
});
