// Reconnect delays: exponential with full jitter, so a relay restart is not met
// by every connector at the same instant. Randomness is injectable for tests.
//
// The ceiling is low on purpose: a relay that went away is restarting (systemd,
// a replica rolling), and what it costs to wait longer is traffic. With a 2 s
// ceiling a connector is back at most 2 s (about 1 s on average) after the
// relay listens again; a relay killed -9 carries traffic within 5 s. A failed
// attempt against a relay that is down is one refused TCP connection, so the
// short ceiling costs the relay nothing while it is away. No refusal of the
// connector API says "come back later", so no attempt waits longer.

export interface BackoffOptions {
  baseMs?: number;
  maxMs?: number;
  random?: () => number;
}

/** Default first ceiling: the first retry comes within 250 ms. */
export const BACKOFF_BASE_MS = 250;
/** Default highest ceiling (see above). */
export const RECONNECT_CEILING_MS = 2_000;

export class Backoff {
  private attempt = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? BACKOFF_BASE_MS;
    this.maxMs = options.maxMs ?? RECONNECT_CEILING_MS;
    this.random = options.random ?? Math.random;
  }

  /** The next delay; each call doubles the ceiling up to maxMs. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(this.baseMs / 2, Math.round(this.random() * ceiling));
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
