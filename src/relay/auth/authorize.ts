// Step "authorize": may this identity use this app, here and now, under the
// configuration in force? Assignment, then Conditional Access evaluated for the
// request's address, platform and device (so a session that moves is evaluated
// for where it is now). Every request is authorized, not only the sign-in: a
// reload that removes an assignment or adds a blocking policy takes effect on
// the next request. One Authorizer exists per configuration generation (it is
// part of the relay state), so its decision cache cannot outlive the policies
// it was computed from; within it, decisions are cached per session or token.
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AppConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { isAssigned } from '../../policy/assignment.js';
import { countryOf, platformOf } from '../../policy/context.js';
import { evaluate } from '../../policy/evaluate.js';
import type { AccessConfig, Decision, RiskLevel, SignInContext } from '../../policy/model.js';
import { clientAddress } from '../edge/client-address.js';
import type { Authenticated } from './authenticate.js';
import type { Identity } from './session.js';
import type { SignInLog } from './sign-in-log.js';

export interface StepUp {
  acrValues?: string;
  prompt: boolean;
}

export type Verdict =
  | { readonly result: 'allow' }
  | { readonly result: 'deny'; readonly error: ProxyctlError }
  /** `error` is the answer for clients that cannot be sent to sign in (scripts, bearer tokens, upgrades). */
  | { readonly result: 'stepUp'; readonly stepUp: StepUp; readonly error: ProxyctlError };

const ALLOW: Verdict = { result: 'allow' };

/**
 * A cached decision is used this long at most: policies can depend on the time of day,
 * and the provider-session and revocation checks are authentication's, done every time.
 */
export const DECISION_TTL_MS = 60_000;
const MAX_CACHED = 10_000;

export interface AuthorizeDeps {
  log: Logger;
  now: () => number;
  signIns: SignInLog;
}

export class Authorizer {
  private readonly cache = new Map<string, { at: number; verdict: Verdict; maxAgeMs: number }>();

  /** `devices`: client certificates are requested, so policies may ask for one. */
  constructor(
    private readonly access: AccessConfig,
    private readonly devices: boolean,
    private readonly deps: AuthorizeDeps,
  ) {}

  /** The verdict for this request; computed once per (session or token, app, address, platform, device) and generation. */
  authorize(req: IncomingMessage, app: AppConfig, who: Authenticated, requestId: string): Verdict {
    const ip = clientAddress(req);
    const platform = platformOf(req.headers['user-agent']);
    const now = this.deps.now();
    const device = this.devices && hasDeviceCertificate(req, now);
    const key = `${who.key}|${app.name}|${ip}|${platform}|${device ? 1 : 0}`;
    let entry = this.cache.get(key);
    if (!entry || now - entry.at >= DECISION_TTL_MS) {
      const decided = this.decide(req, app, who, requestId, { ip, platform, device, now });
      entry = { at: now, ...decided };
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      this.cache.set(key, entry);
    }
    // A session older than the configuration in force allows (the app's sessionLifetime, or
    // a policy's signInFrequency added or shortened by a reload) ends here, not at its
    // cookie's expiry. Measured from the session's start, as the cookie's lifetime is.
    if (entry.verdict.result === 'allow' && who.session && now - who.session.iat > entry.maxAgeMs) {
      return { result: 'stepUp', stepUp: { prompt: true }, error: sessionExpired(app) };
    }
    return entry.verdict;
  }

  /** Entries cached (tests and the benchmark). */
  get cached(): number {
    return this.cache.size;
  }

  private decide(
    req: IncomingMessage,
    app: AppConfig,
    who: Authenticated,
    requestId: string,
    c: Omit<ContextParts, 'who' | 'risk' | 'userRisk'>,
  ): { verdict: Verdict; maxAgeMs: number } {
    const bearer = who.via === 'bearer';
    // A session keeps its sign-in's risk; a token's first use under this configuration is assessed now.
    const assessed = bearer ? this.deps.signIns.assessNow(req, who.identity.sub, true) : undefined;
    const risk = {
      risk: assessed?.risk ?? who.session?.risk ?? 'none',
      userRisk: assessed?.userRisk ?? this.deps.signIns.userRiskNow(who.identity.sub),
    };
    const { assigned, decision } = this.evaluate(app, { ...c, who: who.identity, ...risk });
    const maxAgeMs = Math.min(app.sessionLifetimeMs, decision?.session.signInFrequencyMs ?? Infinity);
    const verdict: Verdict = !assigned
      ? { result: 'deny', error: notAssigned(app, who.identity) }
      : decision!.result === 'allow'
        ? ALLOW
        : decision!.result === 'deny'
          ? { result: 'deny', error: policyDenied(app, decision!) }
          : // A bearer client cannot be sent to sign in again: anything but allow is a refusal.
            bearer
            ? { result: 'deny', error: policyDenied(app, decision!) }
            : { result: 'stepUp', stepUp: stepUpOf(decision!), error: signInAgain(app, decision!) };
    if (bearer) {
      // A token's first use under this configuration (and address, and minute) is a sign-in.
      const ok = verdict.result === 'allow';
      this.deps.signIns.recordBearer(
        req,
        app,
        who.identity,
        requestId,
        ok ? 'success' : 'failure',
        ok ? 'bearer token' : assigned ? `policy ${decision!.decidedBy}` : 'not assigned to the app',
        decision,
        assessed!,
      );
    } else if (verdict.result !== 'allow') {
      this.deps.log.info(
        {
          request_id: requestId,
          app: app.name,
          sid: who.sid,
          client: c.ip,
          previous: who.session?.ip,
          result: verdict.result,
          code: verdict.error.code,
          policy: decision?.decidedBy,
        },
        'session refused by the configuration in force',
      );
    }
    return { verdict, maxAgeMs };
  }

  /** Assignment, then Conditional Access, uncached: sign-in uses it directly (it also needs the session controls). */
  evaluateFor(
    req: IncomingMessage,
    app: AppConfig,
    who: Identity,
    risk: { risk: RiskLevel; userRisk: RiskLevel },
  ): { assigned: boolean; decision: Decision | undefined } {
    return this.evaluate(app, {
      who,
      ...risk,
      ip: clientAddress(req),
      platform: platformOf(req.headers['user-agent']),
      device: this.devices && hasDeviceCertificate(req, this.deps.now()),
      now: this.deps.now(),
    });
  }

  private evaluate(app: AppConfig, c: ContextParts): { assigned: boolean; decision: Decision | undefined } {
    if (!isAssigned(app, { user: c.who.sub, email: c.who.email, groups: c.who.groups }))
      return { assigned: false, decision: undefined };
    const ctx: SignInContext = {
      app: app.name,
      user: c.who.sub,
      email: c.who.email,
      groups: c.who.groups,
      ip: c.ip,
      country: countryOf(c.ip),
      platform: c.platform,
      amr: c.who.amr,
      acr: c.who.acr,
      risk: c.risk,
      userRisk: c.userRisk,
      time: new Date(c.now),
      deviceCertificate: c.device,
    };
    return { assigned: true, decision: evaluate(this.access, ctx) };
  }
}

interface ContextParts {
  who: Identity;
  risk: RiskLevel;
  userRisk: RiskLevel;
  ip: string;
  platform: SignInContext['platform'];
  device: boolean;
  now: number;
}

/**
 * Chained to the configured device CA by the TLS layer (the public listener asks for it only
 * when devices are configured). A resumed TLS session (session ticket) carries the certificate
 * and verification result of the handshake it began with: the certificate must also still be
 * within its validity dates now, as a full handshake would check. (A session verified against
 * another device CA is not resumed at all: relay.ts, sessionIdContext.)
 */
function hasDeviceCertificate(req: IncomingMessage, now: number): boolean {
  const tls = req.socket as TLSSocket;
  if (!tls.authorized || typeof tls.getPeerCertificate !== 'function') return false;
  const peer = tls.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return false;
  if (!tls.isSessionReused()) return true;
  return Date.parse(peer.valid_from) <= now && now < Date.parse(peer.valid_to);
}

export function stepUpOf(d: Decision): StepUp {
  const acr = d.stepUp?.acr ?? (d.stepUp?.mfa ? 'mfa' : undefined);
  return { ...(acr ? { acrValues: acr } : {}), prompt: true };
}

export function policyDenied(app: AppConfig, d: Decision): ProxyctlError {
  return new ProxyctlError(
    'ERR_POLICY_DENIED',
    `Access to ${app.name} was denied by the policy "${d.decidedBy}". ${d.hint ?? ''}`.trim(),
    {
      status: 403,
      details: { app: app.name, policy: d.decidedBy, hint: d.hint },
    },
  );
}

export function notAssigned(app: AppConfig, who: Identity): ProxyctlError {
  return new ProxyctlError(
    'ERR_NOT_ASSIGNED',
    `${who.email ?? who.sub} is not assigned to ${app.name}. Ask your administrator for access.`,
    {
      status: 403,
      details: { app: app.name, reason: 'not assigned' },
    },
  );
}

function sessionExpired(app: AppConfig): ProxyctlError {
  return new ProxyctlError(
    'ERR_SIGNIN_REQUIRED',
    `Your session for ${app.name} is older than its sign-in settings now allow. Sign in again.`,
    { status: 401, details: { app: app.name, reason: 'session-age' } },
  );
}

function signInAgain(app: AppConfig, d: Decision): ProxyctlError {
  return new ProxyctlError(
    'ERR_SIGNIN_REQUIRED',
    `Sign in to ${app.name} again: ${d.hint ?? `the policy "${d.decidedBy}" asks for more`}`,
    {
      status: 401,
      details: { app: app.name, policy: d.decidedBy },
    },
  );
}
