// Password spray and brute force against the embedded provider: counters of
// recent failures per source and per account, in memory and bounded (the least
// recently failed entries are evicted, each keeps a capped number of events and
// holds numbers, not the strings a stranger typed), so an attacker cannot grow
// them without limit. Detection only: throttling is the provider's (idp/throttle).
import type { DetectionLevel, SignInDetection } from '../store/types.js';
import { canonicalAddress, familyOf, networkOf } from '../net/address.js';
import { BRUTE_FORCE, PASSWORD_SPRAY } from './detectors.js';

export interface TrackerOptions {
  /** Failures of one account within the window that make a brute force. */
  bruteForce: { failures: number; windowMs: number };
  /** Distinct accounts failed from one source within the window that make a spray (with few passwords). */
  passwordSpray: { accounts: number; windowMs: number };
  /** How long a spraying source stays flagged: its later successes are detections too (default 24 h). */
  sprayFlagMs?: number;
  /** Sources and accounts tracked at most, each (default 10,000). */
  maxEntries?: number;
}

export interface LoginFailure {
  ip: string;
  username: string;
  /** A keyed hash of the password tried, computed by the provider: equal passwords, equal fingerprints. */
  passwordFingerprint: string;
  at: number;
}

export interface LoginSuccess {
  ip: string;
  username: string;
  at: number;
}

/**
 * A detection standing on its own (not on a sign-in row): what RiskRepo.addDetection
 * stores once the caller adds app, signInId (null) and requestId.
 */
export interface StandaloneDetection {
  at: number;
  /** The account it counts against; null for a source (password spray). */
  subject: string | null;
  ip: string | null;
  type: string;
  level: DetectionLevel;
  details: Record<string, unknown> & { detail: string };
}

/** Distinct passwords may be at most this share of distinct accounts for a spray ("few passwords"). */
export const SPRAY_PASSWORD_RATIO = 1 / 3;
const DAY = 86_400_000;
const MAX_NAME = 256;

interface Failure {
  at: number;
  /** Account (spray) or source (brute force), hashed. */
  a: number;
  /** Password fingerprint (spray), hashed. */
  b: number;
}

interface Entry {
  events: Failure[];
  flaggedAt: number | undefined;
}

/** FNV-1a, 32 bits: only equality matters, and a rare collision only undercounts. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** IPv4 addresses one by one; IPv6 by /64, which one host can roam freely. */
export function sourceOf(ip: string): string {
  const a = canonicalAddress(ip.slice(0, 64));
  return familyOf(a) === 'ipv6' ? networkOf(a) : a;
}

/** The account a name means; an overlong name is kept as its head and a hash of the whole. */
function accountOf(username: string): string {
  const name = username.trim().toLowerCase();
  return name.length <= MAX_NAME ? name : `${name.slice(0, MAX_NAME - 9)}#${hash(name).toString(16).padStart(8, '0')}`;
}

/** Entries in use order; the least recently touched goes first when full. */
class Bounded {
  private readonly map = new Map<string, Entry>();
  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  peek(key: string): Entry | undefined {
    return this.map.get(key);
  }

  touch(key: string): Entry {
    let e = this.map.get(key);
    if (e) this.map.delete(key);
    else {
      e = { events: [], flaggedAt: undefined };
      if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    }
    this.map.set(key, e);
    return e;
  }
}

function record(e: Entry, f: Failure, windowMs: number, cap: number): void {
  const since = f.at - windowMs;
  let drop = 0;
  while (drop < e.events.length && e.events[drop]!.at < since) drop++;
  if (drop > 0) e.events.splice(0, drop);
  e.events.push(f);
  if (e.events.length > cap) e.events.splice(0, e.events.length - cap);
}

function recent(e: Entry | undefined, at: number, windowMs: number): Failure[] {
  return e ? e.events.filter((f) => f.at >= at - windowMs && f.at <= at) : [];
}

export class AttackTrackers {
  private readonly sources: Bounded;
  private readonly accounts: Bounded;
  private readonly sprayFlagMs: number;
  private readonly sprayCap: number;
  private readonly bruteCap: number;

  constructor(private readonly o: TrackerOptions) {
    const max = o.maxEntries ?? 10_000;
    this.sources = new Bounded(max);
    this.accounts = new Bounded(max);
    this.sprayFlagMs = o.sprayFlagMs ?? DAY;
    this.sprayCap = Math.max(64, o.passwordSpray.accounts * 4);
    this.bruteCap = Math.max(64, o.bruteForce.failures * 2);
  }

  /** Entries held (sources, accounts): bounded by maxEntries each. */
  get size(): { sources: number; accounts: number } {
    return { sources: this.sources.size, accounts: this.accounts.size };
  }

  /** A failed password from the embedded provider; returns detections to store (usually none). */
  loginFailure(f: LoginFailure): StandaloneDetection[] {
    const out: StandaloneDetection[] = [];
    const source = sourceOf(f.ip);
    const account = accountOf(f.username);
    const ip = canonicalAddress(f.ip.slice(0, 64));

    const sp = this.o.passwordSpray;
    const s = this.sources.touch(source);
    record(s, { at: f.at, a: hash(account), b: hash(f.passwordFingerprint) }, sp.windowMs, this.sprayCap);
    const accounts = new Set(s.events.map((e) => e.a)).size;
    const passwords = new Set(s.events.map((e) => e.b)).size;
    if (
      accounts >= sp.accounts &&
      passwords <= accounts * SPRAY_PASSWORD_RATIO &&
      (s.flaggedAt === undefined || f.at - s.flaggedAt > sp.windowMs)
    ) {
      s.flaggedAt = f.at;
      out.push({
        at: f.at,
        subject: null,
        ip,
        ...PASSWORD_SPRAY,
        details: {
          detail: `${accounts} accounts tried with ${passwords} password${passwords === 1 ? '' : 's'} from ${source}`,
          source,
          accounts,
          passwords,
        },
      });
    }

    const bf = this.o.bruteForce;
    const a = this.accounts.touch(account);
    record(a, { at: f.at, a: hash(source), b: 0 }, bf.windowMs, this.bruteCap);
    if (a.events.length >= bf.failures && (a.flaggedAt === undefined || f.at - a.flaggedAt > bf.windowMs)) {
      a.flaggedAt = f.at;
      const sources = new Set(a.events.map((e) => e.a)).size;
      out.push({
        at: f.at,
        subject: account,
        ip,
        type: BRUTE_FORCE,
        level: 'medium',
        details: {
          detail: `${a.events.length} failed passwords from ${sources} source${sources === 1 ? '' : 's'}`,
          sources,
        },
      });
    }
    return out;
  }

  /**
   * A successful password sign-in: a detection on it when its source sprayed
   * recently (password spray, high) or when it ends a brute force from one of the
   * failing sources (brute force, high).
   */
  loginSuccess(s: LoginSuccess): SignInDetection[] {
    const out: SignInDetection[] = [];
    const source = sourceOf(s.ip);
    const src = this.sources.peek(source);
    if (src?.flaggedAt !== undefined && s.at - src.flaggedAt <= this.sprayFlagMs && s.at >= src.flaggedAt) {
      out.push({ ...PASSWORD_SPRAY, detail: `success from ${source}, which sprayed passwords at many accounts` });
    }
    const bf = this.o.bruteForce;
    const acc = this.accounts.peek(accountOf(s.username));
    const failures = recent(acc, s.at, bf.windowMs);
    const underAttack =
      failures.length >= bf.failures || (acc?.flaggedAt !== undefined && s.at - acc.flaggedAt <= bf.windowMs);
    if (underAttack && failures.some((f) => f.a === hash(source))) {
      out.push({
        type: BRUTE_FORCE,
        level: 'high',
        detail: `success after ${failures.length} failed passwords, from one of their sources (${source})`,
      });
    }
    return out;
  }
}
