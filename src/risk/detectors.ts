// The per-attempt detections: pure functions of the attempt, the user's earlier
// successful sign-ins and the address lists. Each names its type and level
// here, once; docs/risk.md explains them to administrators.
import type { DetectionLevel, SignInDetection, SignInKind, SignInRecord } from '../store/types.js';
import { clientKey, type ClientResult } from './client.js';
import type { GeoResult } from './geo.js';

export interface DetectionSpec {
  readonly type: string;
  readonly level: DetectionLevel;
}

export const ANONYMOUS_IP: DetectionSpec = { type: 'anonymousIp', level: 'medium' };
export const MALICIOUS_IP: DetectionSpec = { type: 'maliciousIp', level: 'high' };
export const ATYPICAL_TRAVEL: DetectionSpec = { type: 'atypicalTravel', level: 'medium' };
/** Low for one new property, medium for two or more. */
export const UNFAMILIAR_PROPERTIES = 'unfamiliarProperties';
export const PASSWORD_SPRAY: DetectionSpec = { type: 'passwordSpray', level: 'high' };
/** Medium for the failures; high on a success from one of the failing sources. */
export const BRUTE_FORCE = 'bruteForce';

/** Replays the relay refuses anyway, recorded so they count against the user. */
export const REPLAY_DETECTIONS = {
  /** A sign-in state (the OIDC `state`) presented a second time. */
  stateReplay: { type: 'stateReplay', level: 'medium' },
  /** An authorization code presented a second time. */
  codeReplay: { type: 'codeReplay', level: 'medium' },
  /** An ID token whose nonce is not the one the sign-in started with. */
  nonceMismatch: { type: 'nonceMismatch', level: 'medium' },
  /** A session cookie used after its session was signed out or revoked. */
  revokedSessionReplay: { type: 'revokedSessionReplay', level: 'medium' },
} as const satisfies Record<string, DetectionSpec>;

export type ReplayType = keyof typeof REPLAY_DETECTIONS;

export function replayDetection(type: ReplayType, detail?: string): SignInDetection {
  const spec = REPLAY_DETECTIONS[type];
  return detail === undefined ? { ...spec } : { ...spec, detail };
}

/** One sign-in attempt as the engine sees it. */
export interface SignInAttempt {
  subject: string | null;
  ip: string | null;
  at: number;
  geo: GeoResult;
  client: ClientResult;
  kind: SignInKind;
  /** Default success. Only a success can complete a brute force or follow a spray. */
  result?: 'success' | 'failure' | 'stepUp';
  /** The name typed into the embedded provider, when it was one (brute force is counted per name). */
  username?: string | null;
}

export interface LearningOptions {
  /** How far back the user's history must reach before the profile is trusted. */
  learningPeriodMs: number;
}

/** Successful sign-ins the learning period must hold, besides reaching back far enough. */
export const LEARNING_MIN_SIGN_INS = 3;
/** With this many successful sign-ins the profile counts as learned however recent they are. */
export const LEARNED_AT_SIGN_INS = 50;

/** The user's earlier successes before `at` (history is newest first). */
export function priorSuccesses(history: readonly SignInRecord[], at: number): SignInRecord[] {
  return history.filter((h) => h.result === 'success' && h.at <= at);
}

/**
 * A user's profile is learned when their successful sign-ins reach back at least
 * the learning period and number at least LEARNING_MIN_SIGN_INS, or number
 * LEARNED_AT_SIGN_INS. Before that nothing is atypical or unfamiliar.
 */
export function learningComplete(prior: readonly SignInRecord[], at: number, o: LearningOptions): boolean {
  if (prior.length >= LEARNED_AT_SIGN_INS) return true;
  const oldest = prior[prior.length - 1];
  return prior.length >= LEARNING_MIN_SIGN_INS && oldest !== undefined && at - oldest.at >= o.learningPeriodMs;
}

export interface TravelOptions extends LearningOptions {
  /** Speeds above this between two sign-ins are impossible travel (km/h). */
  travelSpeedKmh: number;
  /** Nearer than this is never travel (database error is tens of km, a metro area more). */
  minTravelKm: number;
}

/** A place the user has signed in from this often, within FAMILIAR_RADIUS_KM, is familiar. */
export const FAMILIAR_SIGN_INS = 3;
export const FAMILIAR_RADIUS_KM = 100;
/** Elapsed time below this counts as this (two sign-ins in one second are not infinitely fast). */
const MIN_ELAPSED_MS = 60_000;

interface Point {
  latitude: number | null;
  longitude: number | null;
}

/** Great-circle distance (haversine, mean Earth radius), km. */
export function distanceKm(a: { latitude: number; longitude: number }, b: { latitude: number; longitude: number }) {
  const rad = Math.PI / 180;
  const dLat = (b.latitude - a.latitude) * rad;
  const dLon = (b.longitude - a.longitude) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.latitude * rad) * Math.cos(b.latitude * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371.0088 * Math.asin(Math.min(1, Math.sqrt(h)));
}

function located(p: Point): p is { latitude: number; longitude: number } {
  return p.latitude !== null && p.longitude !== null;
}

function placeName(p: { city: string | null; country: string | null }): string {
  return [p.city, p.country].filter(Boolean).join(', ') || 'unknown place';
}

function formatElapsed(ms: number): string {
  const min = Math.round(ms / 60_000);
  return min < 120 ? `${min} min` : `${Math.round(min / 60)} h`;
}

/**
 * Two sign-ins too far apart for the time between them. The attempt is compared
 * with the user's latest located success not made through an anonymous address;
 * nothing is reported before learning completes, from an anonymous address, or
 * from a familiar place.
 */
export function atypicalTravel(
  attempt: SignInAttempt,
  prior: readonly SignInRecord[],
  o: TravelOptions,
  isAnonymous: (ip: string | null) => boolean,
): SignInDetection | undefined {
  const here = attempt.geo;
  if (!located(here) || !learningComplete(prior, attempt.at, o) || isAnonymous(attempt.ip)) return undefined;
  const near = prior.filter((h) => located(h) && distanceKm(h, here) <= FAMILIAR_RADIUS_KM).length;
  if (near >= FAMILIAR_SIGN_INS) return undefined;
  const prev = prior.find((h) => located(h) && !isAnonymous(h.ip));
  if (!prev || !located(prev)) return undefined;
  const km = distanceKm(prev, here);
  const elapsed = Math.max(attempt.at - prev.at, MIN_ELAPSED_MS);
  const kmh = km / (elapsed / 3_600_000);
  if (km < o.minTravelKm || kmh <= o.travelSpeedKmh) return undefined;
  return {
    ...ATYPICAL_TRAVEL,
    detail: `${placeName(prev)} to ${placeName(here)}: ${Math.round(km).toLocaleString('en')} km in ${formatElapsed(
      attempt.at - prev.at,
    )} (${Math.round(kmh).toLocaleString('en')} km/h)`,
  };
}

/**
 * A country, network (ASN) or client (browser family and OS) none of the user's
 * earlier successes had. A property the history never recorded (all null) is not
 * compared: an empty baseline says nothing.
 */
export function unfamiliarProperties(
  attempt: SignInAttempt,
  prior: readonly SignInRecord[],
  o: LearningOptions,
): SignInDetection | undefined {
  if (!learningComplete(prior, attempt.at, o)) return undefined;
  const fresh: string[] = [];
  const check = <T>(label: string, value: T | null, of: (h: SignInRecord) => T | null, show = String(value)) => {
    if (value === null) return;
    const seen = prior.map(of).filter((x) => x !== null);
    if (seen.length > 0 && !seen.includes(value)) fresh.push(`${label} ${show}`);
  };
  check('country', attempt.geo.country, (h) => h.country);
  check('network', attempt.geo.asn, (h) => h.asn, `AS${attempt.geo.asn} ${attempt.geo.network ?? ''}`.trim());
  check('client', clientKey(attempt.client.browser, attempt.client.os), (h) => clientKey(h.browser, h.os));
  if (fresh.length === 0) return undefined;
  return {
    type: UNFAMILIAR_PROPERTIES,
    level: fresh.length >= 2 ? 'medium' : 'low',
    detail: `new ${fresh.join(', ')}`,
  };
}
