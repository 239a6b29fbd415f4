// The audit trail over SQLite. Rows are written by the aggregate whose change they
// record (writeAudit), inside that change's transaction.
import type { AuditEntry, AuditLog } from '../types.js';
import type { SqliteDatabase } from './database.js';
import { toAudit, type AuditRow } from '../rows.js';

export function writeAudit(
  db: SqliteDatabase,
  actor: string,
  action: string,
  connectorId: string | null,
  details: Record<string, unknown>,
  at: number,
): void {
  db.stmt(`INSERT INTO audit (at, actor, action, connector_id, details) VALUES (?, ?, ?, ?, ?)`).run(
    at,
    actor,
    action,
    connectorId,
    JSON.stringify(details),
  );
}

export class SqliteAuditLog implements AuditLog {
  constructor(private readonly db: SqliteDatabase) {}

  async list(limit = 100): Promise<AuditEntry[]> {
    const rows = this.db.stmt(`SELECT * FROM audit ORDER BY id DESC LIMIT ?`).all(limit) as AuditRow[];
    return rows.map(toAudit);
  }
}
