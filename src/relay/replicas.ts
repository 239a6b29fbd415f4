// This relay among its replicas: it records itself in the store (id, its own
// connector API URL, a heartbeat every second) and keeps the live set — every
// replica heard from within the last few seconds — for connectors, which open
// channels to each. A replica that stops heartbeating (killed, partitioned) leaves
// the set after REPLICA_STALE_MS; one that stops cleanly leaves at once.
import { randomUUID } from 'node:crypto';
import type { Clock, Timer } from '../clock.js';
import { systemClock } from '../clock.js';
import type { Logger } from '../log.js';
import type { ReplicaRecord, Store } from '../store/index.js';
import { VERSION } from '../version.js';
import type { ReplicaInfo } from '../protocol/connector-api.js';

export const REPLICA_HEARTBEAT_MS = 1_000;
export const REPLICA_STALE_MS = 5_000;

export type { ReplicaInfo };

export class ReplicaRegistry {
  readonly id = randomUUID();
  private set: ReplicaInfo[];
  private timer: Timer | undefined;
  private stopped = false;
  private failing = false;
  private beating: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      store: Store;
      log: Logger;
      /** This replica's connector API URL as connectors must use it. */
      url: () => string;
      /** Called when the live set changed (after the first beat). */
      onChange: (set: readonly ReplicaInfo[]) => void;
      now: () => number;
      clock?: Clock;
    },
  ) {
    this.set = [];
  }

  /** The live replicas, this one always included (it is alive: it is answering). */
  live(): ReplicaInfo[] {
    const self = { id: this.id, url: this.deps.url() };
    const others = this.set.filter((r) => r.id !== this.id);
    return [...others, self].sort((a, b) => a.id.localeCompare(b.id));
  }

  private get clock(): Clock {
    return this.deps.clock ?? systemClock;
  }

  async start(): Promise<void> {
    await this.beat();
    const tick = () => {
      if (this.stopped) return;
      this.timer = this.clock
        .setTimeout(() => {
          this.beating = this.beat().finally(tick);
        }, REPLICA_HEARTBEAT_MS)
        .unref();
    };
    tick();
  }

  /** Heartbeat and re-read the set; a store outage keeps the last set known. */
  async beat(): Promise<void> {
    const now = this.deps.now();
    try {
      await this.deps.store.replicas.heartbeat(
        { id: this.id, connectorApiUrl: this.deps.url(), version: VERSION },
        now,
      );
      const rows: ReplicaRecord[] = await this.deps.store.replicas.live(now, REPLICA_STALE_MS);
      if (this.failing) this.deps.log.info({ replica_id: this.id }, 'replica heartbeat recorded again');
      this.failing = false;
      // A replica killed and restarted on the same URL leaves a row behind until it goes stale:
      // one entry per URL, the latest started (this replica's own URL is always this replica).
      const byUrl = new Map<string, ReplicaRecord>();
      for (const r of [...rows].sort((a, b) => a.startedAt - b.startedAt)) byUrl.set(r.connectorApiUrl, r);
      byUrl.delete(this.deps.url());
      const next = [...byUrl.values()].map((r) => ({ id: r.id, url: r.connectorApiUrl }));
      const before = JSON.stringify(this.live());
      this.set = next;
      if (JSON.stringify(this.live()) !== before) {
        this.deps.log.info({ replicas: this.live().map((r) => r.url) }, 'replica set changed');
        this.deps.onChange(this.live());
      }
    } catch (err) {
      if (!this.failing)
        this.deps.log.warn({ replica_id: this.id, err: (err as Error).message }, 'cannot record replica heartbeat');
      this.failing = true;
    }
  }

  /** Stops heartbeating and leaves the set at once (best effort: the store may be gone). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    await this.beating;
    this.clock.clearTimeout(this.timer);
    await this.deps.store.replicas.remove(this.id).catch(() => undefined);
  }
}
