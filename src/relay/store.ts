// The relay's embedded store (SQLite, WAL): connectors, every certificate issued,
// and the audit trail. Each multi-row change is one transaction, so a crash never
// leaves a half-registered connector.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ProxyctlError, wrapError } from '../errors.js';

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

const SCHEMA_VERSION = 1;

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

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.db = db;
  }

  /** Opens (creating if needed) `<dataDir>/proxyctl.db` and migrates it. */
  static open(dataDir: string): Store {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = path.join(dataDir, 'proxyctl.db');
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
      this.db.prepare(`INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES (?, ?, ?, ?, ?)`)
        .run(input.id, input.name, input.group, input.issuedAt, input.actor);
      this.db.prepare(`INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES (?, ?, ?, ?, 'register')`)
        .run(input.serial, input.id, input.issuedAt, input.notAfter);
      this.audit(input.actor, 'connector.register', input.id, { name: input.name, group: input.group, serial: input.serial }, input.issuedAt);
    });
    this.run(tx, 'register connector');
    return this.getConnector(input.id)!;
  }

  recordRenewal(input: { connectorId: string; oldSerial: string; serial: string; issuedAt: number; notAfter: number }): void {
    const tx = this.db.transaction(() => {
      const c = this.getConnector(input.connectorId);
      if (!c || c.revokedAt !== null) throw new ProxyctlError('ERR_CERT_REVOKED', `connector ${input.connectorId} is revoked`, { status: 403 });
      this.db.prepare(`INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES (?, ?, ?, ?, 'renew')`)
        .run(input.serial, input.connectorId, input.issuedAt, input.notAfter);
      this.audit(`connector:${input.connectorId}`, 'connector.renew', input.connectorId, { oldSerial: input.oldSerial, serial: input.serial }, input.issuedAt);
    });
    this.run(tx, 'record renewal');
  }

  /** Revokes the connector and every certificate it holds. Returns the connector. */
  revokeConnector(idOrName: string, actor: string, now = Date.now()): ConnectorRecord {
    const tx = this.db.transaction(() => {
      const c = this.findConnector(idOrName);
      if (c.revokedAt === null) {
        this.db.prepare(`UPDATE connectors SET revoked_at = ? WHERE id = ?`).run(now, c.id);
        const certs = this.db.prepare(`UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND revoked_at IS NULL`).run(now, c.id);
        this.audit(actor, 'connector.revoke', c.id, { name: c.name, certificates: certs.changes }, now);
      }
      return this.getConnector(c.id)!;
    });
    return this.run(tx, 'revoke connector');
  }

  /** Finds one connector by id, or by name when exactly one (unrevoked first) has it. */
  findConnector(idOrName: string): ConnectorRecord {
    const byId = this.getConnector(idOrName);
    if (byId) return byId;
    const rows = this.db.prepare(`SELECT * FROM connectors WHERE name = ? ORDER BY revoked_at IS NOT NULL, created_at DESC`).all(idOrName) as ConnectorRow[];
    const live = rows.filter((r) => r.revoked_at === null);
    if (live.length === 1) return toConnector(live[0]!);
    if (live.length > 1) {
      throw new ProxyctlError('ERR_USAGE', `${live.length} connectors are named ${idOrName}; use the id (${live.map((r) => r.id).join(', ')})`, { status: 400 });
    }
    if (rows.length > 0) return toConnector(rows[0]!);
    throw new ProxyctlError('ERR_CONNECTOR_NOT_FOUND', `no connector with id or name ${idOrName}`, { status: 404 });
  }

  getConnector(id: string): ConnectorRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM connectors WHERE id = ?`).get(id) as ConnectorRow | undefined;
    return row ? toConnector(row) : undefined;
  }

  getCertificate(serial: string): CertificateRecord | undefined {
    const row = this.db.prepare(`SELECT serial, connector_id, issued_at, not_after, revoked_at, kind FROM certificates WHERE serial = ?`).get(serial) as
      | { serial: string; connector_id: string; issued_at: number; not_after: number; revoked_at: number | null; kind: 'register' | 'renew' }
      | undefined;
    return row && { serial: row.serial, connectorId: row.connector_id, issuedAt: row.issued_at, notAfter: row.not_after, revokedAt: row.revoked_at, kind: row.kind };
  }

  /** Records that a connector was seen (heartbeat, config pull). */
  touch(connectorId: string, version: string | null, now = Date.now()): void {
    this.db.prepare(`UPDATE connectors SET last_seen = ?, version = COALESCE(?, version) WHERE id = ?`).run(now, version, connectorId);
  }

  listConnectors(): ConnectorListing[] {
    const rows = this.db.prepare(`
      SELECT c.*,
        (SELECT MAX(not_after) FROM certificates WHERE connector_id = c.id AND revoked_at IS NULL) AS cert_expires,
        (SELECT COUNT(*) FROM certificates WHERE connector_id = c.id) AS cert_count
      FROM connectors c ORDER BY c.created_at`).all() as (ConnectorRow & { cert_expires: number | null; cert_count: number })[];
    return rows.map((r) => ({ ...toConnector(r), certificateExpires: r.cert_expires, certificates: r.cert_count }));
  }

  /** Serials of revoked certificates among the given ones (used to cut open channels). */
  revokedAmong(serials: readonly string[]): Set<string> {
    const out = new Set<string>();
    const stmt = this.db.prepare(`SELECT revoked_at FROM certificates WHERE serial = ?`);
    for (const s of serials) {
      const row = stmt.get(s) as { revoked_at: number | null } | undefined;
      if (!row || row.revoked_at !== null) out.add(s);
    }
    return out;
  }

  listAudit(limit = 100): AuditEntry[] {
    const rows = this.db.prepare(`SELECT * FROM audit ORDER BY id DESC LIMIT ?`).all(limit) as
      { id: number; at: number; actor: string; action: string; connector_id: string | null; details: string }[];
    return rows.map((r) => ({ id: r.id, at: r.at, actor: r.actor, action: r.action, connectorId: r.connector_id, details: JSON.parse(r.details) as Record<string, unknown> }));
  }

  private audit(actor: string, action: string, connectorId: string | null, details: Record<string, unknown>, at: number): void {
    this.db.prepare(`INSERT INTO audit (at, actor, action, connector_id, details) VALUES (?, ?, ?, ?, ?)`)
      .run(at, actor, action, connectorId, JSON.stringify(details));
  }

  private run<T>(tx: () => T, what: string): T {
    try {
      return tx();
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `store: cannot ${what}: ${(err as Error).message}`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
