// Waiting on a condition instead of a fixed time: polls until cond() holds and
// fails with a message naming what never happened.
export interface WaitOptions {
  timeoutMs?: number;
  /** Poll interval; conditions are cheap, so short. */
  everyMs?: number;
  /** What was awaited, for the failure message. */
  what?: string;
}

/** Resolves when cond() is truthy (returns its value); rejects after timeoutMs (default 5 s). */
export async function waitFor<T>(cond: () => T | Promise<T>, options: WaitOptions = {}): Promise<T> {
  const { timeoutMs = 5000, everyMs = 10, what = 'condition' } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
