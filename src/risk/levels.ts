// Risk levels in order, and the two ways they combine: a sign-in's risk is its
// highest detection; a user's risk lowers each detection one step per decay period.
import type { DetectionLevel, RiskLevelName } from '../store/types.js';

export const LEVELS: readonly RiskLevelName[] = ['none', 'low', 'medium', 'high'];

export function levelRank(level: RiskLevelName): number {
  return LEVELS.indexOf(level);
}

/** The highest of the levels, `none` for none. */
export function highest(levels: Iterable<RiskLevelName>): RiskLevelName {
  let best = 0;
  for (const l of levels) best = Math.max(best, levelRank(l));
  return LEVELS[best]!;
}

/** The level `steps` steps lower, `none` below low. */
export function lowered(level: DetectionLevel, steps: number): RiskLevelName {
  return LEVELS[Math.max(0, levelRank(level) - Math.max(0, Math.floor(steps)))]!;
}
