// What the relay keeps: the record types and one interface per aggregate. The
// rest of proxyctl sees only these; src/store/sqlite/ is today's implementation.
//
// Synchronous on purpose. better-sqlite3 answers in-process, and the per-request
// checks (a session cookie's sid, a bearer token's provider sid, a connector's
// certificate on every connector-API call and WebSocket upgrade) are synchronous
// code today. A PostgreSQL implementation (node-postgres has no synchronous API)
// will need every method here to return a Promise; change the interfaces in one
// step then, once the request pipeline and connector refactors have landed, and
// `await` at the call sites (authenticateConnector, Authenticator.sessionFrom and
// bearer checks, the relay's store watcher, UserDirectory.find). To keep that
// change mechanical:
//  - each method is one atomic operation (no transaction handles cross this
//    boundary): read-then-write steps such as a name check before a registration,
//    a single-use take, or a TOTP step compare-and-set happen inside the method;
//  - audit rows are written by the aggregate whose change they record, in the
//    same transaction;
//  - `now` parameters are explicit where tests or callers need a clock.

export interface ConnectorRecord {
  id: string;
  name: string;
  group: string;
  createdAt: number;
  createdBy: string;
  version: string | null;
  lastSeen: number | null;
  revokedAt: number | null;
}

export interface CertificateRecord {
  serial: string;
  connectorId: string;
  issuedAt: number;
  notAfter: number;
  /** When the certificate stops being accepted; a time still ahead is a renewal's grace period. */
  revokedAt: number | null;
  kind: 'register' | 'renew';
}

export interface ConnectorListing extends ConnectorRecord {
  /** Latest unrevoked certificate's expiry, if any. */
  certificateExpires: number | null;
  certificates: number;
}

export interface NewConnector {
  id: string;
  name: string;
  group: string;
  actor: string;
  serial: string;
  issuedAt: number;
  notAfter: number;
}

export interface Renewal {
  connectorId: string;
  oldSerial: string;
  serial: string;
  issuedAt: number;
  notAfter: number;
  graceUntil: number;
}

export interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  action: string;
  connectorId: string | null;
  details: Record<string, unknown>;
}

export interface SignInRecord {
  id: number;
  at: number;
  requestId: string | null;
  app: string | null;
  subject: string | null;
  ip: string | null;
  country: string | null;
  userAgent: string | null;
  result: 'success' | 'failure' | 'stepUp';
  reason: string | null;
  policies: unknown[];
  risk: string | null;
}

export type KeyPurpose = 'session' | 'assertion';

export interface KeyRecord {
  kid: string;
  purpose: KeyPurpose;
  material: string;
  createdAt: number;
  retiredAt: number | null;
}

export interface SigninState {
  state: string;
  app: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  createdAt: number;
  stepUp: boolean;
}

export interface NewSession {
  sid: string;
  app: string;
  subject: string;
  createdAt: number;
  expiresAt: number;
  clientIp: string | null;
}

export interface UserRecord {
  username: string;
  passwordHash: string;
  email: string | null;
  name: string | null;
  groups: string[];
  roles: string[];
  totpSecret: string | null;
  createdAt: number;
}

/** How the oidc-provider adapter looks an artifact up. */
export type IdpArtifactKey = 'id' | 'uid' | 'userCode';

/** Connectors and every certificate issued to them. Each change bumps the store's generation. */
export interface ConnectorRepo {
  /**
   * Records a connector and its first certificate. A live connector's name is unique
   * (ignoring case) and never a connector id (ERR_CONNECTOR_NAME_TAKEN), checked and
   * written atomically so two relays cannot both find a name free.
   */
  register(input: NewConnector): ConnectorRecord;
  /**
   * Records a renewed certificate. Every other live certificate of the connector is
   * scheduled for revocation at `graceUntil`, or earlier, when the connector first
   * authenticates with the new one (retireSuperseded). ERR_CERT_REVOKED for a revoked connector.
   */
  recordRenewal(input: Renewal): void;
  /** Revokes the connector (found as by `find`) and every certificate it holds. */
  revoke(idOrName: string, actor: string, now?: number): ConnectorRecord;
  /**
   * One connector by id, or by name when exactly one live connector (else the latest
   * revoked one) has it. `id:` and `name:` prefixes pick one kind; without them, an
   * argument that is one connector's id and another's name is refused (ERR_USAGE).
   */
  find(idOrName: string): ConnectorRecord;
  get(id: string): ConnectorRecord | undefined;
  getCertificate(serial: string): CertificateRecord | undefined;
  /** Records that a connector was seen (heartbeat, config pull); a null version keeps the old one. */
  touch(connectorId: string, version: string | null, now?: number): void;
  list(): ConnectorListing[];
  /**
   * Serials among the given ones whose connector was revoked, or that are unknown. A
   * certificate retired by a renewal is not listed: its connector lives on.
   */
  revokedAmong(serials: readonly string[]): Set<string>;
  /** The certificates a renewal superseded stop now instead of at the end of their grace. Returns how many. */
  retireSuperseded(connectorId: string, now?: number): number;
}

/** The audit trail, newest first. Written by the other aggregates inside their own changes. */
export interface AuditLog {
  list(limit?: number): AuditEntry[];
}

/** Session-encryption and assertion-signing keys. */
export interface KeyRepo {
  /** Newest first; the newest is current. */
  list(purpose: KeyPurpose): KeyRecord[];
  /** Adds a key and retires the previous current one (still readable until dropped); audited. */
  add(key: { kid: string; purpose: KeyPurpose; material: string }, actor: string, now?: number): void;
  /** Drops retired keys retired before `before`. Returns how many. */
  dropRetiredBefore(purpose: KeyPurpose, before: number): number;
}

/** Relay sign-ins in flight, relay sessions, and provider sessions signed out of at the relay. */
export interface SessionRepo {
  putSigninState(s: SigninState): void;
  /** Returns the state once; a second call (replay) finds nothing. */
  takeSigninState(state: string): SigninState | undefined;
  purgeSigninStates(olderThan: number): void;
  create(s: NewSession): void;
  /** True when the session exists, has not expired and was not signed out or revoked. */
  isActive(sid: string, now?: number): boolean;
  revoke(sid: string, now?: number): void;
  /** Deletes sessions and ended provider sessions that expired before `expiredBefore`. */
  purge(expiredBefore: number): void;
  /** Records that the provider session `sid` was signed out of, until `until`; a later call only extends it. */
  endProviderSession(sid: string, now: number, until: number): void;
  providerSessionEnded(sid: string, now?: number): boolean;
}

/** Every relay sign-in attempt, oldest first, paged by id. */
export interface SignInLog {
  /** The user agent is kept to 512 characters. */
  record(e: Omit<SignInRecord, 'id'>): void;
  list(limit?: number, afterId?: number): SignInRecord[];
}

/** The embedded provider's users. */
export interface UserRepo {
  get(username: string): UserRecord | undefined;
  /** By username. */
  list(): UserRecord[];
  /** Inserts or updates (keeping createdAt); audited as `action`. */
  put(u: UserRecord, actor: string, action: 'user.add' | 'user.update'): void;
  /** False when there was no such user; audited otherwise. */
  remove(username: string, actor: string): boolean;
  /**
   * Records `step` as the user's last accepted TOTP time step, atomically: false
   * (nothing changed) when it is not later than the last one, i.e. a replayed code
   * or an older one (RFC 6238 §5.2). Holds across restarts and relays sharing the store.
   */
  acceptTotpStep(username: string, step: number): boolean;
}

/** What oidc-provider persists through its adapter (grants, codes, sessions, interactions…), per model. */
export interface IdpArtifactRepo {
  upsert(model: string, id: string, payload: Record<string, unknown>, expiresInS: number | undefined): void;
  /** The payload, or undefined when unknown or expired. */
  find(model: string, by: IdpArtifactKey, value: string): Record<string, unknown> | undefined;
  /** Marks the artifact consumed (payload `consumed`, seconds). */
  consume(model: string, id: string): void;
  destroy(model: string, id: string): void;
  revokeByGrantId(grantId: string): void;
  purgeExpired(): void;
}

export interface Store {
  readonly connectors: ConnectorRepo;
  readonly audit: AuditLog;
  readonly keys: KeyRepo;
  readonly sessions: SessionRepo;
  readonly signIns: SignInLog;
  readonly users: UserRepo;
  readonly idpArtifacts: IdpArtifactRepo;
  /**
   * Bumped when connector or certificate state changes, here or (through
   * bumpGeneration) in another process; connector identities cached per socket are
   * re-checked when it moves.
   */
  readonly generation: number;
  bumpGeneration(): void;
  /**
   * Changes whenever another process (the admin CLI, a second relay) commits; the
   * relay polls it to pick up revocations and key rotations. PostgreSQL: a counter
   * kept by LISTEN/NOTIFY or a change-sequence row.
   */
  dataVersion(): number;
  /** Idempotent. */
  close(): void;
}
