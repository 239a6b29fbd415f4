// Connectors and their certificates over SQLite. Every change is one transaction
// with its audit row, and tells the store (`changed`) so cached connector
// identities are checked again.
import { ProxyctlError } from '../../errors.js';
import type {
  CertificateRecord,
  ConnectorListing,
  ConnectorRecord,
  ConnectorRepo,
  NewConnector,
  RegistrationRecord,
  Renewal,
} from '../types.js';
import { writeAudit } from './audit.js';
import type { SqliteDatabase } from './database.js';
import { notRevoked, parseConnectorRef, pickConnector, registrationKeyUsed } from '../connector-lookup.js';
import {
  toCertificate,
  toConnector,
  toRegistration,
  type CertificateRow,
  type ConnectorRow,
  type RegistrationRow,
} from '../rows.js';

export class SqliteConnectorRepo implements ConnectorRepo {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly changed: () => void,
  ) {}

  async register(input: NewConnector): Promise<ConnectorRecord> {
    // immediate: two relays cannot both find a name free
    this.db.transaction(
      'register connector',
      () => {
        if (input.registration) this.assertKeyFree(input.registration.key);
        this.assertNameFree(input.name);
        this.db
          .stmt(`INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES (?, ?, ?, ?, ?)`)
          .run(input.id, input.name, input.group, input.issuedAt, input.actor);
        this.db
          .stmt(
            `INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES (?, ?, ?, ?, 'register')`,
          )
          .run(input.serial, input.id, input.issuedAt, input.notAfter);
        const r = input.registration;
        if (r) {
          this.db
            .stmt(
              `INSERT INTO connector_registrations (idempotency_key, connector_id, public_key_sha256, credential_sha256, certificate, created_at)
               VALUES (?, ?, ?, ?, ?, ?)`,
            )
            .run(r.key, input.id, r.publicKey, r.credential, r.certificate, input.issuedAt);
        }
        writeAudit(
          this.db,
          input.actor,
          'connector.register',
          input.id,
          { name: input.name, group: input.group, serial: input.serial },
          input.issuedAt,
        );
      },
      'immediate',
    );
    this.changed();
    return this.byId(input.id)!;
  }

  private assertKeyFree(key: string): void {
    if (this.db.stmt(`SELECT 1 FROM connector_registrations WHERE idempotency_key = ?`).get(key))
      throw registrationKeyUsed();
  }

  async registration(key: string): Promise<RegistrationRecord | undefined> {
    const row = this.db.stmt(`SELECT * FROM connector_registrations WHERE idempotency_key = ?`).get(key) as
      RegistrationRow | undefined;
    return row && toRegistration(row);
  }

  /** A live connector's name is unique (ignoring case) and never a connector id, so a name given to `revoke` means one connector. */
  private assertNameFree(name: string): void {
    const clash = this.db
      .stmt(
        `SELECT id FROM connectors WHERE (name = ? COLLATE NOCASE AND revoked_at IS NULL) OR id = ? COLLATE NOCASE LIMIT 1`,
      )
      .get(name, name) as { id: string } | undefined;
    if (clash) {
      throw new ProxyctlError(
        'ERR_CONNECTOR_NAME_TAKEN',
        `the connector name ${name} is taken (connector ${clash.id}); choose another --name or revoke that connector first`,
        { status: 409 },
      );
    }
  }

  async recordRenewal(input: Renewal): Promise<void> {
    this.db.transaction('record renewal', () => {
      const c = this.byId(input.connectorId);
      if (!c || c.revokedAt !== null)
        throw new ProxyctlError('ERR_CERT_REVOKED', `connector ${input.connectorId} is revoked`, { status: 403 });
      this.db
        .stmt(
          `INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES (?, ?, ?, ?, 'renew')`,
        )
        .run(input.serial, input.connectorId, input.issuedAt, input.notAfter);
      this.db
        .stmt(`UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND serial <> ? AND revoked_at IS NULL`)
        .run(input.graceUntil, input.connectorId, input.serial);
      writeAudit(
        this.db,
        `connector:${input.connectorId}`,
        'connector.renew',
        input.connectorId,
        { oldSerial: input.oldSerial, serial: input.serial, oldValidUntil: input.graceUntil },
        input.issuedAt,
      );
    });
    this.changed();
  }

  async revoke(idOrName: string, actor: string, now = Date.now()): Promise<ConnectorRecord> {
    const out = this.db.transaction('revoke connector', () => {
      const c = this.findSync(idOrName, true);
      if (c.revokedAt === null) {
        this.db.stmt(`UPDATE connectors SET revoked_at = ? WHERE id = ?`).run(now, c.id);
        const certs = this.db
          .stmt(
            `UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND (revoked_at IS NULL OR revoked_at > ?)`,
          )
          .run(now, c.id, now);
        writeAudit(this.db, actor, 'connector.revoke', c.id, { name: c.name, certificates: certs.changes }, now);
      }
      return this.byId(c.id)!;
    });
    this.changed();
    return out;
  }

  async delete(idOrName: string, actor: string, now = Date.now()): Promise<ConnectorRecord> {
    // immediate: a revocation check and the deletion, with nothing between them
    const out = this.db.transaction(
      'delete connector',
      () => {
        const c = this.findSync(idOrName, false);
        if (c.revokedAt === null) throw notRevoked(c);
        this.db.stmt(`UPDATE connectors SET deleted_at = ? WHERE id = ?`).run(now, c.id);
        writeAudit(this.db, actor, 'connector.delete', c.id, { name: c.name }, now);
        return c;
      },
      'immediate',
    );
    this.changed();
    return out;
  }

  async find(idOrName: string): Promise<ConnectorRecord> {
    return this.findSync(idOrName, true);
  }

  /** Names never mean a deleted connector; an id does unless `byDeletedId` is false. */
  private findSync(idOrName: string, byDeletedId: boolean): ConnectorRecord {
    const ref = parseConnectorRef(idOrName);
    const byId =
      ref.kind === 'name'
        ? undefined
        : (this.db.stmt(`SELECT * FROM connectors WHERE id = ?`).get(ref.key) as ConnectorRow | undefined);
    const named =
      ref.kind === 'id'
        ? []
        : (this.db
            .stmt(
              `SELECT * FROM connectors WHERE name = ? AND deleted_at IS NULL ORDER BY revoked_at IS NOT NULL, created_at DESC`,
            )
            .all(ref.key) as ConnectorRow[]);
    return pickConnector(ref, byDeletedId || byId?.deleted_at == null ? byId : undefined, named);
  }

  async get(id: string): Promise<ConnectorRecord | undefined> {
    return this.byId(id);
  }

  private byId(id: string): ConnectorRecord | undefined {
    const row = this.db.stmt(`SELECT * FROM connectors WHERE id = ?`).get(id) as ConnectorRow | undefined;
    return row ? toConnector(row) : undefined;
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const row = this.db
      .stmt(`SELECT serial, connector_id, issued_at, not_after, revoked_at, kind FROM certificates WHERE serial = ?`)
      .get(serial) as CertificateRow | undefined;
    return row && toCertificate(row);
  }

  async certificates(connectorId: string): Promise<CertificateRecord[]> {
    const rows = this.db
      .stmt(
        `SELECT serial, connector_id, issued_at, not_after, revoked_at, kind FROM certificates WHERE connector_id = ? ORDER BY issued_at, serial`,
      )
      .all(connectorId) as CertificateRow[];
    return rows.map(toCertificate);
  }

  async touch(connectorId: string, version: string | null, now = Date.now()): Promise<void> {
    this.db
      .stmt(`UPDATE connectors SET last_seen = ?, version = COALESCE(?, version) WHERE id = ?`)
      .run(now, version, connectorId);
  }

  async list(): Promise<ConnectorListing[]> {
    const rows = this.db
      .stmt(
        `
      SELECT c.*,
        (SELECT MAX(not_after) FROM certificates WHERE connector_id = c.id AND revoked_at IS NULL) AS cert_expires,
        (SELECT COUNT(*) FROM certificates WHERE connector_id = c.id) AS cert_count
      FROM connectors c WHERE c.deleted_at IS NULL ORDER BY c.created_at`,
      )
      .all() as (ConnectorRow & { cert_expires: number | null; cert_count: number })[];
    return rows.map((r) => ({ ...toConnector(r), certificateExpires: r.cert_expires, certificates: r.cert_count }));
  }

  async revokedAmong(serials: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const stmt = this.db.stmt(
      `SELECT c.revoked_at FROM certificates k JOIN connectors c ON c.id = k.connector_id WHERE k.serial = ?`,
    );
    for (const s of serials) {
      const row = stmt.get(s) as { revoked_at: number | null } | undefined;
      if (!row || row.revoked_at !== null) out.add(s);
    }
    return out;
  }

  async retireSuperseded(connectorId: string, now = Date.now()): Promise<number> {
    const pending = this.db
      .stmt(`SELECT serial FROM certificates WHERE connector_id = ? AND revoked_at > ?`)
      .all(connectorId, now) as { serial: string }[];
    if (pending.length === 0) return 0;
    const n = this.db.transaction('retire superseded certificates', () => {
      const n = this.db
        .stmt(`UPDATE certificates SET revoked_at = ? WHERE connector_id = ? AND revoked_at > ?`)
        .run(now, connectorId, now).changes;
      if (n > 0)
        writeAudit(
          this.db,
          `connector:${connectorId}`,
          'connector.retire',
          connectorId,
          { serials: pending.map((p) => p.serial) },
          now,
        );
      return n;
    });
    this.changed();
    return n;
  }
}
