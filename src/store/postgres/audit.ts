// The audit trail over PostgreSQL. Rows are written by the aggregate whose change
// they record (writeAudit), inside that change's transaction.
import type { AuditEntry, AuditLog, AuditQuery } from '../types.js';
import type { PgDatabase, Sql } from './database.js';
import { auditFilters, pageOf, toAudit, whereOf, type AuditRow } from '../rows.js';

export async function writeAudit(
  tx: Sql,
  actor: string,
  action: string,
  connectorId: string | null,
  details: Record<string, unknown>,
  at: number,
): Promise<number> {
  const { rows } = await tx.query<{ id: number }>(
    `INSERT INTO audit (at, actor, action, connector_id, details) VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id`,
    [at, actor, action, connectorId, JSON.stringify(details)],
  );
  return Number(rows[0]!.id);
}

export class PgAuditLog implements AuditLog {
  constructor(private readonly db: PgDatabase) {}

  async list(limit = 100): Promise<AuditEntry[]> {
    return this.query({ limit, order: 'desc' });
  }

  async query(q: AuditQuery): Promise<AuditEntry[]> {
    const { sql, params } = whereOf(auditFilters(q), (n) => `$${n}`);
    const { limit, order } = pageOf(q);
    const { rows } = await this.db.query<AuditRow>(
      'read the audit trail',
      `SELECT * FROM audit ${sql} ORDER BY id ${order} LIMIT $${params.length + 1}`,
      [...params, limit],
    );
    return rows.map(toAudit);
  }

  async record(e: Omit<AuditEntry, 'id'>): Promise<number> {
    return writeAudit(this.db.reader('write the audit trail'), e.actor, e.action, e.connectorId, e.details, e.at);
  }

  async prune(before: number): Promise<number> {
    const r = await this.db.query('prune the audit trail', `DELETE FROM audit WHERE at < $1`, [before]);
    return r.rowCount ?? 0;
  }
}
