// What the relay keeps: the record types and one interface per aggregate. The
// rest of proxyctl sees only these; src/store/sqlite/ (one machine, embedded) and
// src/store/postgres/ (replicas sharing one database) implement them.
//
// Every method returns a Promise: node-postgres has no synchronous API. Rules that
// keep both implementations interchangeable (test/helpers/store-contract.ts runs
// the same suite against each):
//  - each method is one atomic operation (no transaction handles cross this
//    boundary): read-then-write steps such as a name check before a registration,
//    a single-use take, or a TOTP step compare-and-set happen inside the method;
//  - audit rows are written by the aggregate whose change they record, in the
//    same transaction;
//  - `now` parameters are explicit where tests or callers need a clock;
//  - a store that cannot reach its database rejects with ERR_STORE_UNAVAILABLE
//    (HTTP 503), never with a half-done change. Reads on the request path
//    (sessions, ended provider sessions, certificates) may be answered from what
//    the store already holds, so signed-in users keep working through an outage.

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
  /** An idempotent registration: recorded with the connector, in the same transaction. */
  registration?: RegistrationKey;
}

/**
 * What an idempotent registration keeps so that its retry, when the answer never reached
 * the connector, gets the same certificate back instead of making a second connector.
 */
export interface RegistrationKey {
  /** The random key the connector chose for this attempt and saved before sending it. */
  key: string;
  /** SHA-256 (hex) of the public key (SPKI DER) the certificate was issued for: a retry must send a CSR for it. */
  publicKey: string;
  /** SHA-256 (hex) of the administrator token the registration was made with: a retry must carry the same one. */
  credential: string;
  /** The certificate issued (PEM), given again to a retry. */
  certificate: string;
}

export interface RegistrationRecord extends RegistrationKey {
  connectorId: string;
  createdAt: number;
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

/** How a sign-in attempt reached the relay or the embedded provider. */
export type SignInKind = 'interactive' | 'bearer' | 'provider';
/** What kind of client made it: a browser, a script without a browser's headers, a native client with a token. */
export type ClientType = 'browser' | 'script' | 'bearer';
/** Levels a detection can have; a sign-in or a user with none has risk `none`. */
export type DetectionLevel = 'low' | 'medium' | 'high';
export type RiskLevelName = 'none' | DetectionLevel;

/** One risk detection as a sign-in row carries it. */
export interface SignInDetection {
  type: string;
  level: DetectionLevel;
  /** A short explanation for people ("1,230 km in 20 min from DE to US"). */
  detail?: string;
}

export interface SignInRecord {
  id: number;
  at: number;
  requestId: string | null;
  /** W3C trace id of the request that carried the attempt. */
  traceId: string | null;
  kind: SignInKind;
  app: string | null;
  subject: string | null;
  ip: string | null;
  country: string | null;
  city: string | null;
  latitude: number | null;
  longitude: number | null;
  /** Autonomous system number and its organisation. */
  asn: number | null;
  network: string | null;
  userAgent: string | null;
  browser: string | null;
  os: string | null;
  clientType: ClientType | null;
  /** Authentication methods (amr): pwd, otp, mfa… */
  methods: string[];
  result: 'success' | 'failure' | 'stepUp';
  reason: string | null;
  policies: unknown[];
  /** Sign-in risk: the highest level among `detections`, `none` without any. */
  risk: RiskLevelName;
  detections: SignInDetection[];
}

/** Filters for reading the sign-in log; every one optional. Times are ms since the epoch, inclusive. */
export interface SignInQuery {
  subject?: string;
  app?: string;
  result?: SignInRecord['result'];
  risk?: RiskLevelName;
  since?: number;
  until?: number;
  /** Paging: ids above (ascending) or below (descending) this one. */
  afterId?: number;
  beforeId?: number;
  /** Default 100, at most 10,000. */
  limit?: number;
  /** `asc` oldest first (default), `desc` newest first. */
  order?: 'asc' | 'desc';
}

export interface AuditQuery {
  actor?: string;
  /** Exact action, or a prefix ending in `.` ("connector."). */
  action?: string;
  since?: number;
  until?: number;
  afterId?: number;
  beforeId?: number;
  limit?: number;
  order?: 'asc' | 'desc';
}

/** A risk detection as stored: with a sign-in (signInId) or on its own (a spray source, a replayed code). */
export interface RiskDetectionRecord {
  id: number;
  at: number;
  /** The user it counts against; null for a source-only detection (password spray from an address). */
  subject: string | null;
  ip: string | null;
  app: string | null;
  type: string;
  level: DetectionLevel;
  signInId: number | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export interface RiskQuery {
  subject?: string;
  type?: string;
  since?: number;
  until?: number;
  afterId?: number;
  beforeId?: number;
  limit?: number;
  order?: 'asc' | 'desc';
}

/**
 * What an administrator decided about a user's risk. Detections up to `dismissedAt`
 * no longer count; `confirmedAt` (compromised) holds the user at high until dismissed.
 */
export interface UserRiskState {
  subject: string;
  dismissedAt: number | null;
  confirmedAt: number | null;
  by: string | null;
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
   * written atomically so two relays cannot both find a name free. With
   * `input.registration`, its key is checked first and recorded with the connector: a
   * key recorded already is refused with ERR_CONFLICT (409, details.reason
   * 'registration-key-used') and nothing is written, so two attempts with one key make
   * one connector; the other reads the first's with registration().
   */
  register(input: NewConnector): Promise<ConnectorRecord>;
  /** The idempotent registration recorded under `key`, if any. */
  registration(key: string): Promise<RegistrationRecord | undefined>;
  /**
   * Records a renewed certificate. Every other live certificate of the connector is
   * scheduled for revocation at `graceUntil`, or earlier, when the connector first
   * authenticates with the new one (retireSuperseded). ERR_CERT_REVOKED for a revoked connector.
   */
  recordRenewal(input: Renewal): Promise<void>;
  /** Revokes the connector (found as by `find`) and every certificate it holds. */
  revoke(idOrName: string, actor: string, now?: number): Promise<ConnectorRecord>;
  /**
   * One connector by id, or by name when exactly one live connector (else the latest
   * revoked one) has it. `id:` and `name:` prefixes pick one kind; without them, an
   * argument that is one connector's id and another's name is refused (ERR_USAGE).
   */
  find(idOrName: string): Promise<ConnectorRecord>;
  get(id: string): Promise<ConnectorRecord | undefined>;
  getCertificate(serial: string): Promise<CertificateRecord | undefined>;
  /** Every certificate issued to a connector, oldest first. */
  certificates(connectorId: string): Promise<CertificateRecord[]>;
  /** Records that a connector was seen (heartbeat, config pull); a null version keeps the old one. */
  touch(connectorId: string, version: string | null, now?: number): Promise<void>;
  list(): Promise<ConnectorListing[]>;
  /**
   * Serials among the given ones whose connector was revoked, or that are unknown. A
   * certificate retired by a renewal is not listed: its connector lives on.
   */
  revokedAmong(serials: readonly string[]): Promise<Set<string>>;
  /**
   * Removes a revoked connector from list() and find() by name (ERR_CONNECTOR_NOT_REVOKED, 409,
   * while it is not revoked; ERR_CONNECTOR_NOT_FOUND when unknown). Its certificate rows stay,
   * so revokedAmong still reports them. Audited (`connector.delete`) in the same transaction.
   */
  delete(idOrName: string, actor: string, now?: number): Promise<ConnectorRecord>;
  /** The certificates a renewal superseded stop now instead of at the end of their grace. Returns how many. */
  retireSuperseded(connectorId: string, now?: number): Promise<number>;
}

/** The audit trail, newest first. Written by the other aggregates inside their own changes. */
export interface AuditLog {
  list(limit?: number): Promise<AuditEntry[]>;
  query(q: AuditQuery): Promise<AuditEntry[]>;
  /** For changes no aggregate owns (a configuration reload); the others audit inside their own change. */
  record(e: Omit<AuditEntry, 'id'>): Promise<number>;
  /** Deletes entries older than `before`. Returns how many. */
  prune(before: number): Promise<number>;
}

/** Session-encryption and assertion-signing keys. */
export interface KeyRepo {
  /** Newest first; the newest is current. */
  list(purpose: KeyPurpose): Promise<KeyRecord[]>;
  /** Adds a key and retires the previous current one (still readable until dropped); audited. */
  add(key: { kid: string; purpose: KeyPurpose; material: string }, actor: string, now?: number): Promise<void>;
  /** Drops retired keys retired before `before`. Returns how many. */
  dropRetiredBefore(purpose: KeyPurpose, before: number): Promise<number>;
  /** Every key of every purpose, for re-wrapping under a new master key. */
  all(): Promise<KeyRecord[]>;
  /** Replaces the stored material of one key (the same key, wrapped differently). */
  setMaterial(kid: string, material: string): Promise<void>;
}

/** Relay sign-ins in flight, relay sessions, and provider sessions signed out of at the relay. */
export interface SessionRepo {
  putSigninState(s: SigninState): Promise<void>;
  /** Returns the state once; a second call (replay) finds nothing. */
  takeSigninState(state: string): Promise<SigninState | undefined>;
  purgeSigninStates(olderThan: number): Promise<void>;
  create(s: NewSession): Promise<void>;
  /** True when the session exists, has not expired and was not signed out or revoked. */
  isActive(sid: string, now?: number): Promise<boolean>;
  revoke(sid: string, now?: number): Promise<void>;
  /** Deletes sessions and ended provider sessions that expired before `expiredBefore`. */
  purge(expiredBefore: number): Promise<void>;
  /** Records that the provider session `sid` was signed out of, until `until`; a later call only extends it. */
  endProviderSession(sid: string, now: number, until: number): Promise<void>;
  providerSessionEnded(sid: string, now?: number): Promise<boolean>;
}

/** Every relay sign-in attempt, oldest first, paged by id. */
export interface SignInLog {
  /**
   * Records the attempt and, in the same transaction, one risk detection row per
   * entry of `e.detections` (with this sign-in's id, subject, address and app).
   * Returns the new id. The user agent is kept to 512 characters.
   */
  record(e: Omit<SignInRecord, 'id'>): Promise<number>;
  list(limit?: number, afterId?: number): Promise<SignInRecord[]>;
  query(q: SignInQuery): Promise<SignInRecord[]>;
  get(id: number): Promise<SignInRecord | undefined>;
  /** The user's successful sign-ins since `since`, newest first (risk learning: locations, networks, clients). */
  history(subject: string, since: number, limit: number): Promise<SignInRecord[]>;
  /** Deletes sign-ins older than `before`. Returns how many. */
  prune(before: number): Promise<number>;
}

/** Risk detections and what administrators decided about users' risk. */
export interface RiskRepo {
  addDetection(d: Omit<RiskDetectionRecord, 'id'>): Promise<number>;
  detections(q: RiskQuery): Promise<RiskDetectionRecord[]>;
  userState(subject: string): Promise<UserRiskState | undefined>;
  states(): Promise<UserRiskState[]>;
  /** Detections of the user up to `now` stop counting; audited as `risk.dismiss`. */
  dismiss(subject: string, actor: string, now: number): Promise<void>;
  /** The user is compromised: high until dismissed; audited as `risk.confirm`. */
  confirm(subject: string, actor: string, now: number): Promise<void>;
  /**
   * Marks the user's detections on sign-ins since `since` from address `ip` as remediated (`details.remediated`
   * = `how`): the user proved it was them (multi-factor step-up), so they stop counting
   * toward the user's risk. Returns how many.
   */
  remediate(subject: string, since: number, ip: string, how: string): Promise<number>;
  /** Deletes detections older than `before`. Returns how many. */
  prune(before: number): Promise<number>;
}

/** Where a SIEM export stands in each log: the last id delivered. */
export interface EventCursor {
  signIn: number;
  audit: number;
  riskDetection: number;
}

export type SecurityEventKind = 'signIn' | 'audit' | 'riskDetection';

/** One exported record. `id` is stable ("signin-42", "audit-7", "risk-3"): receivers de-duplicate on it. */
export interface SecurityEvent {
  id: string;
  kind: SecurityEventKind;
  at: number;
  /** The record as stored (SignInRecord, AuditEntry or RiskDetectionRecord). */
  data: SignInRecord | AuditEntry | RiskDetectionRecord;
}

/**
 * The three logs as one feed in commit order. A row is returned only once every row
 * with a lower id of its log is visible too (PostgreSQL commits out of id order under
 * concurrency; a gap is waited for a few seconds, then taken for a rolled-back id), so
 * a cursor never skips a row committed late.
 */
export interface EventFeed {
  read(after: EventCursor, limit: number, now?: number): Promise<{ events: SecurityEvent[]; cursor: EventCursor }>;
  /** The cursor at the end of every log (a new sink starts here unless told to replay). */
  head(): Promise<EventCursor>;
}

/** Each export sink's cursor, and a lease so that one replica at a time exports a sink. */
export interface ExportCursorRepo {
  load(sink: string): Promise<EventCursor | undefined>;
  /** Only the lease owner's save counts: false when `owner` no longer holds the lease. */
  save(sink: string, cursor: EventCursor, owner: string): Promise<boolean>;
  /** True when `owner` holds the sink's lease until `until` (taken when free or expired at `now`, or renewed). */
  claim(sink: string, owner: string, until: number, now: number): Promise<boolean>;
  /** Gives the lease up (a clean stop). */
  release(sink: string, owner: string): Promise<void>;
}

/** The embedded provider's users. */
export interface UserRepo {
  get(username: string): Promise<UserRecord | undefined>;
  /** By username. */
  list(): Promise<UserRecord[]>;
  /** Inserts or updates (keeping createdAt); audited as `action`. */
  put(u: UserRecord, actor: string, action: 'user.add' | 'user.update'): Promise<void>;
  /** False when there was no such user; audited otherwise. */
  remove(username: string, actor: string): Promise<boolean>;
  /**
   * Records `step` as the user's last accepted TOTP time step, atomically: false
   * (nothing changed) when it is not later than the last one, i.e. a replayed code
   * or an older one (RFC 6238 §5.2). Holds across restarts and relays sharing the store.
   */
  acceptTotpStep(username: string, step: number): Promise<boolean>;
}

/** What oidc-provider persists through its adapter (grants, codes, sessions, interactions…), per model. */
export interface IdpArtifactRepo {
  upsert(model: string, id: string, payload: Record<string, unknown>, expiresInS: number | undefined): Promise<void>;
  /** The payload, or undefined when unknown or expired. */
  find(model: string, by: IdpArtifactKey, value: string): Promise<Record<string, unknown> | undefined>;
  /** Marks the artifact consumed (payload `consumed`, seconds). */
  consume(model: string, id: string): Promise<void>;
  destroy(model: string, id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
  purgeExpired(): Promise<void>;
}

/** One relay replica as the others see it. */
export interface ReplicaRecord {
  id: string;
  /** Its own connector API base URL: where connectors open channels to it. */
  connectorApiUrl: string;
  startedAt: number;
  heartbeatAt: number;
  version: string;
}

/** The relays sharing this store. A replica whose heartbeat is older than `staleMs` has left. */
export interface ReplicaRepo {
  /** Records (or refreshes) the replica; its first call sets startedAt. */
  heartbeat(r: Omit<ReplicaRecord, 'startedAt' | 'heartbeatAt'>, now: number): Promise<void>;
  live(now: number, staleMs: number): Promise<ReplicaRecord[]>;
  /** A replica stopping cleanly leaves at once; stale rows are deleted after a day. */
  remove(id: string): Promise<void>;
}

/**
 * Named secrets shared by every replica: the relay CA, the embedded provider's keys.
 * Values are stored as given: callers wrap private material with the master key first.
 */
export interface SecretRepo {
  get(name: string): Promise<string | undefined>;
  /** Stores `value` unless the name exists; returns the value that won (two replicas starting together agree). */
  putIfAbsent(name: string, value: string): Promise<string>;
  /** Replaces a value (re-wrapping); audited. */
  put(name: string, value: string, actor: string): Promise<void>;
  list(): Promise<{ name: string; value: string }[]>;
  /** Deletes a secret that has served its time (an expired ticket key); false when there was none. Not audited. */
  remove(name: string): Promise<boolean>;
}

/** A relay session as stored: a signed-out or revoked one keeps its revokedAt. */
export interface SessionRecord extends NewSession {
  revokedAt: number | null;
}

/** A provider session signed out of at the relay (SessionRepo.endProviderSession). */
export interface EndedProviderSession {
  sid: string;
  endedAt: number;
  expiresAt: number;
}

/** What oidc-provider stored through IdpArtifactRepo.upsert; its lookup fields follow from the payload. */
export interface IdpArtifactRecord {
  model: string;
  id: string;
  payload: Record<string, unknown>;
  /** Milliseconds; null when it does not expire. */
  expiresAt: number | null;
}

/**
 * Every durable record of a store, as stored: key material and secrets exactly as
 * written (wrapped or not). Audit entries and sign-ins are oldest first and carry no
 * id: the importing store numbers them anew. Sign-in states in flight, expired
 * sessions and provider artifacts, and replica rows are not durable and not included.
 */
export interface StoreDump {
  /** With when each was deleted (ConnectorRepo.delete): a deleted connector's certificates stay revoked. */
  connectors: DumpedConnector[];
  certificates: CertificateRecord[];
  audit: Omit<AuditEntry, 'id'>[];
  keys: KeyRecord[];
  users: UserRecord[];
  totpSteps: { username: string; lastStep: number }[];
  secrets: { name: string; value: string }[];
  signIns: Omit<SignInRecord, 'id'>[];
  riskDetections: Omit<RiskDetectionRecord, 'id' | 'signInId'>[];
  userRiskStates: UserRiskState[];
  endedProviderSessions: EndedProviderSession[];
  sessions: SessionRecord[];
  idpArtifacts: IdpArtifactRecord[];
  /** Apps, policies, locations and connector groups published through the administration API. */
  objects: ManagedObject[];
}

/** A connector as a dump carries it: deleted ones too, marked. */
export interface DumpedConnector extends ConnectorRecord {
  deletedAt: number | null;
}

/** Moving a whole store to another one (SQLite to PostgreSQL, one backend to a fresh copy of it). */
export interface StoreTransfer {
  /** Every durable record; sessions and provider artifacts that have not expired at `now`. One consistent read. */
  export(now?: number): Promise<StoreDump>;
  /**
   * Writes `dump` into this store in one transaction, with one `store.import` audit row
   * (by `actor`, counting what was written). A store that already holds a connector, a
   * key, a user, a secret or a managed object is refused with ERR_STORE and left as it
   * was: an import never merges.
   */
  import(dump: StoreDump, actor: string, now?: number): Promise<void>;
}

/** How many records of each kind a dump holds (the `store.import` audit row, the migration's report). */
export function countDump(dump: StoreDump): Record<keyof StoreDump, number> {
  const counts = {} as Record<keyof StoreDump, number>;
  for (const [kind, records] of Object.entries(dump)) counts[kind as keyof StoreDump] = (records as unknown[]).length;
  return counts;
}

/** What the administration API publishes in the store, beside the config file's objects. */
export type ManagedKind = 'app' | 'policy' | 'location' | 'connectorGroup';

export interface ManagedObject {
  kind: ManagedKind;
  /** Unique per kind, exactly as given (names are validated by the caller). */
  name: string;
  /** The object as the config file would spell it (JSON-compatible). */
  spec: Record<string, unknown>;
  /** 1 when created, +1 per replacement. */
  version: number;
  createdAt: number;
  updatedAt: number;
  updatedBy: string;
}

/** The audit entry a managed-object change writes in the same transaction. */
export interface ManagedAudit {
  actor: string;
  action: string;
  details: Record<string, unknown>;
}

export interface ManagedObjectRepo {
  /** Every object of a kind (or of all kinds), ordered by kind then name. */
  list(kind?: ManagedKind): Promise<ManagedObject[]>;
  get(kind: ManagedKind, name: string): Promise<ManagedObject | undefined>;
  /**
   * Creates (expectedVersion 0: ERR_CONFLICT 409 when it exists), replaces (expectedVersion
   * n: ERR_CONFLICT when the stored version is not n, ERR_NOT_FOUND 404 when absent) or
   * upserts (expectedVersion undefined). Writes `audit` in the same transaction and notifies
   * topic 'objects'. Returns the stored object.
   */
  put(
    kind: ManagedKind,
    name: string,
    spec: Record<string, unknown>,
    audit: ManagedAudit,
    expectedVersion: number | undefined,
    now: number,
  ): Promise<ManagedObject>;
  /** ERR_NOT_FOUND (404) when absent; ERR_CONFLICT when expectedVersion is given and differs. Audited, notified. */
  remove(
    kind: ManagedKind,
    name: string,
    audit: ManagedAudit,
    expectedVersion: number | undefined,
    now: number,
  ): Promise<void>;
}

/** What changed in the store, as far as caches of it care. */
export type StoreTopic = 'connectors' | 'keys' | 'sessions' | 'users' | 'replicas' | 'secrets' | 'risk' | 'objects';

export interface Store {
  /** `sqlite` (one machine) or `postgres` (replicas). */
  readonly kind: 'sqlite' | 'postgres';
  readonly connectors: ConnectorRepo;
  readonly audit: AuditLog;
  readonly keys: KeyRepo;
  readonly sessions: SessionRepo;
  readonly signIns: SignInLog;
  readonly risk: RiskRepo;
  readonly events: EventFeed;
  readonly exportCursors: ExportCursorRepo;
  readonly users: UserRepo;
  readonly idpArtifacts: IdpArtifactRepo;
  readonly replicas: ReplicaRepo;
  readonly secrets: SecretRepo;
  /** Apps, policies, locations and connector groups published through the administration API. */
  readonly objects: ManagedObjectRepo;
  readonly transfer: StoreTransfer;
  /**
   * Bumped when connector or certificate state changes, here or (through
   * bumpGeneration) in another process; connector identities cached per socket are
   * re-checked when it moves.
   */
  readonly generation: number;
  bumpGeneration(): void;
  /**
   * Calls `listener` after changes committed by this or another process (the admin
   * CLI, another replica), with what changed ('all' after a gap in what was seen, e.g.
   * a reconnection). SQLite polls its data version every `pollMs`; PostgreSQL uses
   * LISTEN/NOTIFY. Returns the unsubscribe function.
   */
  onChange(listener: (topics: ReadonlySet<StoreTopic> | 'all') => void, pollMs?: number): () => void;
  /** Whether the database answered lately (readiness); SQLite is always reachable. */
  reachable(): boolean;
  /** Idempotent. */
  close(): Promise<void>;
}
