// What would the relay decide for this sign-in: the context built from what an
// administrator gives (or the embedded provider's user), the app's assignment as at
// sign-in, and the relay's own evaluate(). Shared by `policy what-if` and the API.
import { isIP } from 'node:net';
import type { AppConfig } from '../config/relay-config.js';
import { ProxyctlError } from '../errors.js';
import { emailKey, isAssigned } from '../policy/assignment.js';
import { loadUsersFile } from '../idp/users.js';
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
import type { UserRecord } from '../store/index.js';

/** What a what-if is asked: the CLI's options, as strings. */
export interface WhatIfOptions {
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
}

/** Where the sign-in's identity came from: the embedded provider's user, or the options alone. */
export type UserSource = 'embedded' | 'options';

const usage = (message: string) => new ProxyctlError('ERR_USAGE', message, { status: 400 });

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

/**
 * The embedded provider's user named by `id`: a user name (its `sub`; any case, as at its
 * login form) or an e-mail address (ASCII case aside; it must name one user). Users of the
 * users file win over the store's, as the provider reads them.
 */
export function matchUser(
  stored: readonly UserRecord[],
  usersFile: string | undefined,
  id: string,
  option: OptionName = cliFlag,
): UserRecord | undefined {
  const users = new Map<string, UserRecord>();
  for (const u of stored) users.set(u.username.toLowerCase(), u);
  if (usersFile !== undefined) for (const u of loadUsersFile(usersFile)) users.set(u.username.toLowerCase(), u);
  const byName = users.get(id.toLowerCase());
  if (byName || !id.includes('@')) return byName;
  const byEmail = [...users.values()].filter((u) => u.email !== null && emailKey(u.email) === emailKey(id));
  if (byEmail.length > 1)
    throw usage(
      `${option('user')} ${id} is the e-mail address of several users (${byEmail.map((u) => u.username).join(', ')}); give the user name`,
    );
  return byEmail[0];
}

/** How refusals name an input: the CLI's flag (`--ip`) by default; the API passes its field name. */
export type OptionName = (field: 'user' | 'ip' | 'time' | 'acr') => string;
const cliFlag: OptionName = (field) => `--${field}`;

export function contextFromOptions(
  opts: WhatIfOptions,
  apps: readonly AppConfig[],
  now: () => Date = () => new Date(),
  user?: UserRecord,
  option: OptionName = cliFlag,
): { app: AppConfig; ctx: SignInContext } {
  const app = apps.find((a) => a.name === opts.app);
  if (!app) {
    const known = apps.map((a) => a.name);
    throw usage(
      `unknown app "${opts.app}" (${known.length ? `known apps: ${known.join(', ')}` : 'the config publishes no apps'})`,
    );
  }
  if (!opts.user) throw usage(`${option('user')} must not be empty`);
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
  if (!isIP(ip)) throw usage(`${option('ip')} "${ip}" is not an IPv4 or IPv6 address`);
  let time = now();
  if (opts.time !== undefined) {
    const parsed = parseInstant(opts.time);
    if (!parsed) {
      throw usage(
        `${option('time')} "${opts.time}" is not an ISO 8601 instant with a zone, such as 2025-03-10T09:30:00Z or 2025-03-10T09:30:00+01:00`,
      );
    }
    time = parsed;
  }
  if (opts.acr === '') throw usage(`${option('acr')} must not be empty`);
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
