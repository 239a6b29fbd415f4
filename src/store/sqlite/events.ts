// The SIEM export's feed and cursors over SQLite.
import { mergeFeed } from '../event-feed.js';
import { toAudit, toRiskDetection, toSignIn, type AuditRow, type RiskDetectionRow, type SignInRow } from '../rows.js';
import type { EventCursor, EventFeed, ExportCursorRepo, SecurityEvent } from '../types.js';
import type { SqliteDatabase } from './database.js';

export class SqliteEventFeed implements EventFeed {
  constructor(private readonly db: SqliteDatabase) {}

  async read(
    after: EventCursor,
    limit: number,
    now = Date.now(),
  ): Promise<{ events: SecurityEvent[]; cursor: EventCursor }> {
    const rows = <R>(table: string, from: number) =>
      this.db.stmt(`SELECT * FROM ${table} WHERE id > ? ORDER BY id LIMIT ?`).all(from, limit) as R[];
    return this.db.transaction('read the event feed', () =>
      mergeFeed(
        {
          signIn: rows<SignInRow>('signins', after.signIn).map(toSignIn),
          audit: rows<AuditRow>('audit', after.audit).map(toAudit),
          riskDetection: rows<RiskDetectionRow>('risk_detections', after.riskDetection).map(toRiskDetection),
        },
        after,
        limit,
        now,
      ),
    );
  }

  async head(): Promise<EventCursor> {
    const max = (table: string) =>
      (this.db.stmt(`SELECT coalesce(max(id), 0) AS id FROM ${table}`).get() as { id: number }).id;
    return this.db.transaction('read the event feed', () => ({
      signIn: max('signins'),
      audit: max('audit'),
      riskDetection: max('risk_detections'),
    }));
  }
}

export class SqliteExportCursorRepo implements ExportCursorRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async load(sink: string): Promise<EventCursor | undefined> {
    const row = this.db.stmt(`SELECT cursor FROM export_cursors WHERE sink = ?`).get(sink) as
      { cursor: string | null } | undefined;
    return row?.cursor ? (JSON.parse(row.cursor) as EventCursor) : undefined;
  }

  async save(sink: string, cursor: EventCursor, owner: string): Promise<boolean> {
    return (
      this.db
        .stmt(`UPDATE export_cursors SET cursor = ? WHERE sink = ? AND owner = ?`)
        .run(JSON.stringify(cursor), sink, owner).changes > 0
    );
  }

  async claim(sink: string, owner: string, until: number, now: number): Promise<boolean> {
    return this.db.transaction(
      'claim an export lease',
      () => {
        this.db
          .stmt(
            `INSERT INTO export_cursors (sink, cursor, owner, lease_until) VALUES (?, NULL, ?, ?)
             ON CONFLICT (sink) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
             WHERE export_cursors.owner = excluded.owner OR export_cursors.owner IS NULL OR export_cursors.lease_until < ?`,
          )
          .run(sink, owner, until, now);
        const row = this.db.stmt(`SELECT owner FROM export_cursors WHERE sink = ?`).get(sink) as { owner: string };
        return row.owner === owner;
      },
      'immediate',
    );
  }

  async release(sink: string, owner: string): Promise<void> {
    this.db.stmt(`UPDATE export_cursors SET lease_until = 0 WHERE sink = ? AND owner = ?`).run(sink, owner);
  }
}
