// The risk engine: one attempt and the user's history in, the attempt's
// detections out; detections combine into a sign-in risk (the highest level) and
// a user risk (each detection lowered one step per decay period, nothing before an
// administrator's dismissal, high after a confirmation). The engine reads no store:
// the caller fetches the history (historyQuery) and stores what comes out.
import { systemClock, type Clock } from '../clock.js';
import type {
  RiskDetectionRecord,
  RiskLevelName,
  SignInDetection,
  SignInRecord,
  UserRiskState,
} from '../store/types.js';
import {
  ANONYMOUS_IP,
  MALICIOUS_IP,
  atypicalTravel,
  priorSuccesses,
  unfamiliarProperties,
  type SignInAttempt,
  type TravelOptions,
} from './detectors.js';
import type { IpLists } from './ip-lists.js';
import { highest, lowered } from './levels.js';
import type { AttackTrackers } from './trackers.js';

export interface RiskOptions extends TravelOptions {
  /** A detection's level drops one step per this much age in the user risk. */
  userRiskDecayMs: number;
}

const DAY = 86_400_000;

export const RISK_DEFAULTS: RiskOptions = Object.freeze({
  learningPeriodMs: 7 * DAY,
  travelSpeedKmh: 1000,
  minTravelKm: 500,
  userRiskDecayMs: 7 * DAY,
});

/** How much history assess wants: 90 days, newest 200 successes. */
export const HISTORY_DAYS = 90;
export const HISTORY_LIMIT = 200;

/** The highest detection level, `none` without any. */
export function signInRisk(detections: readonly { level: SignInDetection['level'] }[]): RiskLevelName {
  return highest(detections.map((d) => d.level));
}

/**
 * How far back a user's detections can still count: three decay periods lower the
 * highest level (high) to none. Callers read the store back this far.
 */
export function userRiskHorizonMs(decayMs: number): number {
  return 3 * decayMs;
}

/** A detection the user remediated (multi-factor step-up on a risky sign-in) no longer counts. */
export function isRemediated(d: { details?: Record<string, unknown> }): boolean {
  return !!d.details?.['remediated'];
}

/**
 * A user's risk now: each detection after the last dismissal, and not remediated,
 * counts at its level lowered one step per full `decayMs` of age, and the levels
 * combine as their maximum; a confirmation after the last dismissal holds the user at high.
 * The maximum, not a sum: one Tor sign-in from a new country is two mediums, and
 * should not alone make a user high (which blocks under a typical policy).
 */
export function userRisk(
  detections: readonly (Pick<RiskDetectionRecord, 'at' | 'level'> & Partial<Pick<RiskDetectionRecord, 'details'>>)[],
  state: UserRiskState | undefined,
  now: number,
  decayMs: number = RISK_DEFAULTS.userRiskDecayMs,
): RiskLevelName {
  const dismissedAt = state?.dismissedAt ?? null;
  if (state?.confirmedAt != null && (dismissedAt === null || state.confirmedAt > dismissedAt)) return 'high';
  const levels: RiskLevelName[] = [];
  for (const d of detections) {
    if ((dismissedAt !== null && d.at <= dismissedAt) || isRemediated(d)) continue;
    levels.push(lowered(d.level, Math.max(0, now - d.at) / decayMs));
  }
  return highest(levels);
}

export interface RiskEngineDeps {
  options?: Partial<RiskOptions>;
  /** Anonymous and malicious address lists; without them neither detection fires. */
  lists?: Pick<IpLists, 'isAnonymous' | 'listing'>;
  /** Spray and brute-force counters the embedded provider feeds; consulted on successes. */
  trackers?: AttackTrackers;
  clock?: Clock;
}

export class RiskEngine {
  readonly options: RiskOptions;
  private readonly clock: Clock;

  constructor(private readonly deps: RiskEngineDeps = {}) {
    this.options = { ...RISK_DEFAULTS, ...deps.options };
    this.clock = deps.clock ?? systemClock;
  }

  /** The store query for `SignInLog.history(subject, since, limit)` ahead of assess. */
  historyQuery(at: number = this.clock.now()): { since: number; limit: number } {
    return { since: at - Math.max(HISTORY_DAYS * DAY, this.options.learningPeriodMs * 2), limit: HISTORY_LIMIT };
  }

  /** Detections of one attempt; history is the user's earlier successful sign-ins, newest first. */
  assess(attempt: SignInAttempt, history: readonly SignInRecord[]): SignInDetection[] {
    const out: SignInDetection[] = [];
    const lists = this.deps.lists;
    const isAnonymous = (ip: string | null) => (ip !== null && lists ? lists.isAnonymous(ip) : false);
    if (attempt.ip !== null && lists) {
      if (lists.listing('malicious', attempt.ip) !== undefined)
        out.push({ ...MALICIOUS_IP, detail: `${attempt.ip} is on a malicious address list` });
      if (isAnonymous(attempt.ip))
        out.push({ ...ANONYMOUS_IP, detail: `${attempt.ip} is on an anonymous address list` });
    }
    if (attempt.subject !== null) {
      const prior = priorSuccesses(history, attempt.at);
      const travel = atypicalTravel(attempt, prior, this.options, isAnonymous);
      if (travel) out.push(travel);
      const unfamiliar = unfamiliarProperties(attempt, prior, this.options);
      if (unfamiliar) out.push(unfamiliar);
    }
    const success = (attempt.result ?? 'success') === 'success';
    const username = attempt.username ?? (attempt.kind === 'provider' ? attempt.subject : null);
    if (success && this.deps.trackers && attempt.ip !== null && username) {
      out.push(...this.deps.trackers.loginSuccess({ ip: attempt.ip, username, at: attempt.at }));
    }
    return out;
  }

  /** The user's risk at `now` (default the clock's), with this engine's decay (see userRisk). */
  userRisk(
    detections: Parameters<typeof userRisk>[0],
    state: UserRiskState | undefined,
    now: number = this.clock.now(),
  ): RiskLevelName {
    return userRisk(detections, state, now, this.options.userRiskDecayMs);
  }
}
