// The SIEM export's feed and cursors over PostgreSQL. The three logs are read in
// one REPEATABLE READ transaction (one snapshot); mergeFeed holds back rows past a
// young id gap, which is how rows committed out of id order are not skipped.
import { mergeFeed } from '../event-feed.js';
import { toAudit, toRiskDetection, toSignIn, type AuditRow, type RiskDetectionRow, type SignInRow } from '../rows.js';
import type { EventCursor, EventFeed, ExportCursorRepo, SecurityEvent } from '../types.js';
import type { PgDatabase, Sql } from './database.js';

export class PgEventFeed implements EventFeed {
  constructor(private readonly db: PgDatabase) {}

  async read(
    after: EventCursor,
    limit: number,
    now = Date.now(),
  ): Promise<{ events: SecurityEvent[]; cursor: EventCursor }> {
    return this.db.transaction('read the event feed', async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const rows = async <R extends Record<string, unknown>>(table: string, from: number) =>
        (await tx.query<R>(`SELECT * FROM ${table} WHERE id > $1 ORDER BY id LIMIT $2`, [from, limit])).rows;
      return mergeFeed(
        {
          signIn: (await rows<SignInRow & Record<string, unknown>>('signins', after.signIn)).map(toSignIn),
          audit: (await rows<AuditRow & Record<string, unknown>>('audit', after.audit)).map(toAudit),
          riskDetection: (
            await rows<RiskDetectionRow & Record<string, unknown>>('risk_detections', after.riskDetection)
          ).map(toRiskDetection),
        },
        after,
        limit,
        now,
      );
    });
  }

  async head(): Promise<EventCursor> {
    const { rows } = await this.db.query<{ s: number; a: number; r: number }>(
      'read the event feed',
      `SELECT (SELECT coalesce(max(id), 0) FROM signins) AS s, (SELECT coalesce(max(id), 0) FROM audit) AS a,
         (SELECT coalesce(max(id), 0) FROM risk_detections) AS r`,
    );
    const r = rows[0]!;
    return { signIn: Number(r.s), audit: Number(r.a), riskDetection: Number(r.r) };
  }
}

export class PgExportCursorRepo implements ExportCursorRepo {
  constructor(private readonly db: PgDatabase) {}

  private get sql(): Sql {
    return this.db.reader('keep an export cursor');
  }

  async load(sink: string): Promise<EventCursor | undefined> {
    const { rows } = await this.sql.query<{ cursor: EventCursor | null }>(
      `SELECT cursor FROM export_cursors WHERE sink = $1`,
      [sink],
    );
    return rows[0]?.cursor ?? undefined;
  }

  async save(sink: string, cursor: EventCursor, owner: string): Promise<boolean> {
    const r = await this.sql.query(`UPDATE export_cursors SET cursor = $1::jsonb WHERE sink = $2 AND owner = $3`, [
      JSON.stringify(cursor),
      sink,
      owner,
    ]);
    return (r.rowCount ?? 0) > 0;
  }

  async claim(sink: string, owner: string, until: number, now: number): Promise<boolean> {
    // One statement: the conflict arm updates only a free, expired or own lease; RETURNING says who holds it.
    const { rows } = await this.sql.query<{ owner: string }>(
      `INSERT INTO export_cursors (sink, cursor, owner, lease_until) VALUES ($1, NULL, $2, $3)
       ON CONFLICT (sink) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
       WHERE export_cursors.owner = excluded.owner OR export_cursors.owner IS NULL OR export_cursors.lease_until < $4
       RETURNING owner`,
      [sink, owner, until, now],
    );
    return rows[0]?.owner === owner;
  }

  async release(sink: string, owner: string): Promise<void> {
    await this.sql.query(`UPDATE export_cursors SET lease_until = 0 WHERE sink = $1 AND owner = $2`, [sink, owner]);
  }
}
