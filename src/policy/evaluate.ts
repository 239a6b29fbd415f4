// Conditional Access evaluation — the one place access decisions are made, used
// by the relay at sign-in, on bearer tokens, on a session's address change, and
// by `proxyctl policy what-if`. Semantics:
//   * a policy applies when its state is not off, the user and app are assigned
//     (exclude beats include) and every condition it sets matches; users match
//     by exact `sub` or by verified e-mail without case (assignment.ts);
//   * among applicable `on` policies, block wins; otherwise every one must have
//     its grant satisfied (all or any of its requirements);
//   * an unsatisfied policy that another sign-in could satisfy (mfa, acr) asks
//     for step-up, anything else denies;
//   * reportOnly policies are evaluated and reported, never enforced;
//   * no applicable policy: allow.
import { AddressSet } from '../net/address.js';
import { userMatches } from './assignment.js';
import {
  WEEKDAYS,
  type AccessConfig,
  type Decision,
  type IncludeExclude,
  type NamedLocation,
  type Policy,
  type PolicyResult,
  type SignInContext,
  type TimeWindow,
  type Weekday,
} from './model.js';

const sets = new WeakMap<NamedLocation, AddressSet>();

function addressSetOf(loc: NamedLocation): AddressSet {
  let set = sets.get(loc);
  if (!set) {
    set = new AddressSet(loc.cidrs);
    sets.set(loc, set);
  }
  return set;
}

export function inLocation(loc: NamedLocation, ctx: Pick<SignInContext, 'ip' | 'country'>): boolean {
  if (loc.cidrs.length && addressSetOf(loc).has(ctx.ip)) return true;
  return ctx.country !== undefined && loc.countries.includes(ctx.country);
}

function matches<T extends string>(
  set: IncludeExclude<T>,
  has: (v: T) => boolean,
): 'included' | 'excluded' | 'notIncluded' {
  if (set.exclude.some(has)) return 'excluded';
  if (set.include.includes('all') || set.include.some((v) => v !== 'all' && has(v))) return 'included';
  return 'notIncluded';
}

function minutesIn(time: Date, timeZone: string): { day: string; minutes: number } {
  const parts = new Intl.DateTimeFormat('en-GB', {
    timeZone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(time);
  const get = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  return { day: get('weekday').toLowerCase().slice(0, 3), minutes: Number(get('hour')) * 60 + Number(get('minute')) };
}

export function inWindow(w: TimeWindow, time: Date): boolean {
  const { day, minutes } = minutesIn(time, w.timeZone);
  // A window belongs to the day it starts on: 22:00-06:00 on fri covers early saturday.
  const yesterday = WEEKDAYS[(WEEKDAYS.indexOf(day as Weekday) + 6) % 7]!;
  const inside =
    w.fromMin < w.toMin
      ? w.days.includes(day as Weekday) && minutes >= w.fromMin && minutes < w.toMin
      : (w.days.includes(day as Weekday) && minutes >= w.fromMin) || (w.days.includes(yesterday) && minutes < w.toMin);
  return w.outside ? !inside : inside;
}

/** Does the policy apply to this sign-in, and why (not)? */
function applies(p: Policy, cfg: AccessConfig, ctx: SignInContext): { applies: boolean; why: string } {
  if (p.state === 'off') return { applies: false, why: 'policy is off' };
  const byUser = matches(p.users, (u) => userMatches(u, ctx));
  const byGroup = matches(p.groups, (g) => ctx.groups.includes(g));
  if (byUser === 'excluded') return { applies: false, why: 'user excluded' };
  if (byGroup === 'excluded') return { applies: false, why: 'group excluded' };
  if (byUser !== 'included' && byGroup !== 'included') return { applies: false, why: 'user not assigned' };
  const app = matches(p.apps, (a) => a === ctx.app);
  if (app !== 'included') return { applies: false, why: app === 'excluded' ? 'app excluded' : 'app not assigned' };
  if (p.locations) {
    const byName = new Map(cfg.namedLocations.map((l) => [l.name, l]));
    const loc = matches(p.locations, (name) => {
      const l = byName.get(name);
      return !!l && inLocation(l, ctx);
    });
    if (loc !== 'included')
      return { applies: false, why: loc === 'excluded' ? 'location excluded' : 'location not included' };
  }
  if (p.platforms) {
    const pl = matches(p.platforms, (x) => x === ctx.platform);
    if (pl !== 'included')
      return { applies: false, why: `platform ${ctx.platform} ${pl === 'excluded' ? 'excluded' : 'not included'}` };
  }
  if (p.signInRisk && !p.signInRisk.includes(ctx.risk))
    return { applies: false, why: `sign-in risk ${ctx.risk} not in ${p.signInRisk.join(', ')}` };
  if (p.userRisk && !p.userRisk.includes(ctx.userRisk))
    return { applies: false, why: `user risk ${ctx.userRisk} not in ${p.userRisk.join(', ')}` };
  if (p.time && !inWindow(p.time, ctx.time)) return { applies: false, why: `time outside ${p.time.text}` };
  return { applies: true, why: 'assigned, all conditions match' };
}

function requirementsOf(p: Policy): string[] {
  const req: string[] = [];
  if (p.grant.requireMfa) req.push('mfa');
  if (p.grant.requireAcr) req.push(`acr:${p.grant.requireAcr}`);
  if (p.grant.requireDeviceCertificate) req.push('deviceCertificate');
  return req;
}

function met(req: string, ctx: SignInContext): boolean {
  if (req === 'mfa') return ctx.amr.includes('mfa');
  if (req === 'deviceCertificate') return ctx.deviceCertificate;
  const acr = req.slice('acr:'.length);
  return ctx.acr === acr || (acr === 'mfa' && ctx.amr.includes('mfa'));
}

/** A fresh sign-in can fix these; a device certificate it cannot. */
const fixableBySignIn = (req: string) => req === 'mfa' || req.startsWith('acr:');

export function describeRequirement(req: string): string {
  if (req === 'mfa') return 'multi-factor authentication';
  if (req === 'deviceCertificate') return 'a device certificate from your organisation';
  return `authentication strength "${req.slice(4)}"`;
}

export function evaluate(cfg: AccessConfig, ctx: SignInContext): Decision {
  const results: PolicyResult[] = [];
  for (const p of cfg.policies) {
    const a = applies(p, cfg, ctx);
    if (!a.applies) {
      results.push({ name: p.name, state: p.state, applies: false, why: a.why, outcome: 'notApplicable', missing: [] });
      continue;
    }
    if (p.grant.block) {
      results.push({ name: p.name, state: p.state, applies: true, why: a.why, outcome: 'blocked', missing: [] });
      continue;
    }
    const req = requirementsOf(p);
    const missing = req.filter((r) => !met(r, ctx));
    const ok = p.grant.operator === 'all' ? missing.length === 0 : missing.length < req.length;
    results.push({
      name: p.name,
      state: p.state,
      applies: true,
      why: a.why,
      outcome: ok ? 'granted' : 'unsatisfied',
      missing: ok ? [] : missing,
    });
  }

  const enforced = results.filter((r) => r.state === 'on' && r.applies);
  const session = sessionControls(cfg, enforced);
  const blocked = enforced.find((r) => r.outcome === 'blocked');
  if (blocked) {
    return {
      result: 'deny',
      policies: results,
      decidedBy: blocked.name,
      hint: 'This policy blocks access in this situation. Contact your administrator.',
      stepUp: undefined,
      session,
    };
  }
  const unsatisfied = enforced.filter((r) => r.outcome === 'unsatisfied');
  if (unsatisfied.length === 0)
    return { result: 'allow', policies: results, decidedBy: undefined, hint: undefined, stepUp: undefined, session };

  const byName = new Map(cfg.policies.map((p) => [p.name, p]));
  // Step-up works when, for every unsatisfied policy, signing in again could satisfy it.
  const canStepUp = unsatisfied.every((r) => {
    const p = byName.get(r.name)!;
    return p.grant.operator === 'all' ? r.missing.every(fixableBySignIn) : r.missing.some(fixableBySignIn);
  });
  // Name the policy a new sign-in cannot satisfy, if there is one: that is the real obstacle.
  const unfixable = (r: PolicyResult) => {
    const p = byName.get(r.name)!;
    return p.grant.operator === 'all' ? r.missing.some((m) => !fixableBySignIn(m)) : !r.missing.some(fixableBySignIn);
  };
  const first = (!canStepUp && unsatisfied.find(unfixable)) || unsatisfied[0]!;
  const p0 = byName.get(first.name)!;
  const hint = `Access requires ${first.missing.map(describeRequirement).join(p0.grant.operator === 'all' ? ' and ' : ' or ')}.`;
  if (canStepUp) {
    const acr = unsatisfied
      .map((r) => r.missing.find((m) => m.startsWith('acr:'))?.slice(4))
      .find((x) => x !== undefined);
    const mfa = unsatisfied.some((r) => r.missing.includes('mfa'));
    return { result: 'stepUp', policies: results, decidedBy: first.name, hint, stepUp: { acr, mfa }, session };
  }
  return { result: 'deny', policies: results, decidedBy: first.name, hint, stepUp: undefined, session };
}

/** The strictest session controls among the enforced, applicable policies. */
function sessionControls(cfg: AccessConfig, enforced: readonly PolicyResult[]): Decision['session'] {
  let freq: number | undefined;
  let persistent: boolean | undefined;
  for (const r of enforced) {
    const p = cfg.policies.find((x) => x.name === r.name)!;
    if (p.session.signInFrequencyMs !== undefined) freq = Math.min(freq ?? Infinity, p.session.signInFrequencyMs);
    if (p.session.persistentBrowser !== undefined) persistent = (persistent ?? true) && p.session.persistentBrowser;
  }
  return { signInFrequencyMs: freq, persistentBrowser: persistent };
}
