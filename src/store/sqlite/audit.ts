// The audit trail over SQLite. Rows are written by the aggregate whose change they
// record (writeAudit), inside that change's transaction.
import type { AuditEntry, AuditLog, AuditQuery } from '../types.js';
import type { SqliteDatabase } from './database.js';
import { auditFilters, pageOf, toAudit, whereOf, type AuditRow } from '../rows.js';

export function writeAudit(
  db: SqliteDatabase,
  actor: string,
  action: string,
  connectorId: string | null,
  details: Record<string, unknown>,
  at: number,
): number {
  return Number(
    db
      .stmt(`INSERT INTO audit (at, actor, action, connector_id, details) VALUES (?, ?, ?, ?, ?)`)
      .run(at, actor, action, connectorId, JSON.stringify(details)).lastInsertRowid,
  );
}

export class SqliteAuditLog implements AuditLog {
  constructor(private readonly db: SqliteDatabase) {}

  async list(limit = 100): Promise<AuditEntry[]> {
    return this.query({ limit, order: 'desc' });
  }

  async query(q: AuditQuery): Promise<AuditEntry[]> {
    const { sql, params } = whereOf(auditFilters(q), () => '?');
    const { limit, order } = pageOf(q);
    const rows = this.db
      .stmt(`SELECT * FROM audit ${sql} ORDER BY id ${order} LIMIT ?`)
      .all(...params, limit) as AuditRow[];
    return rows.map(toAudit);
  }

  async record(e: Omit<AuditEntry, 'id'>): Promise<number> {
    return writeAudit(this.db, e.actor, e.action, e.connectorId, e.details, e.at);
  }

  async prune(before: number): Promise<number> {
    return this.db.stmt(`DELETE FROM audit WHERE at < ?`).run(before).changes;
  }
}
