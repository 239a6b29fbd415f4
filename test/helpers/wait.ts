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

/**
 * An upper bound on something that is awaited anyway: resolves with the promise's value,
 * or rejects once ms have passed without it, naming what was awaited.
 */
export async function within<T>(promise: Promise<T>, ms: number, what = 'a promise'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
