// The tables both implementations share, as rows, and how a row becomes a record.
// Column names and meanings are the same in SQLite and PostgreSQL; only JSON columns
// differ in transit (SQLite hands back text, PostgreSQL's JSONB parsed values) and
// booleans (SQLite 0/1), which `json` and `flag` absorb.
import type {
  AuditEntry,
  AuditQuery,
  IdpArtifactKey,
  CertificateRecord,
  ConnectorRecord,
  RegistrationRecord,
  ReplicaRecord,
  RiskDetectionRecord,
  RiskQuery,
  SignInQuery,
  SignInRecord,
  SigninState,
  UserRecord,
  UserRiskState,
} from './types.js';

/** A JSON column as either backend returns it. */
type Json<T> = T | string;
const json = <T>(v: Json<T>): T => (typeof v === 'string' ? (JSON.parse(v) as T) : v);
const flag = (v: boolean | number): boolean => v === true || v === 1;

/** A record as a dump carries it: ids are renumbered by the store it goes into. */
export const withoutId = <T extends { id: number }>({ id: _id, ...rest }: T): Omit<T, 'id'> => rest;

/** Rows of replicas that stopped heartbeating are kept this long for the record, then deleted. */
export const STALE_REPLICA_KEEP_MS = 24 * 3600_000;

export interface ConnectorRow {
  id: string;
  name: string;
  group_name: string;
  created_at: number;
  created_by: string;
  version: string | null;
  last_seen: number | null;
  revoked_at: number | null;
  /** ConnectorRepo.delete: gone from list() and find() by name; get(id) still reads it. */
  deleted_at: number | null;
}

export const toConnector = (r: ConnectorRow): ConnectorRecord => ({
  id: r.id,
  name: r.name,
  group: r.group_name,
  createdAt: r.created_at,
  createdBy: r.created_by,
  version: r.version,
  lastSeen: r.last_seen,
  revokedAt: r.revoked_at,
});

export interface CertificateRow {
  serial: string;
  connector_id: string;
  issued_at: number;
  not_after: number;
  revoked_at: number | null;
  kind: 'register' | 'renew';
}

export const toCertificate = (r: CertificateRow): CertificateRecord => ({
  serial: r.serial,
  connectorId: r.connector_id,
  issuedAt: r.issued_at,
  notAfter: r.not_after,
  revokedAt: r.revoked_at,
  kind: r.kind,
});

export interface RegistrationRow {
  idempotency_key: string;
  connector_id: string;
  public_key_sha256: string;
  credential_sha256: string;
  certificate: string;
  created_at: number;
}

export const toRegistration = (r: RegistrationRow): RegistrationRecord => ({
  key: r.idempotency_key,
  connectorId: r.connector_id,
  publicKey: r.public_key_sha256,
  credential: r.credential_sha256,
  certificate: r.certificate,
  createdAt: r.created_at,
});

export interface UserRow {
  username: string;
  password_hash: string;
  email: string | null;
  name: string | null;
  groups: Json<string[]>;
  roles: Json<string[]>;
  totp_secret: string | null;
  created_at: number;
}

export const toUser = (r: UserRow): UserRecord => ({
  username: r.username,
  passwordHash: r.password_hash,
  email: r.email,
  name: r.name,
  groups: json(r.groups),
  roles: json(r.roles),
  totpSecret: r.totp_secret,
  createdAt: r.created_at,
});

export interface AuditRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  connector_id: string | null;
  details: Json<Record<string, unknown>>;
}

export const toAudit = (r: AuditRow): AuditEntry => ({
  id: r.id,
  at: r.at,
  actor: r.actor,
  action: r.action,
  connectorId: r.connector_id,
  details: json(r.details),
});

export interface SignInRow {
  id: number;
  at: number;
  request_id: string | null;
  kind: string;
  app: string | null;
  subject: string | null;
  ip: string | null;
  country: string | null;
  user_agent: string | null;
  result: string;
  reason: string | null;
  policies: Json<unknown[]>;
  risk: string | null;
  details: Json<Partial<SignInDetails>>;
}

/** The sign-in fields kept in the `details` JSON column: shown, exported, never filtered on. */
type SignInDetails = Pick<
  SignInRecord,
  | 'traceId'
  | 'city'
  | 'latitude'
  | 'longitude'
  | 'asn'
  | 'network'
  | 'browser'
  | 'os'
  | 'clientType'
  | 'methods'
  | 'detections'
>;

export const toSignIn = (r: SignInRow): SignInRecord => {
  const d = json(r.details);
  return {
    id: r.id,
    at: r.at,
    requestId: r.request_id,
    traceId: d.traceId ?? null,
    kind: r.kind as SignInRecord['kind'],
    app: r.app,
    subject: r.subject,
    ip: r.ip,
    country: r.country,
    city: d.city ?? null,
    latitude: d.latitude ?? null,
    longitude: d.longitude ?? null,
    asn: d.asn ?? null,
    network: d.network ?? null,
    userAgent: r.user_agent,
    browser: d.browser ?? null,
    os: d.os ?? null,
    clientType: d.clientType ?? null,
    methods: d.methods ?? [],
    result: r.result as SignInRecord['result'],
    reason: r.reason,
    policies: json(r.policies),
    risk: (r.risk ?? 'none') as SignInRecord['risk'],
    detections: d.detections ?? [],
  };
};

/** The column list of a sign-in row as written, and its values in that order (user agent kept to 512). */
export const SIGN_IN_COLUMNS =
  'at, request_id, kind, app, subject, ip, country, user_agent, result, reason, policies, risk, details';
export const signInValues = (e: Omit<SignInRecord, 'id'>): unknown[] => [
  e.at,
  e.requestId,
  e.kind,
  e.app,
  e.subject,
  e.ip,
  e.country,
  e.userAgent?.slice(0, 512) ?? null,
  e.result,
  e.reason,
  JSON.stringify(e.policies),
  e.risk,
  JSON.stringify({
    traceId: e.traceId,
    city: e.city,
    latitude: e.latitude,
    longitude: e.longitude,
    asn: e.asn,
    network: e.network,
    browser: e.browser,
    os: e.os,
    clientType: e.clientType,
    methods: e.methods,
    detections: e.detections,
  } satisfies SignInDetails),
];

export interface RiskDetectionRow {
  id: number;
  at: number;
  subject: string | null;
  ip: string | null;
  app: string | null;
  type: string;
  level: string;
  signin_id: number | null;
  request_id: string | null;
  details: Json<Record<string, unknown>>;
}

export const toRiskDetection = (r: RiskDetectionRow): RiskDetectionRecord => ({
  id: r.id,
  at: r.at,
  subject: r.subject,
  ip: r.ip,
  app: r.app,
  type: r.type,
  level: r.level as RiskDetectionRecord['level'],
  signInId: r.signin_id,
  requestId: r.request_id,
  details: json(r.details),
});

export const RISK_DETECTION_COLUMNS = 'at, subject, ip, app, type, level, signin_id, request_id, details';
export const riskDetectionValues = (d: Omit<RiskDetectionRecord, 'id'>): unknown[] => [
  d.at,
  d.subject,
  d.ip,
  d.app,
  d.type,
  d.level,
  d.signInId,
  d.requestId,
  JSON.stringify(d.details),
];

/** The detection rows a sign-in's `detections` become, once the sign-in has its id. */
export const detectionsOf = (e: Omit<SignInRecord, 'id'>, signInId: number): Omit<RiskDetectionRecord, 'id'>[] =>
  e.detections.map((d) => ({
    at: e.at,
    subject: e.subject,
    ip: e.ip,
    app: e.app,
    type: d.type,
    level: d.level,
    signInId,
    requestId: e.requestId,
    details: d.detail ? { detail: d.detail } : {},
  }));

export interface UserRiskRow {
  subject: string;
  dismissed_at: number | null;
  confirmed_at: number | null;
  by_actor: string | null;
}

export const toUserRisk = (r: UserRiskRow): UserRiskState => ({
  subject: r.subject,
  dismissedAt: r.dismissed_at,
  confirmedAt: r.confirmed_at,
  by: r.by_actor,
});

/**
 * A WHERE clause (with its parameters) from optional filters, for both backends:
 * `ph(n)` writes the n-th placeholder (`?` or `$n`). Columns are fixed names, never input.
 */
export function whereOf(
  filters: [column: string, op: '=' | '>=' | '<=' | '>' | '<' | 'LIKE', value: unknown][],
  ph: (n: number) => string,
): { sql: string; params: unknown[] } {
  const parts: string[] = [];
  const params: unknown[] = [];
  for (const [column, op, value] of filters) {
    if (value === undefined) continue;
    params.push(value);
    parts.push(
      op === 'LIKE' ? `${column} LIKE ${ph(params.length)} ESCAPE '\\'` : `${column} ${op} ${ph(params.length)}`,
    );
  }
  return { sql: parts.length ? `WHERE ${parts.join(' AND ')}` : '', params };
}

/** Paging and order shared by the log queries: limit 1..10,000 (100 by default). */
export function pageOf(q: { limit?: number | undefined; order?: 'asc' | 'desc' | undefined }): {
  limit: number;
  order: 'ASC' | 'DESC';
} {
  const limit = Math.max(1, Math.min(10_000, Math.floor(q.limit ?? 100)));
  return { limit, order: q.order === 'desc' ? 'DESC' : 'ASC' };
}

/** The filters of a sign-in query, as whereOf takes them. */
export const signInFilters = (q: SignInQuery): Parameters<typeof whereOf>[0] => [
  ['subject', '=', q.subject],
  ['app', '=', q.app],
  ['result', '=', q.result],
  ['risk', '=', q.risk],
  ['at', '>=', q.since],
  ['at', '<=', q.until],
  ['id', '>', q.afterId],
  ['id', '<', q.beforeId],
];

/** An action filter ending in "." matches every action under it. */
export const auditFilters = (q: AuditQuery): Parameters<typeof whereOf>[0] => [
  ['actor', '=', q.actor],
  q.action?.endsWith('.')
    ? ['action', 'LIKE', `${q.action.replace(/[\\%_]/g, (c) => `\\${c}`)}%`]
    : ['action', '=', q.action],
  ['at', '>=', q.since],
  ['at', '<=', q.until],
  ['id', '>', q.afterId],
  ['id', '<', q.beforeId],
];

export const riskFilters = (q: RiskQuery): Parameters<typeof whereOf>[0] => [
  ['subject', '=', q.subject],
  ['type', '=', q.type],
  ['at', '>=', q.since],
  ['at', '<=', q.until],
  ['id', '>', q.afterId],
  ['id', '<', q.beforeId],
];

export interface SigninStateRow {
  state: string;
  app: string;
  nonce: string;
  verifier: string;
  return_to: string;
  created_at: number;
  step_up: boolean | number;
}

export const toSigninState = (r: SigninStateRow): SigninState => ({
  state: r.state,
  app: r.app,
  nonce: r.nonce,
  verifier: r.verifier,
  returnTo: r.return_to,
  createdAt: r.created_at,
  stepUp: flag(r.step_up),
});

export interface ReplicaRow {
  id: string;
  connector_api_url: string;
  version: string;
  started_at: number;
  heartbeat_at: number;
}

export const toReplica = (r: ReplicaRow): ReplicaRecord => ({
  id: r.id,
  connectorApiUrl: r.connector_api_url,
  version: r.version,
  startedAt: r.started_at,
  heartbeatAt: r.heartbeat_at,
});

/** The column each way the provider looks an artifact up by is kept in. */
export const ARTIFACT_COLUMN: Readonly<Record<IdpArtifactKey, string>> = {
  id: 'id',
  uid: 'uid',
  userCode: 'user_code',
};

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** The uid, user_code and grant_id columns of an artifact, from its payload. */
export const artifactKeys = (payload: Record<string, unknown>): [string | null, string | null, string | null] => [
  str(payload['uid']),
  str(payload['userCode']),
  str(payload['grantId']),
];
