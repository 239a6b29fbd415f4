// `proxyctl risk list|dismiss|confirm USER`: users' risk as the relay computes it
// (detections after the last dismissal, each lowered one level per decay period;
// confirmed compromised is high), and the administrator's two decisions, audited.
// A running relay reads the change within its cache time (a minute at most; at
// once on PostgreSQL through the change feed).
import { userInfo } from 'node:os';
import { ProxyctlError } from '../errors.js';
import { isRemediated, userRisk, userRiskHorizonMs } from '../risk/engine.js';
import type { RiskDetectionRecord, UserRiskState } from '../store/index.js';
import { remoteTarget, withAdmin, type AdminTargetOptions } from './admin-client.js';
import { parseWhen } from './logs.js';
import { withStore } from './open-store.js';
import { loadConfigFromOptions } from './load-config.js';
import { printTable, safeCell } from './table.js';

/** The data directory (--config, --data-dir) or a relay's admin API (--relay). */
type ServeOptions = AdminTargetOptions;

type Out = (line: string) => void;

export interface RiskListOptions extends ServeOptions {
  json?: boolean;
  all?: boolean;
  since?: string;
}

interface RiskyUser {
  user: string;
  risk: string;
  detections: number;
  lastDetection: string | null;
  types: string[];
  state: 'atRisk' | 'confirmedCompromised' | 'dismissed' | 'remediated' | 'none';
  decidedBy: string | null;
}

function actor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli:unknown';
  }
}

export async function listRisk(opts: RiskListOptions, out: Out, now = Date.now()): Promise<void> {
  const users: RiskyUser[] =
    remoteTarget(opts) !== undefined
      ? await withAdmin(opts, (api) =>
          api.riskUsers({
            ...(opts.all ? { all: true } : {}),
            ...(opts.since !== undefined
              ? { since: new Date(parseWhen('--since', opts.since, now)).toISOString() }
              : {}),
          }),
        )
      : await localRisk(opts, now);
  if (opts.json) {
    out(JSON.stringify(users, null, 2));
    return;
  }
  printTable(
    ['USER', 'RISK', 'STATE', 'DETECTIONS', 'LAST DETECTION', 'TYPES', 'DECIDED BY'],
    users.map((u) => [
      u.user,
      u.risk,
      u.state,
      String(u.detections),
      u.lastDetection ?? '-',
      u.types.join(',') || '-',
      u.decidedBy ?? '-',
    ]),
    out,
  );
}

async function localRisk(opts: RiskListOptions, now: number): Promise<RiskyUser[]> {
  const config = loadConfigFromOptions(opts);
  const decayMs = config.risk.engine.userRiskDecayMs;
  const since = opts.since === undefined ? now - userRiskHorizonMs(decayMs) : parseWhen('--since', opts.since, now);
  return withStore(config, async (store) => {
    const bySubject = new Map<string, RiskDetectionRecord[]>();
    let page = await store.risk.detections({ since, limit: 10_000 });
    for (;;) {
      for (const d of page) if (d.subject) bySubject.set(d.subject, [...(bySubject.get(d.subject) ?? []), d]);
      if (page.length < 10_000) break;
      page = await store.risk.detections({ since, afterId: page.at(-1)!.id, limit: 10_000 });
    }
    const states = new Map<string, UserRiskState>((await store.risk.states()).map((s) => [s.subject, s]));
    const subjects = new Set([
      ...bySubject.keys(),
      ...[...states.values()].filter((s) => s.confirmedAt).map((s) => s.subject),
    ]);
    const rows: RiskyUser[] = [];
    for (const subject of subjects) {
      const all = bySubject.get(subject) ?? [];
      const state = states.get(subject);
      const level = userRisk(all, state, now, decayMs);
      const last = all.at(-1);
      const confirmed = !!state?.confirmedAt && (state.dismissedAt === null || state.confirmedAt > state.dismissedAt);
      rows.push({
        user: subject,
        risk: level,
        detections: all.length,
        lastDetection: last ? new Date(last.at).toISOString() : null,
        types: [...new Set(all.map((d) => d.type))],
        state: confirmed
          ? 'confirmedCompromised'
          : level !== 'none'
            ? 'atRisk'
            : state?.dismissedAt
              ? 'dismissed'
              : all.length && all.every(isRemediated)
                ? 'remediated'
                : 'none',
        decidedBy: state?.by ?? null,
      });
    }
    const order = { high: 0, medium: 1, low: 2, none: 3 } as Record<string, number>;
    return rows
      .filter((r) => opts.all || r.risk !== 'none')
      .sort((a, b) => order[a.risk]! - order[b.risk]! || (b.lastDetection ?? '').localeCompare(a.lastDetection ?? ''));
  });
}

function checkUser(user: string): string {
  // eslint-disable-next-line no-control-regex -- a subject never holds control characters
  if (!user || user.length > 256 || /[\u0000-\u001f\u007f]/.test(user))
    throw new ProxyctlError(
      'ERR_USAGE',
      `a user is the subject as the sign-in log shows it; found ${JSON.stringify(user.slice(0, 80))}`,
    );
  return user;
}

export async function dismissRisk(user: string, opts: ServeOptions, out: Out, now = Date.now()): Promise<void> {
  checkUser(user);
  if (remoteTarget(opts) !== undefined) await withAdmin(opts, (api) => api.dismissRisk(user));
  else await withStore(loadConfigFromOptions(opts), (store) => store.risk.dismiss(user, actor(), now));
  out(`dismissed the risk of ${safeCell(user)}: detections up to now no longer count`);
}

export async function confirmRisk(user: string, opts: ServeOptions, out: Out, now = Date.now()): Promise<void> {
  checkUser(user);
  if (remoteTarget(opts) !== undefined) await withAdmin(opts, (api) => api.confirmRisk(user));
  else await withStore(loadConfigFromOptions(opts), (store) => store.risk.confirm(user, actor(), now));
  out(`confirmed ${safeCell(user)} compromised: user risk high until dismissed`);
}
