// Time as a dependency: the current time and the timers of backoff, heartbeats,
// dead-relay detection, queue deadlines and drains all come from one Clock, so
// tests can move time forward instead of waiting for it.

/** A pending timer: the subset of Node's Timeout the code relies on. */
export interface Timer {
  /** Restarts the countdown with the original delay (a re-armed watchdog). */
  refresh(): Timer;
  /** Lets the process exit while the timer is pending. */
  unref(): Timer;
}

export interface Clock {
  /** Milliseconds since the epoch, like Date.now(). */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(timer: Timer | undefined): void;
  setInterval(fn: () => void, ms: number): Timer;
  clearInterval(timer: Timer | undefined): void;
}

/** Node's clock and timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout | undefined),
};
