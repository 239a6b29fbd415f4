// `proxyctl signins list|show` and `proxyctl audit list`: the relay's logs as the
// store holds them (the data directory, or PostgreSQL when the config names it).
// Tables for people (newest first), --json and --csv for scripts.
import type { AdminApi, AuditView, Page, SignInView } from '../admin/api-types.js';
import { ProxyctlError } from '../errors.js';
import { parseWhen } from '../admin/when.js';
import type { AuditEntry, SignInRecord } from '../store/index.js';
import { remoteTarget, withAdmin, type AdminTargetOptions } from './admin-client.js';
import { withStore } from './open-store.js';
import { loadConfigFromOptions } from './load-config.js';
import { csvLine, printTable, safeCell } from './table.js';

/** The data directory (--config, --data-dir) or a relay's admin API (--relay). */
type ServeOptions = AdminTargetOptions;

type Out = (line: string) => void;

export interface LogOptions extends ServeOptions {
  since?: string;
  until?: string;
  limit?: string;
  json?: boolean;
  csv?: boolean;
}

export interface SignInListOptions extends LogOptions {
  user?: string;
  app?: string;
  result?: string;
  risk?: string;
}

export interface AuditListOptions extends LogOptions {
  actor?: string;
  action?: string;
}

const RESULTS = ['success', 'failure', 'stepUp'] as const;
const RISKS = ['none', 'low', 'medium', 'high'] as const;

function usage(message: string): ProxyctlError {
  return new ProxyctlError('ERR_USAGE', message);
}

export { parseWhen };

function limitOf(text: string | undefined): number {
  if (text === undefined) return 50;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 10_000)
    throw usage(`--limit takes a whole number from 1 to 10000; found ${JSON.stringify(text)}`);
  return n;
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value))
    throw usage(`${flag} takes one of ${allowed.join(', ')}; found ${JSON.stringify(value)}`);
  return value as T;
}

function formatOf(opts: LogOptions): 'json' | 'csv' | 'table' {
  if (opts.json && opts.csv) throw usage('--json and --csv cannot be used together');
  return opts.json ? 'json' : opts.csv ? 'csv' : 'table';
}

const iso = (ms: number) => new Date(ms).toISOString();
const place = (s: SignInRecord) => [s.city, s.country].filter(Boolean).join(', ') || '-';
const client = (s: SignInRecord) => [s.browser, s.os].filter(Boolean).join(' on ') || s.clientType || '-';

const SIGN_IN_CSV = [
  'id',
  'time',
  'kind',
  'user',
  'app',
  'result',
  'reason',
  'risk',
  'detections',
  'ip',
  'country',
  'city',
  'latitude',
  'longitude',
  'asn',
  'network',
  'browser',
  'os',
  'clientType',
  'methods',
  'userAgent',
  'requestId',
  'traceId',
];

export async function listSignIns(opts: SignInListOptions, out: Out, now = Date.now()): Promise<void> {
  const format = formatOf(opts);
  const query = {
    subject: opts.user,
    app: opts.app,
    result: oneOf('--result', opts.result, RESULTS),
    risk: oneOf('--risk', opts.risk, RISKS),
    since: opts.since === undefined ? undefined : parseWhen('--since', opts.since, now),
    until: opts.until === undefined ? undefined : parseWhen('--until', opts.until, now),
    limit: limitOf(opts.limit),
    order: 'desc' as const,
  };
  const rows =
    remoteTarget(opts) !== undefined
      ? (
          await withAdmin(opts, (api) =>
            readPages(query.limit, (limit, cursor) =>
              api.signIns({
                user: query.subject,
                app: query.app,
                result: query.result,
                risk: query.risk,
                since: isoOf(query.since),
                until: isoOf(query.until),
                limit,
                cursor,
              }),
            ),
          )
        ).map(signInRecord)
      : await withStore(loadConfigFromOptions(opts), (store) => store.signIns.query(query));
  if (format === 'json') {
    out(JSON.stringify(rows.map(signInJson), null, 2));
    return;
  }
  if (format === 'csv') {
    out(csvLine(SIGN_IN_CSV));
    for (const s of rows)
      out(
        csvLine([
          s.id,
          iso(s.at),
          s.kind,
          s.subject,
          s.app,
          s.result,
          s.reason,
          s.risk,
          s.detections.map((d) => `${d.type}:${d.level}`).join(' '),
          s.ip,
          s.country,
          s.city,
          s.latitude,
          s.longitude,
          s.asn,
          s.network,
          s.browser,
          s.os,
          s.clientType,
          s.methods.join(' '),
          s.userAgent,
          s.requestId,
          s.traceId,
        ]),
      );
    return;
  }
  printTable(
    ['ID', 'TIME', 'USER', 'APP', 'RESULT', 'RISK', 'IP', 'LOCATION', 'CLIENT', 'REASON'],
    rows.map((s) => [
      String(s.id),
      iso(s.at),
      s.subject ?? '-',
      s.app ?? '-',
      s.result,
      s.risk,
      s.ip ?? '-',
      place(s),
      client(s),
      s.reason ?? '-',
    ]),
    out,
  );
}

const isoOf = (ms: number | undefined) => (ms === undefined ? undefined : iso(ms));

/** The API serves at most this many rows a page. */
const API_PAGE = 1000;

/** Up to `limit` rows, newest first, page after page. */
async function readPages<T>(
  limit: number,
  page: (limit: number, cursor: string | undefined) => Promise<Page<T>>,
): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | undefined;
  do {
    const p = await page(Math.min(API_PAGE, limit - rows.length), cursor);
    rows.push(...p.items.slice(0, limit - rows.length));
    cursor = p.next ?? undefined;
  } while (cursor !== undefined && rows.length < limit);
  return rows;
}

/** A sign-in from the API as the store spells it, so both print (and --json) alike. */
function signInRecord(v: SignInView): SignInRecord {
  const { user, at, ...rest } = v;
  return { ...rest, at: Date.parse(at), subject: user };
}

function auditEntry(v: AuditView): AuditEntry {
  return { ...v, at: Date.parse(v.at) };
}

/** A sign-in for scripts: times in ISO 8601 beside the milliseconds. */
function signInJson(s: SignInRecord): Record<string, unknown> {
  return { ...s, time: iso(s.at) };
}

export async function showSignIn(id: string, opts: ServeOptions & { json?: boolean }, out: Out): Promise<void> {
  const n = Number(id);
  if (!/^\d+$/.test(id) || !Number.isSafeInteger(n))
    throw usage(`a sign-in id is a whole number; found ${JSON.stringify(id)}`);
  const s =
    remoteTarget(opts) !== undefined
      ? signInRecord(await withAdmin(opts, (api: AdminApi) => api.signIn(n)))
      : await withStore(loadConfigFromOptions(opts), (store) => store.signIns.get(n));
  if (!s) throw new ProxyctlError('ERR_NOT_FOUND', `no sign-in with id ${n} (it may be older than logs.retention)`);
  if (opts.json) {
    out(JSON.stringify(signInJson(s), null, 2));
    return;
  }
  const line = (label: string, value: string | number | null) =>
    out(`${`${label}:`.padEnd(15)}${value === null || value === '' ? '-' : safeCell(String(value), 400)}`);
  line('id', s.id);
  line('time', iso(s.at));
  line('kind', s.kind);
  line('result', s.result + (s.reason ? ` (${s.reason})` : ''));
  line('user', s.subject);
  line('app', s.app);
  line('methods', s.methods.join(', '));
  line('ip', s.ip);
  line(
    'location',
    [s.city, s.country].filter(Boolean).join(', ') + (s.latitude !== null ? ` (${s.latitude}, ${s.longitude})` : ''),
  );
  line('network', s.asn !== null ? `AS${s.asn} ${s.network ?? ''}`.trim() : null);
  line('client', `${client(s)}${s.clientType ? ` [${s.clientType}]` : ''}`);
  line('user agent', s.userAgent);
  line('risk', s.risk);
  for (const d of s.detections) line('  detection', `${d.type} (${d.level})${d.detail ? `: ${d.detail}` : ''}`);
  line('request id', s.requestId);
  line('trace id', s.traceId);
  if (s.city !== null || s.latitude !== null) line('location data', 'IP Geolocation by DB-IP (https://db-ip.com)');
  out('policies:');
  if (s.policies.length === 0) out('  -');
  for (const p of s.policies as Record<string, unknown>[]) {
    const text = (v: unknown) => safeCell(typeof v === 'string' ? v : v === undefined ? '-' : JSON.stringify(v));
    const missing =
      Array.isArray(p['missing']) && p['missing'].length ? ` missing ${text(p['missing'].join(', '))}` : '';
    out(`  ${text(p['name'])} [${text(p['state'])}] ${text(p['outcome'])}: ${text(p['why'])}${missing}`);
  }
}

export async function listAudit(opts: AuditListOptions, out: Out, now = Date.now()): Promise<void> {
  const format = formatOf(opts);
  const query = {
    actor: opts.actor,
    action: opts.action,
    since: opts.since === undefined ? undefined : parseWhen('--since', opts.since, now),
    until: opts.until === undefined ? undefined : parseWhen('--until', opts.until, now),
    limit: limitOf(opts.limit),
    order: 'desc' as const,
  };
  const rows: AuditEntry[] =
    remoteTarget(opts) !== undefined
      ? (
          await withAdmin(opts, (api) =>
            readPages(query.limit, (limit, cursor) =>
              api.audit({
                actor: query.actor,
                action: query.action,
                since: isoOf(query.since),
                until: isoOf(query.until),
                limit,
                cursor,
              }),
            ),
          )
        ).map(auditEntry)
      : await withStore(loadConfigFromOptions(opts), (store) => store.audit.query(query));
  if (format === 'json') {
    out(
      JSON.stringify(
        rows.map((a) => ({ ...a, time: iso(a.at) })),
        null,
        2,
      ),
    );
    return;
  }
  if (format === 'csv') {
    out(csvLine(['id', 'time', 'actor', 'action', 'connectorId', 'details']));
    for (const a of rows) out(csvLine([a.id, iso(a.at), a.actor, a.action, a.connectorId, JSON.stringify(a.details)]));
    return;
  }
  printTable(
    ['ID', 'TIME', 'ACTOR', 'ACTION', 'CONNECTOR', 'DETAILS'],
    rows.map((a) => [String(a.id), iso(a.at), a.actor, a.action, a.connectorId ?? '-', JSON.stringify(a.details)]),
    out,
  );
}
