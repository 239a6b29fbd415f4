// The sign-in log: every sign-in attempt (interactive, the first use of a bearer
// token under a configuration, failures of every kind) with where it came from
// (location, network), the client, the methods, each policy's result, and its risk.
// Risk is assessed before Conditional Access decides (assess), so policies can ask
// for it; recording never delays the answer (the write is not awaited).
import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AppConfig } from '../../config/relay-config.js';
import { isProxyctlError, type ProxyctlError } from '../../errors.js';
import type { ProviderAttempt } from '../../idp/provider.js';
import type { Logger } from '../../log.js';
import type { Decision } from '../../policy/model.js';
import { clientOf, type ClientResult } from '../../risk/client.js';
import { replayDetection, type ReplayType } from '../../risk/detectors.js';
import { signInRisk } from '../../risk/engine.js';
import type { GeoResult } from '../../risk/geo.js';
import type { RiskLevelName, SignInDetection, SignInKind, SignInRecord, Store } from '../../store/index.js';
import { clientAddress } from '../edge/client-address.js';
import type { RiskServices } from './risk.js';
import type { Identity } from './session.js';

/** What is known about an attempt before the decision: where, what client, which detections. */
export interface Assessment {
  geo: GeoResult;
  client: ClientResult;
  detections: SignInDetection[];
  /** This attempt's risk: the highest detection level. */
  risk: RiskLevelName;
  /** The user's risk over time. */
  userRisk: RiskLevelName;
}

export interface SignInLogDeps {
  store: Store;
  log: Logger;
  now: () => number;
  risk: RiskServices;
  /** The embedded provider signs users in under their user names: its attack counters apply. */
  embedded: () => boolean;
  /** The W3C trace id of a request, when the edge gave it one. */
  traceOf?: (req: IncomingMessage) => string | null;
  /** Told of every row written (metrics, the SIEM export's wake-up). */
  recorded?: (record: Omit<SignInRecord, 'id'>, id: number) => void;
  /** Told of every detection stored on its own (metrics). */
  detected?: (type: string, level: string) => void;
}

const REPLAY_RECORD_EVERY_MS = 3_600_000;
const THROTTLED_RECORD_EVERY_MS = 60_000;

/**
 * Keys recorded lately, for rows a stranger could otherwise cause once per request: `due`
 * says yes at most once per key per `everyMs` (bounded: at 10,000 keys it starts over).
 */
class RecordedLately {
  private readonly at = new Map<string, number>();
  constructor(private readonly everyMs: number) {}

  due(key: string, now: number): boolean {
    const last = this.at.get(key);
    if (last !== undefined && now - last < this.everyMs) return false;
    if (this.at.size >= 10_000) this.at.clear();
    this.at.set(key, now);
    return true;
  }
}

/** The sign-in failures that are replays the relay refused, by error code and detail. */
function replayOf(err: ProxyctlError): ReplayType | undefined {
  const d = err.details ?? {};
  // Used or expired, or not started in this browser (a callback URL replayed elsewhere: login CSRF).
  if (err.code === 'ERR_SIGNIN_STATE') return 'stateReplay';
  if (err.code === 'ERR_SIGNIN_CODE') return 'codeReplay';
  if (err.code === 'ERR_SIGNIN_TOKEN' && d['check'] === 'nonce') return 'nonceMismatch';
  return undefined;
}

export class SignInLog {
  constructor(private readonly deps: SignInLogDeps) {}

  private clientFor(req: IncomingMessage, bearer: boolean): ClientResult {
    return clientOf({ headers: req.headers, bearer });
  }

  /**
   * Everything the engine knows: the address lists, the user's history (travel,
   * unfamiliar properties), the embedded provider's attack counters; and the user's
   * risk read fresh from the store.
   */
  async assess(
    req: IncomingMessage,
    subject: string,
    opts: { kind: SignInKind; bearer: boolean },
  ): Promise<Assessment> {
    const { risk } = this.deps;
    const at = this.deps.now();
    const ip = clientAddress(req);
    const geo = risk.geo.lookup(ip);
    const client = this.clientFor(req, opts.bearer);
    const { since, limit } = risk.engine.historyQuery(at);
    const [history, userRisk] = await Promise.all([
      this.deps.store.signIns.history(subject, since, limit),
      risk.userRisk(subject),
    ]);
    const detections = risk.engine.assess(
      { subject, ip, at, geo, client, kind: opts.kind, username: this.deps.embedded() ? subject : null },
      history,
    );
    return { geo, client, detections, risk: signInRisk(detections), userRisk };
  }

  /**
   * Without waiting for the store (the request path, bearer tokens): the address lists
   * and the user's remembered risk. The row written for the attempt gets the full
   * assessment afterwards.
   */
  assessNow(req: IncomingMessage, subject: string, bearer: boolean): Assessment {
    const { risk } = this.deps;
    const ip = clientAddress(req);
    const geo = risk.geo.lookup(ip);
    const client = this.clientFor(req, bearer);
    const detections = risk.engine.assess({ subject, ip, at: this.deps.now(), geo, client, kind: 'bearer' }, []);
    return { geo, client, detections, risk: signInRisk(detections), userRisk: risk.userRiskNow(subject) };
  }

  userRiskNow(subject: string): RiskLevelName {
    return this.deps.risk.userRiskNow(subject);
  }

  /** Writes one attempt; never throws, never waits. Without an assessment, location and client are still filled in. */
  record(
    req: IncomingMessage,
    app: AppConfig | null,
    who: Identity | undefined,
    requestId: string,
    result: SignInRecord['result'],
    reason: string | undefined,
    decision: Decision | undefined,
    kind: SignInKind,
    assessment?: Assessment,
  ): void {
    try {
      const ip = clientAddress(req);
      const geo = assessment?.geo ?? this.deps.risk.geo.lookup(ip);
      const client = assessment?.client ?? this.clientFor(req, kind === 'bearer');
      const detections = assessment?.detections ?? [];
      const entry: Omit<SignInRecord, 'id'> = {
        at: this.deps.now(),
        requestId: requestId || null,
        traceId: this.deps.traceOf?.(req) ?? null,
        kind,
        app: app?.name ?? null,
        subject: who?.sub ?? null,
        ip,
        country: geo.country,
        city: geo.city,
        latitude: geo.latitude,
        longitude: geo.longitude,
        asn: geo.asn,
        network: geo.network,
        userAgent: client.userAgent,
        browser: client.browser,
        os: client.os,
        clientType: client.clientType,
        methods: who?.amr ?? [],
        result,
        reason: reason ?? null,
        policies:
          decision?.policies.map((p) => ({
            name: p.name,
            state: p.state,
            applies: p.applies,
            outcome: p.outcome,
            why: p.why,
            missing: p.missing,
          })) ?? [],
        risk: signInRisk(detections),
        detections,
      };
      this.deps.store.signIns.record(entry).then(
        (id) => {
          if (detections.length && entry.subject) this.deps.risk.forgetUserRisks();
          this.deps.recorded?.(entry, id);
        },
        (err: unknown) =>
          this.deps.log.error({ request_id: requestId, err: (err as Error).message }, 'cannot record sign-in'),
      );
    } catch (err) {
      this.deps.log.error({ request_id: requestId, err: (err as Error).message }, 'cannot record sign-in');
    }
  }

  /**
   * The first use of a bearer token under a configuration: decided on assessNow, recorded
   * with the full assessment (history-based detections included) once it is in.
   */
  recordBearer(
    req: IncomingMessage,
    app: AppConfig,
    who: Identity,
    requestId: string,
    result: SignInRecord['result'],
    reason: string,
    decision: Decision | undefined,
    decided: Assessment,
  ): void {
    this.assess(req, who.sub, { kind: 'bearer', bearer: true }).then(
      (full) => {
        const seen = new Set(full.detections.map((d) => d.type));
        const detections = [...full.detections, ...decided.detections.filter((d) => !seen.has(d.type))];
        this.record(req, app, who, requestId, result, reason, decision, 'bearer', { ...full, detections });
      },
      () => this.record(req, app, who, requestId, result, reason, decision, 'bearer', decided),
    );
  }

  /** Failures before an identity is known (bad state, provider errors); a refused replay is a detection too. */
  failure(req: IncomingMessage, app: AppConfig, requestId: string, err: unknown): void {
    const code = isProxyctlError(err) ? err.code : 'ERR_INTERNAL';
    const replay = isProxyctlError(err) ? replayOf(err) : undefined;
    const detections = replay
      ? [replayDetection(replay, err instanceof Error ? err.message.slice(0, 200) : undefined)]
      : [];
    const ip = clientAddress(req);
    this.record(req, app, undefined, requestId, 'failure', code, undefined, 'interactive', {
      geo: this.deps.risk.geo.lookup(ip),
      client: this.clientFor(req, false),
      detections,
      risk: signInRisk(detections),
      userRisk: 'none',
    });
  }

  /** Sessions whose replay was recorded lately: one detection per session an hour, whatever a client sends. */
  private readonly replayedSessions = new RecordedLately(REPLAY_RECORD_EVERY_MS);

  /** A revoked or signed-out session's cookie presented again: it counts against the user. */
  revokedSession(req: IncomingMessage, app: AppConfig, subject: string, sid: string): void {
    const now = this.deps.now();
    if (!this.replayedSessions.due(sid, now)) return;
    const d = replayDetection('revokedSessionReplay', `session ${sid.slice(0, 8)}… was signed out or revoked`);
    this.deps.store.risk
      .addDetection({
        at: now,
        subject,
        ip: clientAddress(req),
        app: app.name,
        type: d.type,
        level: d.level,
        signInId: null,
        requestId: null,
        details: { detail: d.detail, sid },
      })
      .then(
        () => {
          this.deps.risk.forgetUserRisks();
          this.deps.detected?.(d.type, d.level);
        },
        (err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'cannot record a risk detection'),
      );
  }

  /**
   * A refused attempt at the embedded provider (wrong password, unknown user, bad or
   * replayed second factor, throttled): a sign-in row of its own, and the attack
   * counters, whose password-spray and brute-force detections are stored as they fire.
   * The password is kept only as a keyed fingerprint in memory, never written.
   */
  providerAttempt(a: ProviderAttempt): void {
    const at = this.deps.now();
    // A throttled attempt costs the attacker nothing: one row per source and name a minute,
    // so hammering the sign-in page cannot turn into a write per request.
    if (a.reason === 'throttled' && !this.throttledSeen.due(`${a.ip}|${a.username.slice(0, 256)}`, at)) return;
    const who = a.known
      ? { sub: a.username, email: undefined, name: undefined, groups: [], amr: [], acr: undefined, authTime: undefined }
      : undefined;
    this.record(a.req, null, who, '', 'failure', `${a.step}: ${a.reason}`, undefined, 'provider');
    if (a.password === undefined) return;
    const detections = this.deps.risk.trackers.loginFailure({
      ip: a.ip,
      username: a.username,
      passwordFingerprint: this.fingerprint(a.password),
      at,
    });
    for (const d of detections) {
      this.deps.store.risk.addDetection({ ...d, app: null, signInId: null, requestId: null }).then(
        () => {
          if (d.subject) this.deps.risk.forgetUserRisks();
          this.deps.detected?.(d.type, d.level);
        },
        (err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'cannot record a risk detection'),
      );
    }
  }

  private readonly throttledSeen = new RecordedLately(THROTTLED_RECORD_EVERY_MS);

  /** Equal passwords, equal fingerprints, within this process only: a random key per process. */
  private readonly fingerprintKey = randomBytes(32);
  private fingerprint(password: string): string {
    return createHmac('sha256', this.fingerprintKey).update(password).digest('base64url').slice(0, 22);
  }

  /** The user proved it was them (multi-factor step-up) from this client after a risky sign-in since `since`. */
  remediate(req: IncomingMessage, subject: string, since: number): void {
    this.deps.store.risk.remediate(subject, since, clientAddress(req), 'mfa').then(
      () => this.deps.risk.forgetUserRisks(),
      (err: unknown) => this.deps.log.warn({ err: (err as Error).message }, 'cannot record a remediation'),
    );
  }
}
