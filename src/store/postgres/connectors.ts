// Connectors and their certificates over PostgreSQL. Every change is one
// transaction with its audit row and a 'connectors' notification, and tells the
// store (`changed`) so cached connector identities are checked again. get and
// getCertificate remember their answers for an outage (memory.ts).
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
import { constraintOf, lockKey, type PgDatabase, type Sql } from './database.js';
import { Memory } from './memory.js';
import { notRevoked, parseConnectorRef, pickConnector, registrationKeyUsed } from '../connector-lookup.js';
import {
  toCertificate,
  toConnector,
  toRegistration,
  type CertificateRow,
  type ConnectorRow,
  type RegistrationRow,
} from '../rows.js';

const nameTaken = (name: string, holder: string): ProxyctlError =>
  new ProxyctlError(
    'ERR_CONNECTOR_NAME_TAKEN',
    `the connector name ${name} is taken (connector ${holder}); choose another --name or revoke that connector first`,
    { status: 409 },
  );

export class PgConnectorRepo implements ConnectorRepo {
  private readonly connectors = new Memory<ConnectorRecord | undefined>();
  private readonly certificateMemory = new Memory<CertificateRecord | undefined>();

  constructor(
    private readonly db: PgDatabase,
    private readonly changed: () => void,
  ) {}

  /** Connector state changed (here or elsewhere): what is remembered may be wrong. */
  forget(): void {
    this.connectors.forget();
    this.certificateMemory.forget();
  }

  private afterChange(): void {
    this.forget();
    this.changed();
  }

  async register(input: NewConnector): Promise<ConnectorRecord> {
    let record: ConnectorRecord;
    try {
      record = await this.db.transaction('register connector', async (tx) => {
        // Registrations are rare: one at a time per store, so the name checks below cannot interleave.
        await tx.query(`SELECT pg_advisory_xact_lock($1::bigint)`, [lockKey('register', this.db.target.schema)]);
        const r = input.registration;
        if (r) {
          const used = await tx.query(`SELECT 1 FROM connector_registrations WHERE idempotency_key = $1`, [r.key]);
          if (used.rows[0]) throw registrationKeyUsed();
        }
        const clash = await tx.query<{ id: string }>(
          `SELECT id FROM connectors WHERE (lower(name) = lower($1) AND revoked_at IS NULL) OR lower(id) = lower($1) LIMIT 1`,
          [input.name],
        );
        if (clash.rows[0]) throw nameTaken(input.name, clash.rows[0].id);
        const row = await tx.query<ConnectorRow>(
          `INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
          [input.id, input.name, input.group, input.issuedAt, input.actor],
        );
        await tx.query(
          `INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES ($1, $2, $3, $4, 'register')`,
          [input.serial, input.id, input.issuedAt, input.notAfter],
        );
        if (r) {
          await tx.query(
            `INSERT INTO connector_registrations (idempotency_key, connector_id, public_key_sha256, credential_sha256, certificate, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)`,
            [r.key, input.id, r.publicKey, r.credential, r.certificate, input.issuedAt],
          );
        }
        await writeAudit(
          tx,
          input.actor,
          'connector.register',
          input.id,
          { name: input.name, group: input.group, serial: input.serial },
          input.issuedAt,
        );
        await tx.notify('connectors');
        return toConnector(row.rows[0]!);
      });
    } catch (err) {
      // The unique index is the last word should two registrations ever interleave.
      if (constraintOf(err) === 'connectors_live_name') throw nameTaken(input.name, 'registered concurrently');
      if (constraintOf(err) === 'connector_registrations_pkey') throw registrationKeyUsed();
      throw err;
    }
    this.afterChange();
    return record;
  }

  async registration(key: string): Promise<RegistrationRecord | undefined> {
    const r = await this.db.query<RegistrationRow>(
      'read registration',
      `SELECT * FROM connector_registrations WHERE idempotency_key = $1`,
      [key],
    );
    return r.rows[0] && toRegistration(r.rows[0]);
  }

  async recordRenewal(input: Renewal): Promise<void> {
    await this.db.transaction('record renewal', async (tx) => {
      // The row lock orders this against a concurrent revocation.
      const c = await tx.query<{ revoked_at: number | null }>(
        `SELECT revoked_at FROM connectors WHERE id = $1 FOR UPDATE`,
        [input.connectorId],
      );
      if (!c.rows[0] || c.rows[0].revoked_at !== null)
        throw new ProxyctlError('ERR_CERT_REVOKED', `connector ${input.connectorId} is revoked`, { status: 403 });
      await tx.query(
        `INSERT INTO certificates (serial, connector_id, issued_at, not_after, kind) VALUES ($1, $2, $3, $4, 'renew')`,
        [input.serial, input.connectorId, input.issuedAt, input.notAfter],
      );
      await tx.query(
        `UPDATE certificates SET revoked_at = $1 WHERE connector_id = $2 AND serial <> $3 AND revoked_at IS NULL`,
        [input.graceUntil, input.connectorId, input.serial],
      );
      await writeAudit(
        tx,
        `connector:${input.connectorId}`,
        'connector.renew',
        input.connectorId,
        { oldSerial: input.oldSerial, serial: input.serial, oldValidUntil: input.graceUntil },
        input.issuedAt,
      );
      await tx.notify('connectors');
    });
    this.afterChange();
  }

  async revoke(idOrName: string, actor: string, now = Date.now()): Promise<ConnectorRecord> {
    const out = await this.db.transaction('revoke connector', async (tx) => {
      const c = await findIn(tx, idOrName);
      // Only the revocation that changes the row is audited, should two run at once.
      const revoked = await tx.query<ConnectorRow>(
        `UPDATE connectors SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL RETURNING *`,
        [now, c.id],
      );
      if (!revoked.rows[0]) {
        const row = await tx.query<ConnectorRow>(`SELECT * FROM connectors WHERE id = $1`, [c.id]);
        return toConnector(row.rows[0]!);
      }
      const certs = await tx.query(
        `UPDATE certificates SET revoked_at = $1 WHERE connector_id = $2 AND (revoked_at IS NULL OR revoked_at > $1)`,
        [now, c.id],
      );
      await writeAudit(tx, actor, 'connector.revoke', c.id, { name: c.name, certificates: certs.rowCount ?? 0 }, now);
      await tx.notify('connectors');
      return toConnector(revoked.rows[0]);
    });
    this.afterChange();
    return out;
  }

  async delete(idOrName: string, actor: string, now = Date.now()): Promise<ConnectorRecord> {
    const out = await this.db.transaction('delete connector', async (tx) => {
      const c = await findIn(tx, idOrName, false);
      // A revocation is never undone: once seen, it holds until the commit.
      if (c.revokedAt === null) throw notRevoked(c);
      // Only the deletion that changes the row is audited, should two run at once.
      const deleted = await tx.query<ConnectorRow>(
        `UPDATE connectors SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL RETURNING *`,
        [now, c.id],
      );
      if (!deleted.rows[0])
        throw new ProxyctlError('ERR_CONNECTOR_NOT_FOUND', `connector ${c.id} was deleted meanwhile`, { status: 404 });
      await writeAudit(tx, actor, 'connector.delete', c.id, { name: c.name }, now);
      await tx.notify('connectors');
      return toConnector(deleted.rows[0]);
    });
    this.afterChange();
    return out;
  }

  async find(idOrName: string): Promise<ConnectorRecord> {
    return findIn(this.db.reader('find connector'), idOrName);
  }

  async get(id: string): Promise<ConnectorRecord | undefined> {
    const c = await this.connectors.read(id, this.db.offline, async () => {
      const r = await this.db.query<ConnectorRow>('read connector', `SELECT * FROM connectors WHERE id = $1`, [id]);
      return r.rows[0] && toConnector(r.rows[0]);
    });
    // Callers get their own copies: what is remembered stays as it was read.
    return c && { ...c };
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const cert = await this.certificateMemory.read(serial, this.db.offline, async () => {
      const r = await this.db.query<CertificateRow>(
        'read certificate',
        `SELECT serial, connector_id, issued_at, not_after, revoked_at, kind FROM certificates WHERE serial = $1`,
        [serial],
      );
      return r.rows[0] && toCertificate(r.rows[0]);
    });
    return cert && { ...cert };
  }

  async certificates(connectorId: string): Promise<CertificateRecord[]> {
    const r = await this.db.query<CertificateRow>(
      'list certificates',
      `SELECT serial, connector_id, issued_at, not_after, revoked_at, kind FROM certificates WHERE connector_id = $1 ORDER BY issued_at, serial`,
      [connectorId],
    );
    return r.rows.map(toCertificate);
  }

  async touch(connectorId: string, version: string | null, now = Date.now()): Promise<void> {
    await this.db.query(
      'record connector seen',
      `UPDATE connectors SET last_seen = $1, version = COALESCE($2, version) WHERE id = $3`,
      [now, version, connectorId],
    );
  }

  async list(): Promise<ConnectorListing[]> {
    const { rows } = await this.db.query<ConnectorRow & { cert_expires: number | null; cert_count: number }>(
      'list connectors',
      `SELECT c.*,
         (SELECT MAX(not_after) FROM certificates WHERE connector_id = c.id AND revoked_at IS NULL) AS cert_expires,
         (SELECT COUNT(*) FROM certificates WHERE connector_id = c.id) AS cert_count
       FROM connectors c WHERE c.deleted_at IS NULL ORDER BY c.created_at, c.id`,
    );
    return rows.map((r) => ({ ...toConnector(r), certificateExpires: r.cert_expires, certificates: r.cert_count }));
  }

  async revokedAmong(serials: readonly string[]): Promise<Set<string>> {
    const { rows } = await this.db.query<{ serial: string; revoked_at: number | null }>(
      'check revocations',
      `SELECT k.serial, c.revoked_at FROM certificates k JOIN connectors c ON c.id = k.connector_id WHERE k.serial = ANY($1::text[])`,
      [serials],
    );
    const live = new Set(rows.filter((r) => r.revoked_at === null).map((r) => r.serial));
    return new Set(serials.filter((s) => !live.has(s)));
  }

  async retireSuperseded(connectorId: string, now = Date.now()): Promise<number> {
    // Called on every authentication: a read first, a transaction only when there is something to retire.
    const pending = await this.db.query(
      'retire superseded certificates',
      `SELECT 1 FROM certificates WHERE connector_id = $1 AND revoked_at > $2 LIMIT 1`,
      [connectorId, now],
    );
    if (pending.rowCount === 0) return 0;
    const n = await this.db.transaction('retire superseded certificates', async (tx) => {
      const retired = await tx.query<{ serial: string }>(
        `UPDATE certificates SET revoked_at = $1 WHERE connector_id = $2 AND revoked_at > $1 RETURNING serial`,
        [now, connectorId],
      );
      if (retired.rows.length === 0) return 0;
      await writeAudit(
        tx,
        `connector:${connectorId}`,
        'connector.retire',
        connectorId,
        { serials: retired.rows.map((r) => r.serial).sort() },
        now,
      );
      await tx.notify('connectors');
      return retired.rows.length;
    });
    if (n > 0) this.afterChange();
    return n;
  }
}

/**
 * One connector by id, or by name when exactly one live connector (else the latest
 * revoked one) has it; `id:` and `name:` pick one kind (ConnectorRepo.find). Names
 * never mean a deleted connector; an id does unless `byDeletedId` is false.
 */
async function findIn(sql: Sql, idOrName: string, byDeletedId = true): Promise<ConnectorRecord> {
  const ref = parseConnectorRef(idOrName);
  const { kind, key } = ref;
  const named = '(name = $1 AND deleted_at IS NULL)';
  const where = kind === 'id' ? 'id = $1' : kind === 'name' ? named : `(id = $1 OR ${named})`;
  const { rows } = await sql.query<ConnectorRow>(
    `SELECT * FROM connectors WHERE ${where} ORDER BY revoked_at IS NOT NULL, created_at DESC, id`,
    [key],
  );
  return pickConnector(
    ref,
    kind === 'name' ? undefined : rows.find((r) => r.id === key && (byDeletedId || r.deleted_at === null)),
    kind === 'id' ? [] : rows.filter((r) => r.name === key && r.deleted_at === null),
  );
}
