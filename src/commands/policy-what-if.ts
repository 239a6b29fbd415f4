// `proxyctl policy what-if`: what would the relay decide for this sign-in? The
// config is loaded and validated as `relay serve` does, the app's assignment is
// checked as at sign-in, and the policies go through the relay's own evaluate().
// With the embedded provider, --user is looked up among its users, whose groups
// and e-mail the relay would see. A report: the exit status is 0 whatever the
// decision, 1 only on bad input.
import { emailKey, isAssigned } from '../policy/assignment.js';
import { isIP } from 'node:net';
import { loadRelayConfig, type AppConfig, type RelayConfig } from '../config/relay-config.js';
import { loadUsersFile } from '../idp/users.js';
import type { UserRecord } from '../store/index.js';
import { configuredStoreExists, withStore } from './open-store.js';
import { ProxyctlError } from '../errors.js';
import { countryOf } from '../policy/context.js';
import { evaluate } from '../policy/evaluate.js';
import {
  PLATFORMS,
  RISK_LEVELS,
  type Decision,
  type Platform,
  type RiskLevel,
  type SignInContext,
} from '../policy/model.js';
import { printTable, safeCell } from './table.js';
import type { WhatIfInput, WhatIfResult } from '../admin/api-types.js';
import { remoteTarget, withAdmin, type AdminTargetOptions } from './admin-client.js';

export interface WhatIfOptions extends Omit<AdminTargetOptions, 'config'> {
  /** The relay configuration to evaluate locally; or --relay to ask a running relay. */
  config?: string;
  app: string;
  user: string;
  groups?: string;
  email?: string;
  ip?: string;
  platform?: string;
  mfa?: boolean;
  acr?: string;
  risk?: string;
  userRisk?: string;
  time?: string;
  deviceCert?: boolean;
  json?: boolean;
}

/** An instant, never a local time: a zone designator is required. */
const ISO_INSTANT =
  /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,3})?)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/i;

function parseInstant(text: string): Date | undefined {
  const m = ISO_INSTANT.exec(text);
  if (!m) return undefined;
  // Date would roll 2025-02-30 over to March; a day the month does not have is refused.
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) return undefined;
  const time = new Date(text);
  return Number.isNaN(time.getTime()) ? undefined : time;
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

/** Where the sign-in's identity came from: the embedded provider's user, or the options alone. */
export type UserSource = 'embedded' | 'options';

/**
 * The embedded provider's user named by `id`: a user name (its `sub`; any case, as at its
 * login form) or an e-mail address (ASCII case aside; it must name one user). Users come
 * from the store and the users file, the file winning, as the provider reads them; the store
 * is only read, and not created when the data directory has none.
 */
export async function findEmbeddedUser(config: RelayConfig, id: string): Promise<UserRecord | undefined> {
  const users = new Map<string, UserRecord>();
  if (await configuredStoreExists(config)) {
    await withStore(config, async (store) => {
      for (const u of await store.users.list()) users.set(u.username.toLowerCase(), u);
    });
  }
  const file = config.identity.embedded.usersFile;
  if (file !== undefined) for (const u of loadUsersFile(file)) users.set(u.username.toLowerCase(), u);
  const byName = users.get(id.toLowerCase());
  if (byName) return byName;
  if (!id.includes('@')) return undefined;
  const byEmail = [...users.values()].filter((u) => u.email !== null && emailKey(u.email) === emailKey(id));
  if (byEmail.length > 1)
    throw usage(
      `--user ${id} is the e-mail address of several users (${byEmail.map((u) => u.username).join(', ')}); give the user name`,
    );
  return byEmail[0];
}

export function contextFromOptions(
  opts: WhatIfOptions,
  apps: readonly AppConfig[],
  now: () => Date = () => new Date(),
  user?: UserRecord,
): { app: AppConfig; ctx: SignInContext } {
  const app = apps.find((a) => a.name === opts.app);
  if (!app) {
    const known = apps.map((a) => a.name);
    throw usage(
      `unknown app "${opts.app}" (${known.length ? `known apps: ${known.join(', ')}` : 'the config publishes no apps'})`,
    );
  }
  if (!opts.user) throw usage('--user must not be empty');
  const platform = opts.platform ?? 'other';
  if (!PLATFORMS.includes(platform as Platform))
    throw usage(`unknown platform "${platform}" (one of ${PLATFORMS.join(', ')})`);
  const risk = opts.risk ?? 'none';
  if (!RISK_LEVELS.includes(risk as RiskLevel))
    throw usage(`unknown sign-in risk "${risk}" (one of ${RISK_LEVELS.join(', ')})`);
  const userRisk = opts.userRisk ?? 'none';
  if (!RISK_LEVELS.includes(userRisk as RiskLevel))
    throw usage(`unknown user risk "${userRisk}" (one of ${RISK_LEVELS.join(', ')})`);
  const ip = opts.ip ?? '127.0.0.1';
  if (!isIP(ip)) throw usage(`--ip "${ip}" is not an IPv4 or IPv6 address`);
  let time = now();
  if (opts.time !== undefined) {
    const parsed = parseInstant(opts.time);
    if (!parsed) {
      throw usage(
        `--time "${opts.time}" is not an ISO 8601 instant with a zone, such as 2025-03-10T09:30:00Z or 2025-03-10T09:30:00+01:00`,
      );
    }
    time = parsed;
  }
  if (opts.acr === '') throw usage('--acr must not be empty');
  const given =
    opts.groups === undefined
      ? undefined
      : opts.groups
          .split(',')
          .map((g) => g.trim())
          .filter((g) => g.length > 0);
  // The embedded provider signs its users in with sub = user name and a verified e-mail; options given still win.
  return {
    app,
    ctx: {
      app: app.name,
      user: user?.username ?? opts.user,
      email: opts.email || (user?.email ?? undefined),
      groups: given ?? user?.groups ?? [],
      ip,
      country: countryOf(ip),
      platform: platform as Platform,
      amr: opts.mfa ? ['pwd', 'mfa'] : ['pwd'],
      acr: opts.acr,
      risk: risk as RiskLevel,
      userRisk: userRisk as RiskLevel,
      time,
      deviceCertificate: !!opts.deviceCert,
    },
  };
}

export interface WhatIfReport {
  /** embedded: --user named a user of the embedded provider, whose groups and e-mail were used. */
  userSource: UserSource;
  context: SignInContext;
  assigned: boolean;
  decision: Decision;
}

export function whatIfReport(
  app: AppConfig,
  ctx: SignInContext,
  access: Parameters<typeof evaluate>[0],
  userSource: UserSource = 'options',
): WhatIfReport {
  const evaluated = evaluate(access, ctx);
  const assigned = isAssigned(app, ctx);
  // The relay refuses an unassigned user before any policy; the policies are still shown.
  const decision: Decision = assigned
    ? evaluated
    : {
        ...evaluated,
        result: 'deny',
        decidedBy: undefined,
        hint: `${ctx.email ?? ctx.user} is not assigned to ${app.name}. Ask your administrator for access.`,
        stepUp: undefined,
      };
  return { userSource, context: ctx, assigned, decision };
}

export async function whatIf(opts: WhatIfOptions, out: (line: string) => void): Promise<void> {
  if (remoteTarget(opts) !== undefined) return remoteWhatIf(opts, out);
  if (opts.config === undefined) throw usage('policy what-if needs --config relay.yaml, or --relay URL of a running relay');
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
  const d = report.decision;
  const dash = (x: string | undefined) => (x === undefined || x === '' ? '-' : x);
  out(
    `sign-in: app ${ctx.app}, user ${ctx.user}, email ${dash(ctx.email)}, groups ${dash(ctx.groups.join(','))}, ip ${ctx.ip} (country ${dash(ctx.country)}), platform ${ctx.platform}, amr ${ctx.amr.join('+')}, acr ${dash(ctx.acr)}, risk ${ctx.risk}, user risk ${ctx.userRisk}, device certificate ${ctx.deviceCertificate ? 'yes' : 'no'}, time ${ctx.time.toISOString()}`,
  );
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

/** The what-if input for the admin API, checked here so a typo fails before any call. */
export function whatIfInput(opts: WhatIfOptions): WhatIfInput {
  if (!opts.user) throw usage('--user must not be empty');
  if (!opts.app) throw usage('--app must not be empty');
  const platform = opts.platform ?? 'other';
  if (!PLATFORMS.includes(platform as Platform))
    throw usage(`unknown platform "${platform}" (one of ${PLATFORMS.join(', ')})`);
  for (const [flag, level] of [
    ['sign-in risk', opts.risk],
    ['user risk', opts.userRisk],
  ] as const)
    if (level !== undefined && !RISK_LEVELS.includes(level as RiskLevel))
      throw usage(`unknown ${flag} "${level}" (one of ${RISK_LEVELS.join(', ')})`);
  if (opts.ip !== undefined && !isIP(opts.ip)) throw usage(`--ip "${opts.ip}" is not an IPv4 or IPv6 address`);
  if (opts.time !== undefined && !parseInstant(opts.time))
    throw usage(
      `--time "${opts.time}" is not an ISO 8601 instant with a zone, such as 2025-03-10T09:30:00Z or 2025-03-10T09:30:00+01:00`,
    );
  if (opts.acr === '') throw usage('--acr must not be empty');
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
    platform: platform as Platform,
    ...(opts.mfa ? { mfa: true } : {}),
    ...(opts.acr !== undefined ? { acr: opts.acr } : {}),
    ...(opts.risk !== undefined ? { risk: opts.risk as RiskLevel } : {}),
    ...(opts.userRisk !== undefined ? { userRisk: opts.userRisk as RiskLevel } : {}),
    ...(opts.time !== undefined ? { time: opts.time } : {}),
    ...(opts.deviceCert ? { deviceCert: true } : {}),
  };
}

/** Asks a running relay: its apps, policies (file and API) and users, as it holds them now. */
async function remoteWhatIf(opts: WhatIfOptions, out: (line: string) => void): Promise<void> {
  const input = whatIfInput(opts);
  const result: WhatIfResult = await withAdmin(opts, (api) => api.whatIf(input));
  if (opts.json) {
    out(JSON.stringify(result, (_k, v: unknown) => (v === undefined ? null : v), 2));
    return;
  }
  const str = (v: unknown) => (v === undefined || v === null || v === '' ? '-' : safeCell(typeof v === 'string' ? v : JSON.stringify(v)));
  const c = result.context;
  out(`sign-in: ${Object.entries(c).map(([k, v]) => `${k} ${Array.isArray(v) ? str(v.join(',')) : str(v)}`).join(', ')}`);
  out(`assignment: ${result.assigned ? 'assigned' : 'not assigned'}`);
  // The relay's decision, whichever spelling it uses (action/result, reason/hint, result/outcome).
  const d = result.decision as Record<string, unknown> & WhatIfResult['decision'];
  if (d.policies.length === 0) out('policies: none configured');
  else
    printTable(
      ['POLICY', 'STATE', 'APPLIES', 'WHY', 'OUTCOME', 'MISSING'],
      d.policies.map((p) => [
        str(p.name),
        str(p.state),
        p['applies'] === undefined ? '-' : p['applies'] ? 'yes' : 'no',
        str(p['why']),
        str(p.result ?? p['outcome']),
        Array.isArray(p['missing']) && p['missing'].length ? p['missing'].join(',') : '-',
      ]),
      out,
    );
  const action = d.action ?? d['result'];
  const by = d['decidedBy'] ? ` by policy "${str(d['decidedBy'])}"` : '';
  const reason = d.reason ?? d['hint'];
  out(`decision: ${str(action)}${by}${reason ? `: ${str(reason)}` : ''}`);
}
