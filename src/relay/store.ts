// The relay's embedded store (SQLite, WAL): connectors, every certificate issued,
// and the audit trail. Each multi-row change is one transaction, so a crash never
// leaves a half-registered connector.
import path from 'node:path';
import Database from 'better-sqlite3';
import { ProxyctlError, wrapError } from '../errors.js';
import { createPrivateFile, ensurePrivateDir, tightenPrivateFile } from '../fs-private.js';

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

export interface KeyRecord { kid: string; purpose: 'session' | 'assertion'; material: string; createdAt: number; retiredAt: number | null }

export interface SigninState { state: string; app: string; nonce: string; verifier: string; returnTo: string; createdAt: number; stepUp: boolean }

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

interface UserRow { username: string; password_hash: string; email: string | null; name: string | null; groups: string; roles: string; totp_secret: string | null; created_at: number }

const toUser = (r: UserRow): UserRecord => ({
  username: r.username, passwordHash: r.password_hash, email: r.email, name: r.name,
  groups: JSON.parse(r.groups) as string[], roles: JSON.parse(r.roles) as string[], totpSecret: r.totp_secret, createdAt: r.created_at,
});

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

const SCHEMA_VERSION = 6;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE connectors (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     group_name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     version TEXT,
     last_seen INTEGER,
     revoked_at INTEGER
   );
   CREATE TABLE certificates (
     serial TEXT PRIMARY KEY,
     connector_id TEXT NOT NULL REFERENCES connectors(id),
     issued_at INTEGER NOT NULL,
     not_after INTEGER NOT NULL,
     revoked_at INTEGER,
     kind TEXT NOT NULL CHECK (kind IN ('register', 'renew'))
   );
   CREATE INDEX certificates_connector ON certificates(connector_id);
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     connector_id TEXT,
     details TEXT NOT NULL
   );`,
  `CREATE TABLE keys (
     kid TEXT PRIMARY KEY,
     purpose TEXT NOT NULL CHECK (purpose IN ('session', 'assertion')),
     material TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     retired_at INTEGER
   );
   CREATE TABLE signin_states (
     state TEXT PRIMARY KEY,
     app TEXT NOT NULL,
     nonce TEXT NOT NULL,
     verifier TEXT NOT NULL,
     return_to TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     step_up INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE sessions (
     sid TEXT PRIMARY KEY,
     app TEXT NOT NULL,
     subject TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     revoked_at INTEGER,
     client_ip TEXT
   );
   CREATE INDEX sessions_expiry ON sessions(expires_at);
   CREATE TABLE users (
     username TEXT PRIMARY KEY,
     password_hash TEXT NOT NULL,
     email TEXT,
     name TEXT,
     groups TEXT NOT NULL DEFAULT '[]',
     roles TEXT NOT NULL DEFAULT '[]',
     totp_secret TEXT,
     created_at INTEGER NOT NULL
   );`,
  `CREATE TABLE idp_artifacts (
     model TEXT NOT NULL,
     id TEXT NOT NULL,
     payload TEXT NOT NULL,
     expires_at INTEGER,
     uid TEXT,
     user_code TEXT,
     grant_id TEXT,
     PRIMARY KEY (model, id)
   );
   CREATE INDEX idp_artifacts_uid ON idp_artifacts(model, uid);
   CREATE INDEX idp_artifacts_user_code ON idp_artifacts(model, user_code);
   CREATE INDEX idp_artifacts_grant ON idp_artifacts(grant_id);`,
  `CREATE TABLE signins (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     request_id TEXT,
     app TEXT,
     subject TEXT,
     ip TEXT,
     country TEXT,
     user_agent TEXT,
     result TEXT NOT NULL,
     reason TEXT,
     policies TEXT NOT NULL DEFAULT '[]',
     risk TEXT
   );
   CREATE INDEX signins_at ON signins(at);`,
  // The last TOTP time step accepted per embedded-provider user (RFC 6238 §5.2: a code is good once).
  `CREATE TABLE totp_steps (
     username TEXT PRIMARY KEY,
     last_step INTEGER NOT NULL
   );`,
  // Provider sessions (ID token `sid`) a user signed out of at the relay: bearer tokens
  // issued in them stop working. Kept as long as such a token can live.
  `CREATE TABLE ended_provider_sessions (
     sid TEXT PRIMARY KEY,
     ended_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX ended_provider_sessions_expires ON ended_provider_sessions(expires_at);`,
];

interface ConnectorRow {
  id: string; name: string; group_name: string; created_at: number; created_by: string;
  version: string | null; last_seen: number | null; revoked_at: number | null;
}

const toConnector = (r: ConnectorRow): ConnectorRecord => ({
  id: r.id, name: r.name, group: r.group_name, createdAt: r.created_at, createdBy: r.created_by,
  version: r.version, lastSeen: r.last_seen, revokedAt: r.revoked_at,
});

export class Store {
  readonly file: string;
  private readonly db: Database.Database;
  private closed = false;

  private readonly statements = new Map<string, Database.Statement>();
  private gen = 0;

  /** Prepared once, reused: compiling SQL on every call dominated the hot path. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /** Bumped when connector or certificate state changes (here or, via bumpGeneration, elsewhere). */
  get generation(): number {
    return this.gen;
  }

  bumpGeneration(): void {
    this.gen++;
  }

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
  }

  /** Opens (creating if needed) `<dataDir>/proxyctl.db` and migrates it. */
  static open(dataDir: string): Store {
    ensurePrivateDir(dataDir, 'data directory');
    const file = path.join(dataDir, 'proxyctl.db');
    // SQLite would create the database with the umask (0644); its -wal and -shm files copy
    // the database's mode, so a 0600 database keeps sessions, keys and users owner-only.
    createPrivateFile(file);
    for (const suffix of ['-wal', '-shm', '-journal']) tightenPrivateFile(file + suffix);
    let db: Database.Database;
    try {
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `cannot open store ${file}: ${(err as Error).message}`);
    }
    const store = new Store(file, db);
    store.migrate();
    return store;
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw new ProxyctlError('ERR_STORE', `store ${this.file} has schema ${current}, newer than this proxyctl (${SCHEMA_VERSION}); upgrade proxyctl`);
    }
    const apply = this.db.transaction(() => {
      for (let v = current; v < SCHEMA_VERSION; v++) this.db.exec(MIGRATIONS[v]!);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    apply();
  }

  /** Changes whenever another connection (e.g. the admin CLI) commits. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  registerConnector(input: {
    id: string; name: string; group: string; actor: string; serial: string; issuedAt: number; notAfter: number;
  }): ConnectorRecord {
    const tx = this.db.transaction(() => {
      this.assertNameFree(input.name);
      this.stmt(`INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES (?, ?, ?, ?, ?)`)
        .run(input.id, input.name, input.group, input.issuedAt, input.actor);
      this.stmt(`INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES (?, ?, ?, ?, 'register')`)
        .run(input.serial, input.id, input.issuedAt, input.notAfter);
      this.audit(input.actor, 'connector.register', input.id, { name: input.name, group: input.group, serial: input.serial }, input.issuedAt);
    });
    this.run(() => tx.immediate(), 'register connector'); // immediate: two relays cannot both find a name free
    this.gen++;
    return this.getConnector(input.id)!;
  }

  /** A live connector's name is unique (ignoring case) and never a connector id, so a name given to `revoke` means one connector. */
  private assertNameFree(name: string): void {
    const clash = this.stmt(`SELECT id FROM connectors WHERE (name = ? COLLATE NOCASE AND revoked_at IS NULL) OR id = ? COLLATE NOCASE LIMIT 1`)
      .get(name, name) as { id: string } | undefined;
    if (clash) {
      throw new ProxyctlError('ERR_CONNECTOR_NAME_TAKEN',
        `the connector name ${name} is taken (connector ${clash.id}); choose another --name or revoke that connector first`, { status: 409 });
    }
  }

  /**
   * Records a renewed certificate. Every other live certificate of the connector is
   * scheduled for revocation at `graceUntil` (a future revoked_at), or earlier, when
   * the connector first authenticates with the new one (retireSuperseded).
   */
  recordRenewal(input: { connectorId: string; oldSerial: string; serial: string; issuedAt: number; notAfter: number; graceUntil: number }): void {
    const tx = this.db.transaction(() => {
      const c = this.getConnector(input.connectorId);
      if (!c || c.revokedAt !== null) throw new ProxyctlError('ERR_CERT_REVOKED', `connector ${input.connectorId} is revoked`, { status: 403 });
      this.stmt(`INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES (?, ?, ?, ?, 'renew')`)
        .run(input.serial, input.connectorId, input.issuedAt, input.notAfter);
      this.stmt(`UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND serial <> ? AND revoked_at IS NULL`)
        .run(input.graceUntil, input.connectorId, input.serial);
      this.audit(`connector:${input.connectorId}`, 'connector.renew', input.connectorId,
        { oldSerial: input.oldSerial, serial: input.serial, oldValidUntil: input.graceUntil }, input.issuedAt);
    });
    this.run(tx, 'record renewal');
    this.gen++;
  }

  /** Revokes the connector and every certificate it holds. Returns the connector. */
  revokeConnector(idOrName: string, actor: string, now = Date.now()): ConnectorRecord {
    const tx = this.db.transaction(() => {
      const c = this.findConnector(idOrName);
      if (c.revokedAt === null) {
        this.stmt(`UPDATE connectors SET revoked_at = ? WHERE id = ?`).run(now, c.id);
        const certs = this.stmt(`UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND (revoked_at IS NULL OR revoked_at > ?)`).run(now, c.id, now);
        this.audit(actor, 'connector.revoke', c.id, { name: c.name, certificates: certs.changes }, now);
      }
      return this.getConnector(c.id)!;
    });
    const out = this.run(tx, 'revoke connector');
    this.gen++;
    return out;
  }

  /**
   * Finds one connector by id, or by name when exactly one live connector (else the
   * latest revoked one) has it. `id:` and `name:` prefixes pick one kind; without
   * them, an argument that is one connector's id and another's name is refused.
   */
  findConnector(idOrName: string): ConnectorRecord {
    const prefixed = /^(id|name):(.*)$/s.exec(idOrName);
    const kind = prefixed?.[1] ?? 'any';
    const key = prefixed?.[2] ?? idOrName;
    const byId = kind === 'name' ? undefined : this.getConnector(key);
    const rows = kind === 'id' ? [] : this.stmt(`SELECT * FROM connectors WHERE name = ? ORDER BY revoked_at IS NOT NULL, created_at DESC`).all(key) as ConnectorRow[];
    if (byId) {
      const others = rows.filter((r) => r.id !== byId.id);
      if (others.length > 0) {
        throw new ProxyctlError('ERR_USAGE',
          `${key} is the id of connector ${byId.id} and the name of ${others.map((r) => r.id).join(', ')}; say id:${key} or name:${key}`, { status: 400 });
      }
      return byId;
    }
    const live = rows.filter((r) => r.revoked_at === null);
    if (live.length === 1) return toConnector(live[0]!);
    if (live.length > 1) {
      throw new ProxyctlError('ERR_USAGE', `${live.length} connectors are named ${key}; use the id (${live.map((r) => r.id).join(', ')})`, { status: 400 });
    }
    if (rows.length > 0) return toConnector(rows[0]!);
    throw new ProxyctlError('ERR_CONNECTOR_NOT_FOUND', `no connector with ${kind === 'any' ? 'id or name' : kind} ${key}`, { status: 404 });
  }

  getConnector(id: string): ConnectorRecord | undefined {
    const row = this.stmt(`SELECT * FROM connectors WHERE id = ?`).get(id) as ConnectorRow | undefined;
    return row ? toConnector(row) : undefined;
  }

  getCertificate(serial: string): CertificateRecord | undefined {
    const row = this.stmt(`SELECT serial, connector_id, issued_at, not_after, revoked_at, kind FROM certificates WHERE serial = ?`).get(serial) as
      | { serial: string; connector_id: string; issued_at: number; not_after: number; revoked_at: number | null; kind: 'register' | 'renew' }
      | undefined;
    return row && { serial: row.serial, connectorId: row.connector_id, issuedAt: row.issued_at, notAfter: row.not_after, revokedAt: row.revoked_at, kind: row.kind };
  }

  /** Records that a connector was seen (heartbeat, config pull). */
  touch(connectorId: string, version: string | null, now = Date.now()): void {
    this.stmt(`UPDATE connectors SET last_seen = ?, version = COALESCE(?, version) WHERE id = ?`).run(now, version, connectorId);
  }

  listConnectors(): ConnectorListing[] {
    const rows = this.stmt(`
      SELECT c.*,
        (SELECT MAX(not_after) FROM certificates WHERE connector_id = c.id AND revoked_at IS NULL) AS cert_expires,
        (SELECT COUNT(*) FROM certificates WHERE connector_id = c.id) AS cert_count
      FROM connectors c ORDER BY c.created_at`).all() as (ConnectorRow & { cert_expires: number | null; cert_count: number })[];
    return rows.map((r) => ({ ...toConnector(r), certificateExpires: r.cert_expires, certificates: r.cert_count }));
  }

  /**
   * Serials among the given ones whose connector was revoked, or that are unknown (used
   * to cut every channel of such a connector). A certificate retired by a renewal is not
   * listed: its connector lives on, and the connector API closes those channels itself.
   */
  revokedAmong(serials: readonly string[]): Set<string> {
    const out = new Set<string>();
    const stmt = this.stmt(`SELECT c.revoked_at FROM certificates k JOIN connectors c ON c.id = k.connector_id WHERE k.serial = ?`);
    for (const s of serials) {
      const row = stmt.get(s) as { revoked_at: number | null } | undefined;
      if (!row || row.revoked_at !== null) out.add(s);
    }
    return out;
  }

  /**
   * The connector authenticated with a current certificate: the ones its renewals
   * superseded stop now instead of at the end of their grace period. Returns how many.
   */
  retireSuperseded(connectorId: string, now = Date.now()): number {
    const pending = this.stmt(`SELECT serial FROM certificates WHERE connector_id = ? AND revoked_at > ?`).all(connectorId, now) as { serial: string }[];
    if (pending.length === 0) return 0;
    const tx = this.db.transaction(() => {
      const n = this.stmt(`UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND revoked_at > ?`).run(now, connectorId, now).changes;
      if (n > 0) this.audit(`connector:${connectorId}`, 'connector.retire', connectorId, { serials: pending.map((p) => p.serial) }, now);
      return n;
    });
    const n = this.run(tx, 'retire superseded certificates');
    this.gen++;
    return n;
  }

  listAudit(limit = 100): AuditEntry[] {
    const rows = this.stmt(`SELECT * FROM audit ORDER BY id DESC LIMIT ?`).all(limit) as
      { id: number; at: number; actor: string; action: string; connector_id: string | null; details: string }[];
    return rows.map((r) => ({ id: r.id, at: r.at, actor: r.actor, action: r.action, connectorId: r.connector_id, details: JSON.parse(r.details) as Record<string, unknown> }));
  }

  private audit(actor: string, action: string, connectorId: string | null, details: Record<string, unknown>, at: number): void {
    this.stmt(`INSERT INTO audit (at, actor, action, connector_id, details) VALUES (?, ?, ?, ?, ?)`)
      .run(at, actor, action, connectorId, JSON.stringify(details));
  }

  private run<T>(tx: () => T, what: string): T {
    try {
      return tx();
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `store: cannot ${what}: ${(err as Error).message}`);
    }
  }

  // ---- keys (session encryption, identity assertions) ----

  listKeys(purpose: 'session' | 'assertion'): KeyRecord[] {
    return (this.stmt(`SELECT kid, purpose, material, created_at, retired_at FROM keys WHERE purpose = ? ORDER BY created_at DESC, kid`).all(purpose) as
      { kid: string; purpose: 'session' | 'assertion'; material: string; created_at: number; retired_at: number | null }[])
      .map((r) => ({ kid: r.kid, purpose: r.purpose, material: r.material, createdAt: r.created_at, retiredAt: r.retired_at }));
  }

  /** Adds a key and retires the previous current one (still readable until dropped). */
  addKey(key: { kid: string; purpose: 'session' | 'assertion'; material: string }, actor: string, now = Date.now()): void {
    const tx = this.db.transaction(() => {
      this.stmt(`UPDATE keys SET retired_at = ? WHERE purpose = ? AND retired_at IS NULL`).run(now, key.purpose);
      this.stmt(`INSERT INTO keys (kid, purpose, material, created_at) VALUES (?, ?, ?, ?)`).run(key.kid, key.purpose, key.material, now);
      this.audit(actor, 'key.rotate', null, { purpose: key.purpose, kid: key.kid }, now);
    });
    this.run(tx, 'add key');
  }

  /** Drops retired keys older than the longest lifetime of what they protect. */
  dropKeysRetiredBefore(purpose: 'session' | 'assertion', before: number): number {
    return this.stmt(`DELETE FROM keys WHERE purpose = ? AND retired_at IS NOT NULL AND retired_at < ?`).run(purpose, before).changes;
  }

  // ---- sign-in states (single use) ----

  putSigninState(s: SigninState): void {
    this.stmt(`INSERT INTO signin_states (state, app, nonce, verifier, return_to, created_at, step_up) VALUES (?, ?, ?, ?, ?, ?, ?)`)
      .run(s.state, s.app, s.nonce, s.verifier, s.returnTo, s.createdAt, s.stepUp ? 1 : 0);
  }

  /** Returns the state once; a second call (replay) finds nothing. */
  takeSigninState(state: string): SigninState | undefined {
    const tx = this.db.transaction(() => {
      const row = this.stmt(`SELECT * FROM signin_states WHERE state = ?`).get(state) as
        { state: string; app: string; nonce: string; verifier: string; return_to: string; created_at: number; step_up: number } | undefined;
      if (row) this.stmt(`DELETE FROM signin_states WHERE state = ?`).run(state);
      return row;
    });
    const row = this.run(tx, 'take sign-in state');
    return row && { state: row.state, app: row.app, nonce: row.nonce, verifier: row.verifier, returnTo: row.return_to, createdAt: row.created_at, stepUp: row.step_up === 1 };
  }

  purgeSigninStates(olderThan: number): void {
    this.stmt(`DELETE FROM signin_states WHERE created_at < ?`).run(olderThan);
  }

  // ---- sessions ----

  createSession(s: { sid: string; app: string; subject: string; createdAt: number; expiresAt: number; clientIp: string | null }): void {
    this.stmt(`INSERT INTO sessions (sid, app, subject, created_at, expires_at, client_ip) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(s.sid, s.app, s.subject, s.createdAt, s.expiresAt, s.clientIp);
  }

  /** True when the session exists and was not signed out or revoked. */
  sessionActive(sid: string, now = Date.now()): boolean {
    const row = this.stmt(`SELECT revoked_at, expires_at FROM sessions WHERE sid = ?`).get(sid) as { revoked_at: number | null; expires_at: number } | undefined;
    return !!row && row.revoked_at === null && row.expires_at > now;
  }

  revokeSession(sid: string, now = Date.now()): void {
    this.stmt(`UPDATE sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL`).run(now, sid);
  }

  purgeSessions(expiredBefore: number): void {
    this.stmt(`DELETE FROM sessions WHERE expires_at < ?`).run(expiredBefore);
    this.stmt(`DELETE FROM ended_provider_sessions WHERE expires_at < ?`).run(expiredBefore);
  }

  /** Records that the provider session `sid` was signed out of; a later call only extends it. */
  endProviderSession(sid: string, now: number, until: number): void {
    this.stmt(`INSERT INTO ended_provider_sessions (sid, ended_at, expires_at) VALUES (?, ?, ?)
      ON CONFLICT(sid) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)`).run(sid, now, until);
  }

  providerSessionEnded(sid: string, now = Date.now()): boolean {
    return this.stmt(`SELECT 1 FROM ended_provider_sessions WHERE sid = ? AND expires_at > ?`).get(sid, now) !== undefined;
  }

  // ---- embedded identity provider users ----

  getUser(username: string): UserRecord | undefined {
    const r = this.stmt(`SELECT * FROM users WHERE username = ?`).get(username) as UserRow | undefined;
    return r && toUser(r);
  }

  listUsers(): UserRecord[] {
    return (this.stmt(`SELECT * FROM users ORDER BY username`).all() as UserRow[]).map(toUser);
  }

  putUser(u: UserRecord, actor: string, action: 'user.add' | 'user.update'): void {
    const tx = this.db.transaction(() => {
      this.stmt(`INSERT INTO users (username, password_hash, email, name, groups, roles, totp_secret, created_at)
        VALUES (@username, @passwordHash, @email, @name, @groups, @roles, @totpSecret, @createdAt)
        ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash, email = excluded.email, name = excluded.name,
          groups = excluded.groups, roles = excluded.roles, totp_secret = excluded.totp_secret`)
        .run({ ...u, groups: JSON.stringify(u.groups), roles: JSON.stringify(u.roles) });
      this.audit(actor, action, null, { username: u.username }, Date.now());
    });
    this.run(tx, 'save user');
  }

  removeUser(username: string, actor: string): boolean {
    const tx = this.db.transaction(() => {
      const n = this.stmt(`DELETE FROM users WHERE username = ?`).run(username).changes;
      if (n) this.audit(actor, 'user.remove', null, { username }, Date.now());
      return n > 0;
    });
    return this.run(tx, 'remove user');
  }

  // ---- sign-in log ----

  recordSignIn(e: Omit<SignInRecord, 'id'>): void {
    this.stmt(`INSERT INTO signins (at, request_id, app, subject, ip, country, user_agent, result, reason, policies, risk)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(e.at, e.requestId, e.app, e.subject, e.ip, e.country, e.userAgent?.slice(0, 512) ?? null, e.result, e.reason, JSON.stringify(e.policies), e.risk);
  }

  listSignIns(limit = 100, afterId = 0): SignInRecord[] {
    const rows = this.stmt(`SELECT * FROM signins WHERE id > ? ORDER BY id LIMIT ?`).all(afterId, limit) as
      { id: number; at: number; request_id: string | null; app: string | null; subject: string | null; ip: string | null; country: string | null; user_agent: string | null; result: string; reason: string | null; policies: string; risk: string | null }[];
    return rows.map((r) => ({
      id: r.id, at: r.at, requestId: r.request_id, app: r.app, subject: r.subject, ip: r.ip, country: r.country, userAgent: r.user_agent,
      result: r.result as SignInRecord['result'], reason: r.reason, policies: JSON.parse(r.policies) as unknown[], risk: r.risk,
    }));
  }

  // ---- embedded identity provider artifacts (oidc-provider adapter) ----

  idpUpsert(model: string, id: string, payload: Record<string, unknown>, expiresInS: number | undefined): void {
    const expiresAt = expiresInS ? Date.now() + expiresInS * 1000 : null;
    this.stmt(`INSERT INTO idp_artifacts (model, id, payload, expires_at, uid, user_code, grant_id) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(model, id) DO UPDATE SET payload = excluded.payload, expires_at = excluded.expires_at, uid = excluded.uid,
        user_code = excluded.user_code, grant_id = excluded.grant_id`)
      .run(model, id, JSON.stringify(payload), expiresAt, str(payload['uid']), str(payload['userCode']), str(payload['grantId']));
  }

  idpFind(model: string, column: 'id' | 'uid' | 'user_code', value: string): Record<string, unknown> | undefined {
    const row = this.stmt(`SELECT payload, expires_at FROM idp_artifacts WHERE model = ? AND ${column} = ?`).get(model, value) as
      { payload: string; expires_at: number | null } | undefined;
    if (!row || (row.expires_at !== null && row.expires_at <= Date.now())) return undefined;
    return JSON.parse(row.payload) as Record<string, unknown>;
  }

  idpConsume(model: string, id: string): void {
    const row = this.idpFind(model, 'id', id);
    if (!row) return;
    row['consumed'] = Math.floor(Date.now() / 1000);
    this.stmt(`UPDATE idp_artifacts SET payload = ? WHERE model = ? AND id = ?`).run(JSON.stringify(row), model, id);
  }

  idpDestroy(model: string, id: string): void {
    this.stmt(`DELETE FROM idp_artifacts WHERE model = ? AND id = ?`).run(model, id);
  }

  idpRevokeByGrantId(grantId: string): void {
    this.stmt(`DELETE FROM idp_artifacts WHERE grant_id = ?`).run(grantId);
  }

  /**
   * Records `step` as the user's last accepted TOTP time step, atomically: false
   * (nothing changed) when it is not later than the last one, i.e. a replayed code
   * or an older one. Holds across restarts and relays sharing the store.
   */
  acceptTotpStep(username: string, step: number): boolean {
    return this.stmt(`INSERT INTO totp_steps (username, last_step) VALUES (?, ?)
      ON CONFLICT(username) DO UPDATE SET last_step = excluded.last_step WHERE excluded.last_step > totp_steps.last_step`)
      .run(username, step).changes === 1;
  }

  idpPurgeExpired(): void {
    this.stmt(`DELETE FROM idp_artifacts WHERE expires_at IS NOT NULL AND expires_at <= ?`).run(Date.now());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
