// `proxyctl policy what-if`: what would the relay decide for this sign-in? The
// config is loaded and validated as `relay serve` does, the app's assignment is
// checked as at sign-in, and the policies go through the relay's own evaluate().
// With the embedded provider, --user is looked up among its users, whose groups
// and e-mail the relay would see. A report: the exit status is 0 whatever the
// decision, 1 only on bad input.
import { loadRelayConfig, type RelayConfig } from '../config/relay-config.js';
import type { UserRecord } from '../store/index.js';
import { configuredStoreExists, withStore } from './open-store.js';
import { ProxyctlError } from '../errors.js';
import { printTable, safeCell } from './table.js';
import {
  contextFromOptions,
  matchUser,
  whatIfReport,
  type WhatIfOptions as WhatIfInputOptions,
  type WhatIfReport,
} from '../admin/what-if.js';
import type { WhatIfInput, WhatIfResult } from '../admin/api-types.js';
import type { AppConfig } from '../config/relay-config.js';
import { PLATFORMS, RISK_LEVELS, type Platform, type RiskLevel } from '../policy/model.js';
import { remoteTarget, withAdmin, type AdminTargetOptions } from './admin-client.js';

export { contextFromOptions, whatIfReport, type UserSource, type WhatIfReport } from '../admin/what-if.js';

export interface WhatIfOptions extends WhatIfInputOptions, Omit<AdminTargetOptions, 'config' | 'dataDir'> {
  /** The relay configuration to evaluate; or --relay to ask a running relay. */
  config?: string;
  json?: boolean;
}

function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

const usage = (message: string) => new ProxyctlError('ERR_USAGE', message, { status: 400 });

/**
 * The embedded provider's user named by `id`: a user name (its `sub`; any case, as at its
 * login form) or an e-mail address (ASCII case aside; it must name one user). Users come
 * from the store and the users file, the file winning, as the provider reads them; the store
 * is only read, and not created when the data directory has none.
 */
export async function findEmbeddedUser(config: RelayConfig, id: string): Promise<UserRecord | undefined> {
  const stored = (await configuredStoreExists(config)) ? await withStore(config, (store) => store.users.list()) : [];
  return matchUser(stored, config.identity.embedded.usersFile, id);
}

export async function whatIf(opts: WhatIfOptions, out: (line: string) => void): Promise<void> {
  if (remoteTarget(opts) !== undefined) return remoteWhatIf(opts, out);
  if (opts.config === undefined)
    throw usage('policy what-if needs --config relay.yaml, or --relay with the admin API URL of a running relay');
  const config = loadRelayConfig(opts.config);
  if (!opts.user) throw usage('--user must not be empty');
  const embedded = config.identity.issuer === undefined;
  const user = embedded ? await findEmbeddedUser(config, opts.user) : undefined;
  const { app, ctx } = contextFromOptions(opts, config.apps, undefined, user);
  const report = whatIfReport(app, ctx, config.access, user ? 'embedded' : 'options');
  if (opts.json) {
    // Absent values are null, so every field is always there.
    out(JSON.stringify(report, (_k, v: unknown) => (v === undefined ? null : v), 2));
    return;
  }
  printReport(report, out, { opts, user, embedded, app });
}

/** What only the config file tells: the embedded user's record and the app's settings. */
interface LocalFacts {
  opts: WhatIfOptions;
  user: UserRecord | undefined;
  embedded: boolean;
  app: AppConfig;
}

function printReport(report: WhatIfReport, out: (line: string) => void, local?: LocalFacts): void {
  const { context: ctx } = report;
  const d = report.decision;
  const dash = (x: string | undefined) => (x === undefined || x === '' ? '-' : x);
  out(
    `sign-in: app ${ctx.app}, user ${ctx.user}, email ${dash(ctx.email)}, groups ${dash(ctx.groups.join(','))}, ip ${ctx.ip} (country ${dash(ctx.country)}), platform ${ctx.platform}, amr ${ctx.amr.join('+')}, acr ${dash(ctx.acr)}, risk ${ctx.risk}, user risk ${ctx.userRisk}, device certificate ${ctx.deviceCertificate ? 'yes' : 'no'}, time ${ctx.time.toISOString()}`,
  );
  if (!local) {
    // From a relay: the report says whose groups and e-mail were used, not the app's settings.
    if (report.userSource === 'embedded') out(`user: ${ctx.user} of the embedded identity provider`);
    out(`assignment: ${report.assigned ? 'assigned' : 'not assigned'}`);
  } else {
    const { opts, user, embedded, app } = local;
    if (user) {
      out(
        `user: ${user.username} of the embedded identity provider (groups ${dash(user.groups.join(','))}, email ${dash(user.email ?? undefined)})${opts.groups !== undefined || opts.email ? '; --groups / --email given override them' : ''}`,
      );
    } else if (embedded) {
      out(
        `note: ${opts.user} is not a user of the embedded identity provider; evaluated as a subject with the groups and e-mail given`,
      );
    }
    if (app.preauth === 'passthrough')
      out(
        `note: ${app.name} uses preauth passthrough: the relay signs no one in for it, so neither assignment nor policies are enforced there`,
      );
    out(
      `assignment: ${report.assigned ? 'assigned' : 'not assigned'} (${app.assignment === 'any' ? 'the app accepts any signed-in user' : 'the app accepts only its assignedUsers and assignedGroups'})`,
    );
  }
  if (d.policies.length === 0) {
    out('policies: none configured');
  } else {
    const header = ['POLICY', 'STATE', 'APPLIES', 'WHY', 'OUTCOME', 'MISSING'];
    const rows = d.policies.map((p) => [
      p.name,
      p.state,
      p.applies ? 'yes' : 'no',
      p.why,
      p.outcome,
      p.missing.length ? p.missing.join(',') : '-',
    ]);
    printTable(header, rows, out);
  }
  if (!report.assigned) {
    out('decision: deny (not assigned to the app)');
  } else if (d.result === 'allow') {
    const enforced = d.policies.filter((p) => p.applies && p.state === 'on').length;
    out(
      `decision: allow (${enforced ? `${enforced} enforced ${enforced === 1 ? 'policy applies and is' : 'policies apply and are'} satisfied` : 'no enforced policy applies'})`,
    );
  } else {
    const ask = d.stepUp
      ? ` [sign in again with${d.stepUp.mfa ? ' mfa' : ''}${d.stepUp.acr ? ` acr=${d.stepUp.acr}` : ''}]`
      : '';
    out(`decision: ${d.result} by policy "${d.decidedBy}": ${d.hint ?? ''}${ask}`);
  }
  if (report.assigned && (d.session.signInFrequencyMs !== undefined || d.session.persistentBrowser !== undefined)) {
    out(
      `session: sign-in frequency ${d.session.signInFrequencyMs === undefined ? '-' : formatDuration(d.session.signInFrequencyMs)}, persistent browser ${d.session.persistentBrowser === undefined ? '-' : d.session.persistentBrowser ? 'yes' : 'no'}`,
    );
  }
}

/** The what-if input for the admin API; the relay checks it as the local command does. */
export function whatIfInput(opts: WhatIfOptions): WhatIfInput {
  if (!opts.user) throw usage('--user must not be empty');
  if (opts.platform !== undefined && !PLATFORMS.includes(opts.platform as Platform))
    throw usage(`unknown platform "${opts.platform}" (one of ${PLATFORMS.join(', ')})`);
  for (const [what, level] of [
    ['sign-in risk', opts.risk],
    ['user risk', opts.userRisk],
  ] as const)
    if (level !== undefined && !RISK_LEVELS.includes(level as RiskLevel))
      throw usage(`unknown ${what} "${level}" (one of ${RISK_LEVELS.join(', ')})`);
  const groups = opts.groups
    ?.split(',')
    .map((g) => g.trim())
    .filter((g) => g.length > 0);
  return {
    app: opts.app,
    user: opts.user,
    ...(opts.email ? { email: opts.email } : {}),
    ...(groups !== undefined ? { groups } : {}),
    ...(opts.ip !== undefined ? { ip: opts.ip } : {}),
    ...(opts.platform !== undefined ? { platform: opts.platform as Platform } : {}),
    ...(opts.mfa ? { mfa: true } : {}),
    ...(opts.acr !== undefined ? { acr: opts.acr } : {}),
    ...(opts.risk !== undefined ? { risk: opts.risk as RiskLevel } : {}),
    ...(opts.userRisk !== undefined ? { userRisk: opts.userRisk as RiskLevel } : {}),
    ...(opts.time !== undefined ? { time: opts.time } : {}),
    ...(opts.deviceCert ? { deviceCert: true } : {}),
  };
}

/** Nulls back to absent and the time back to a Date: the report as the relay built it. */
function revive(result: WhatIfResult): WhatIfReport {
  const strip = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(strip)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([, x]) => x !== null)
              .map(([k, x]) => [k, strip(x)]),
          )
        : v;
  const report = strip(result) as WhatIfReport & { context: { time: unknown } };
  const ctx = report.context as unknown as Record<string, unknown>;
  return {
    ...report,
    context: { ...report.context, time: new Date(String(ctx['time'])), groups: (ctx['groups'] as string[]) ?? [] },
  };
}

/** Asks a running relay: its apps and policies (file and API) and its users, as it holds them now. */
async function remoteWhatIf(opts: WhatIfOptions, out: (line: string) => void): Promise<void> {
  const input = whatIfInput(opts);
  const result = await withAdmin(opts, (api) => api.whatIf(input));
  if (opts.json) {
    out(JSON.stringify(result, null, 2));
    return;
  }
  // What a relay sends reaches the terminal only through safeCell.
  printReport(revive(result), (line) => out(safeCell(line, Number.MAX_SAFE_INTEGER)));
}
