// What a PostgreSQL store remembers so that signed-in users keep working while the
// database is unreachable (types.ts: reads on the request path may be answered from
// what the store holds). The rules, all of them:
//  - Outside an outage every read goes to the database, so a change committed by
//    another replica is seen at once. Request-path reads (sessions.isActive,
//    connectors.get and getCertificate, keys.list) remember their answer: the last
//    one per key, at most MAX_ENTRIES, the oldest dropped first.
//  - An outage is a read failing with ERR_STORE_UNAVAILABLE, or the change feed's
//    connection being down (then the remembered answer is given at once instead of
//    after a connection timeout). A remembered key answers from memory; a key never
//    seen rejects with ERR_STORE_UNAVAILABLE.
//  - A change made here, or a topic from the feed, removes what it may contradict:
//    connectors and keys are forgotten (read again on next use); remembered sessions
//    and the set of ended provider sessions are read again, because a sign-out
//    elsewhere must still count during a later outage. 'all' (after a gap in the
//    feed) does this for everything. A read that started before such a change and
//    ends after it is not remembered (the epoch moved).
// So what is served during an outage is what the database said when it was last
// seen: a revocation committed elsewhere while this replica cannot reach the
// database takes effect when it can again.
import { isProxyctlError } from '../../errors.js';

export const MAX_ENTRIES = 20_000;

export class Memory<V> {
  private readonly entries = new Map<string, V>();
  private epochCount = 0;

  /** Moves when what is remembered may be out of date. */
  get epoch(): number {
    return this.epochCount;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  get(key: string): V | undefined {
    return this.entries.get(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Remembers `value`, unless it was read before the epoch last moved. */
  set(key: string, value: V, epoch = this.epochCount): void {
    if (epoch !== this.epochCount) return;
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Marks in-flight reads as too old to keep, keeping what is remembered (it is about to be read again). */
  stale(): void {
    this.epochCount++;
  }

  forget(): void {
    this.entries.clear();
    this.epochCount++;
  }

  /** The database's answer (remembered), or during an outage the remembered one. */
  async read(key: string, offline: boolean, fetch: () => Promise<V>): Promise<V> {
    if (offline && this.entries.has(key)) return this.entries.get(key)!;
    const epoch = this.epochCount;
    try {
      const value = await fetch();
      this.set(key, value, epoch);
      return value;
    } catch (err) {
      if (isProxyctlError(err, 'ERR_STORE_UNAVAILABLE') && this.entries.has(key)) return this.entries.get(key)!;
      throw err;
    }
  }
}

/**
 * Runs `refresh` now, or once more after the run in progress: calls while a run is
 * in flight coalesce, and the last call is always followed by a complete run. A
 * failed run (the database is away) is dropped: the feed's 'all' on reconnection
 * asks again.
 */
export function serialRefresh(refresh: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  let again = false;
  const run = async (): Promise<void> => {
    do {
      again = false;
      await refresh().catch(() => undefined);
    } while (again);
    running = undefined;
  };
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = run();
    return running;
  };
}
