// V8 heap settings for the long-running roles (relay, connector).
//
// A proxy allocates few JS objects but many Buffers: every TLS record read is a
// new 16 KiB ArrayBuffer. With V8's default heap growing factor, `--trace-gc`
// during a bulk transfer showed each young-generation GC (forced by that buffer
// memory) at once starting a full mark-compact on the old generation's
// allocation limit, which then freed nothing (24.6 MB -> 24.5 MB): dozens per
// GB, about a third of the process's CPU in marking and sweeping (perf). With
// the old generation allowed to grow to 4x its live size before the next full
// collection, that drops to a handful per run (A/B with
// `npm run bench -- --node-flags=--trace-gc`, README Performance).
//
// The flag is read each time V8 recomputes its limits, so setting it at start
// is effective. An operator's own choice (node --heap-growing-percent=N; V8
// does not take it from NODE_OPTIONS) always wins.
import v8 from 'node:v8';

export const HEAP_GROWING_PERCENT = 300;

/** True when the flag was set here; false when the operator set it already. */
export function tuneHeapForStreaming(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return false;
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
