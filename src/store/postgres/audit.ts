// The audit trail over PostgreSQL. Rows are written by the aggregate whose change
// they record (writeAudit), inside that change's transaction.
import type { AuditEntry, AuditLog } from '../types.js';
import type { PgDatabase, Sql } from './database.js';
import { toAudit, type AuditRow } from '../rows.js';

export async function writeAudit(
  tx: Sql,
  actor: string,
  action: string,
  connectorId: string | null,
  details: Record<string, unknown>,
  at: number,
): Promise<void> {
  await tx.query(`INSERT INTO audit (at, actor, action, connector_id, details) VALUES ($1, $2, $3, $4, $5::jsonb)`, [
    at,
    actor,
    action,
    connectorId,
    JSON.stringify(details),
  ]);
}

export class PgAuditLog implements AuditLog {
  constructor(private readonly db: PgDatabase) {}

  async list(limit = 100): Promise<AuditEntry[]> {
    const { rows } = await this.db.query<AuditRow>(
      'read the audit trail',
      `SELECT * FROM audit ORDER BY id DESC LIMIT $1`,
      [limit],
    );
    return rows.map(toAudit);
  }
}
