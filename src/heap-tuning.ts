// V8 heap settings for the long-running roles (relay, connector).
//
// A proxy allocates few JS objects but many Buffers: every TLS record read is a
// new 16 KiB ArrayBuffer. After each young-generation GC, V8 starts a full
// (mark-compact) collection whenever the old generation's headroom is smaller
// than the young generation; with the default growing factor the headroom of a
// ~15–25 MB heap is about as large as the heap, so during a bulk transfer V8
// ran a full collection every 50–100 ms that freed nothing (trace: 24.6 MB ->
// 24.5 MB, 200+ per GB in the connector), costing ~40% of the process's CPU.
// With the old generation allowed to grow to 4x its live size before the next
// full collection, that drops to a handful per transfer (measured with
// `npm run bench --node-flags=--trace-gc`, README Performance).
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
