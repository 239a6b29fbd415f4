// The sign-in log over PostgreSQL.
import type { SignInLog, SignInRecord } from '../types.js';
import type { PgDatabase } from './database.js';

export class PgSignInLog implements SignInLog {
  constructor(private readonly db: PgDatabase) {}

  async record(e: Omit<SignInRecord, 'id'>): Promise<void> {
    await this.db.query(
      'record sign-in',
      `INSERT INTO signins (at, request_id, app, subject, ip, country, user_agent, result, reason, policies, risk)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)`,
      [
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
      ],
    );
  }

  async list(limit = 100, afterId = 0): Promise<SignInRecord[]> {
    const { rows } = await this.db.query<{
      id: number;
      at: number;
      request_id: string | null;
      app: string | null;
      subject: string | null;
      ip: string | null;
      country: string | null;
      user_agent: string | null;
      result: SignInRecord['result'];
      reason: string | null;
      policies: unknown[];
      risk: string | null;
    }>('read the sign-in log', `SELECT * FROM signins WHERE id > $1 ORDER BY id LIMIT $2`, [afterId, limit]);
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      requestId: r.request_id,
      app: r.app,
      subject: r.subject,
      ip: r.ip,
      country: r.country,
      userAgent: r.user_agent,
      result: r.result,
      reason: r.reason,
      policies: r.policies,
      risk: r.risk,
    }));
  }
}
