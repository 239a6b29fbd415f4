// The relay's risk services, built from `risk:` and `geo:`: the location databases
// (loaded in the background on the first public address), the anonymous and
// malicious address lists (watched), the embedded provider's attack counters, the
// engine that turns an attempt and the user's history into detections, and a cache
// of users' risk for the request path (which must not wait for the store).
import type { Clock } from '../../clock.js';
import type { GeoConfig, RiskConfig } from '../../config/risk-config.js';
import type { Logger } from '../../log.js';
import { RiskEngine, userRiskHorizonMs } from '../../risk/engine.js';
import { GeoLocator } from '../../risk/geo.js';
import { IpLists } from '../../risk/ip-lists.js';
import { AttackTrackers } from '../../risk/trackers.js';
import type { RiskLevelName, Store } from '../../store/index.js';

/** How long a user's risk is used from memory before it is read again (a change in the store clears it). */
const USER_RISK_TTL_MS = 60_000;
const MAX_CACHED_USERS = 20_000;

export class RiskServices {
  readonly geo: GeoLocator;
  readonly trackers: AttackTrackers;
  private lists: IpLists;
  private engineNow: RiskEngine;
  private readonly userRisks = new Map<string, { level: RiskLevelName; at: number }>();
  private readonly refreshing = new Set<string>();

  constructor(
    private risk: RiskConfig,
    private geoConfig: GeoConfig,
    private readonly deps: { store: Store; log: Logger; clock: Clock },
  ) {
    this.geo = new GeoLocator({
      cityDatabases: geoConfig.cityDatabases,
      asnDatabases: geoConfig.asnDatabases,
      logger: deps.log,
    });
    this.trackers = new AttackTrackers(risk.trackers);
    this.lists = this.listsFor(risk);
    this.engineNow = this.engineFor(risk, this.lists);
  }

  get engine(): RiskEngine {
    return this.engineNow;
  }

  private listsFor(risk: RiskConfig): IpLists {
    return new IpLists(risk.lists, { logger: this.deps.log, pollMs: risk.listPollMs, clock: this.deps.clock });
  }

  private engineFor(risk: RiskConfig, lists: IpLists): RiskEngine {
    return new RiskEngine({ options: risk.engine, lists, trackers: this.trackers, clock: this.deps.clock });
  }

  /** Reads the address lists; refused (ERR_CONFIG_READ) when one cannot be read. */
  async start(): Promise<void> {
    await this.lists.start();
  }

  /**
   * Takes a reloaded `risk:` section: new lists are read before they replace the old
   * ones (a list that cannot be read keeps the old ones and rejects). The location
   * databases are read once per process: changing `geo` takes a restart.
   */
  async reconfigure(risk: RiskConfig, geo: GeoConfig): Promise<string[]> {
    const restart = JSON.stringify(geo) !== JSON.stringify(this.geoConfig) ? ['geo'] : [];
    if (JSON.stringify(risk) === JSON.stringify(this.risk)) return restart;
    const lists = this.listsFor(risk);
    await lists.start();
    const old = this.lists;
    this.lists = lists;
    this.engineNow = this.engineFor(risk, lists);
    this.risk = risk;
    old.close();
    this.userRisks.clear();
    return restart;
  }

  /** The user's risk from memory (request path); an entry missing or old is read again in the background. */
  userRiskNow(subject: string): RiskLevelName {
    const hit = this.userRisks.get(subject);
    const now = this.deps.clock.now();
    if (!hit || now - hit.at > USER_RISK_TTL_MS) void this.userRisk(subject).catch(() => undefined);
    return hit?.level ?? 'none';
  }

  /** The user's risk read from the store now (sign-in), remembered for the request path. */
  async userRisk(subject: string): Promise<RiskLevelName> {
    if (this.refreshing.has(subject)) return this.userRisks.get(subject)?.level ?? 'none';
    this.refreshing.add(subject);
    try {
      const now = this.deps.clock.now();
      const { store } = this.deps;
      const [detections, state] = await Promise.all([
        store.risk.detections({
          subject,
          since: now - userRiskHorizonMs(this.risk.engine.userRiskDecayMs),
          limit: 1000,
        }),
        store.risk.userState(subject),
      ]);
      const level = this.engineNow.userRisk(detections, state, now);
      if (this.userRisks.size >= MAX_CACHED_USERS) this.userRisks.clear();
      this.userRisks.set(subject, { level, at: now });
      return level;
    } finally {
      this.refreshing.delete(subject);
    }
  }

  /** The store says risk changed (a detection, a dismissal) here or on another replica. */
  forgetUserRisks(): void {
    this.userRisks.clear();
  }

  close(): void {
    this.lists.close();
  }
}
