// The tables both implementations share, as rows, and how a row becomes a record.
// Column names and meanings are the same in SQLite and PostgreSQL; only JSON columns
// differ in transit (SQLite hands back text, PostgreSQL's JSONB parsed values) and
// booleans (SQLite 0/1), which `json` and `flag` absorb.
import type {
  AuditEntry,
  IdpArtifactKey,
  CertificateRecord,
  ConnectorRecord,
  ReplicaRecord,
  SignInRecord,
  SigninState,
  UserRecord,
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
  app: string | null;
  subject: string | null;
  ip: string | null;
  country: string | null;
  user_agent: string | null;
  result: string;
  reason: string | null;
  policies: Json<unknown[]>;
  risk: string | null;
}

export const toSignIn = (r: SignInRow): SignInRecord => ({
  id: r.id,
  at: r.at,
  requestId: r.request_id,
  app: r.app,
  subject: r.subject,
  ip: r.ip,
  country: r.country,
  userAgent: r.user_agent,
  result: r.result as SignInRecord['result'],
  reason: r.reason,
  policies: json(r.policies),
  risk: r.risk,
});

/** The column list of a sign-in row as written, and its values in that order (user agent kept to 512). */
export const SIGN_IN_COLUMNS = 'at, request_id, app, subject, ip, country, user_agent, result, reason, policies, risk';
export const signInValues = (e: Omit<SignInRecord, 'id'>): unknown[] => [
  e.at,
  e.requestId,
  e.app,
  e.subject,
  e.ip,
  e.country,
  e.userAgent?.slice(0, 512) ?? null,
  e.result,
  e.reason,
  JSON.stringify(e.policies),
  e.risk,
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
