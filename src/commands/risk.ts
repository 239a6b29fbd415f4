// `proxyctl risk list|dismiss|confirm USER`: users' risk as the relay computes it
// (detections after the last dismissal, each lowered one level per decay period;
// confirmed compromised is high), and the administrator's two decisions, audited.
// A running relay reads the change within its cache time (a minute at most; at
// once on PostgreSQL through the change feed).
import { ProxyctlError } from '../errors.js';
import type { RiskUserView } from '../admin/api-types.js';
import type { AdminOperations } from '../admin/operations.js';
import { localCaller, remoteTarget, withAdmin, type AdminTargetOptions } from './admin-client.js';
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

export async function listRisk(opts: RiskListOptions, out: Out, now = Date.now()): Promise<void> {
  const users: RiskUserView[] =
    remoteTarget(opts) !== undefined
      ? await withAdmin(opts, (api) =>
          api.riskUsers({
            ...(opts.all ? { all: true } : {}),
            ...(opts.since !== undefined
              ? { since: new Date(parseWhen('--since', opts.since, now)).toISOString() }
              : {}),
          }),
        )
      : await local(opts, now, (api) =>
          api.riskUsers({
            ...(opts.all ? { all: true } : {}),
            ...(opts.since !== undefined
              ? { since: new Date(parseWhen('--since', opts.since, now)).toISOString() }
              : {}),
          }),
        );
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

/** The operations on the data directory, at `now` (tests fix the clock). */
async function local<T>(opts: ServeOptions, now: number, fn: (api: AdminOperations) => Promise<T>): Promise<T> {
  const config = loadConfigFromOptions(opts);
  const { AdminOperations } = await import('../admin/operations.js');
  return withStore(config, (store) =>
    fn(new AdminOperations({ store, config, caller: localCaller(), now: () => now })),
  );
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
  else await local(opts, now, (api) => api.dismissRisk(user));
  out(`dismissed the risk of ${safeCell(user)}: detections up to now no longer count`);
}

export async function confirmRisk(user: string, opts: ServeOptions, out: Out, now = Date.now()): Promise<void> {
  checkUser(user);
  if (remoteTarget(opts) !== undefined) await withAdmin(opts, (api) => api.confirmRisk(user));
  else await local(opts, now, (api) => api.confirmRisk(user));
  out(`confirmed ${safeCell(user)} compromised: user risk high until dismissed`);
}
