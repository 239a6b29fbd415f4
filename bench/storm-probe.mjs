// Preloaded into a benchmarked server by bench/storm.mjs (`node --import`): on
// SIGUSR2 it appends one JSON line of process.memoryUsage() to $STORM_PROBE_FILE,
// after a full garbage collection when the process runs with --expose-gc and
// $STORM_PROBE_GC=1. Lets the storm read the live JS heap of the relay and of the
// bare server the same way, without an admin listener or product code.
import { appendFileSync } from 'node:fs';

const file = process.env.STORM_PROBE_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    if (process.env.STORM_PROBE_GC === '1' && typeof globalThis.gc === 'function') globalThis.gc();
    const m = process.memoryUsage();
    appendFileSync(file, `${JSON.stringify({ t: Date.now(), ...m })}\n`);
  });
}
