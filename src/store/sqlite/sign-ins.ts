// The sign-in log over SQLite.
import type { SignInLog, SignInRecord } from '../types.js';
import type { SqliteDatabase } from './database.js';

export class SqliteSignInLog implements SignInLog {
  constructor(private readonly db: SqliteDatabase) {}

  async record(e: Omit<SignInRecord, 'id'>): Promise<void> {
    this.db
      .stmt(
        `INSERT INTO signins (at, request_id, app, subject, ip, country, user_agent, result, reason, policies, risk)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        e.at,
        e.requestId,
        e.app,
        e.subject,
        e.ip,
        e.country,
        e.userAgent?.slice(0, 512) ?? null,
        e.result,
        e.reason,
        JSON.stringify(e.policies),
        e.risk,
      );
  }

  async list(limit = 100, afterId = 0): Promise<SignInRecord[]> {
    const rows = this.db.stmt(`SELECT * FROM signins WHERE id > ? ORDER BY id LIMIT ?`).all(afterId, limit) as {
      id: number;
      at: number;
      request_id: string | null;
      app: string | null;
      subject: string | null;
      ip: string | null;
      country: string | null;
      user_agent: string | null;
      result: string;
      reason: string | null;
      policies: string;
      risk: string | null;
    }[];
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      requestId: r.request_id,
      app: r.app,
      subject: r.subject,
      ip: r.ip,
      country: r.country,
      userAgent: r.user_agent,
      result: r.result as SignInRecord['result'],
      reason: r.reason,
      policies: JSON.parse(r.policies) as unknown[],
      risk: r.risk,
    }));
  }
}
