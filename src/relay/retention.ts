// `logs.retention`: the sign-in log and the risk detections older than the
// retention, and audit entries older than `logs.auditRetention`, are deleted in the
// background: a minute after start, then every hour. Each replica prunes; deleting
// what another replica already deleted is no work.
import type { Clock, Timer } from '../clock.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';

const FIRST_MS = 60_000;
const EVERY_MS = 3_600_000;

export class LogRetention {
  private first: Timer | undefined;
  private timer: Timer | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly deps: {
      store: Store;
      log: Logger;
      clock: Clock;
      retention: () => { retentionMs: number; auditRetentionMs: number };
    },
  ) {}

  start(): void {
    if (this.timer) return;
    this.first = this.deps.clock.setTimeout(() => void this.prune(), FIRST_MS).unref();
    this.timer = this.deps.clock.setInterval(() => void this.prune(), EVERY_MS).unref();
  }

  /** One pass; resolves when done (errors are logged: the next pass tries again). */
  prune(): Promise<void> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    const { store, log, clock } = this.deps;
    const { retentionMs, auditRetentionMs } = this.deps.retention();
    const now = clock.now();
    try {
      const signIns = await store.signIns.prune(now - retentionMs);
      const detections = await store.risk.prune(now - retentionMs);
      const audit = await store.audit.prune(now - auditRetentionMs);
      if (signIns + detections + audit > 0)
        log.info({ sign_ins: signIns, detections, audit }, 'pruned logs past their retention');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot prune logs; trying again in an hour');
    }
  }

  async stop(): Promise<void> {
    this.deps.clock.clearTimeout(this.first);
    this.deps.clock.clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
