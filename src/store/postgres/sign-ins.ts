// The sign-in log and the risk detections over PostgreSQL.
import {
  RISK_DETECTION_COLUMNS,
  SIGN_IN_COLUMNS,
  detectionsOf,
  pageOf,
  riskDetectionValues,
  riskFilters,
  signInFilters,
  signInValues,
  toRiskDetection,
  toSignIn,
  toUserRisk,
  whereOf,
  type RiskDetectionRow,
  type SignInRow,
  type UserRiskRow,
} from '../rows.js';
import type {
  RiskDetectionRecord,
  RiskQuery,
  RiskRepo,
  SignInLog,
  SignInQuery,
  SignInRecord,
  UserRiskState,
} from '../types.js';
import { writeAudit } from './audit.js';
import type { PgDatabase, Sql } from './database.js';

const ph = (n: number) => `$${n}`;
const placeholders = (columns: string, casts: Record<number, string> = {}) =>
  columns
    .split(',')
    .map((_, i) => `$${i + 1}${casts[i] ?? ''}`)
    .join(', ');
const SIGN_IN_INSERT = `INSERT INTO signins (${SIGN_IN_COLUMNS}) VALUES (${placeholders(SIGN_IN_COLUMNS, { 10: '::jsonb', 12: '::jsonb' })}) RETURNING id`;
const DETECTION_INSERT = `INSERT INTO risk_detections (${RISK_DETECTION_COLUMNS}) VALUES (${placeholders(RISK_DETECTION_COLUMNS, { 8: '::jsonb' })}) RETURNING id`;

async function insertDetection(sql: Sql, d: Omit<RiskDetectionRecord, 'id'>): Promise<number> {
  const { rows } = await sql.query<{ id: number }>(DETECTION_INSERT, riskDetectionValues(d));
  return Number(rows[0]!.id);
}

export class PgSignInLog implements SignInLog {
  constructor(private readonly db: PgDatabase) {}

  async record(e: Omit<SignInRecord, 'id'>): Promise<number> {
    if (e.detections.length === 0) {
      const { rows } = await this.db.query<{ id: number }>('record a sign-in', SIGN_IN_INSERT, signInValues(e));
      return Number(rows[0]!.id);
    }
    return this.db.transaction('record a sign-in', async (tx) => {
      const { rows } = await tx.query<{ id: number }>(SIGN_IN_INSERT, signInValues(e));
      const id = Number(rows[0]!.id);
      for (const d of detectionsOf(e, id)) await insertDetection(tx, d);
      await tx.notify('risk');
      return id;
    });
  }

  async list(limit = 100, afterId = 0): Promise<SignInRecord[]> {
    return this.query({ afterId, limit });
  }

  async query(q: SignInQuery): Promise<SignInRecord[]> {
    const { sql, params } = whereOf(signInFilters(q), ph);
    const { limit, order } = pageOf(q);
    const { rows } = await this.db.query<SignInRow>(
      'read the sign-in log',
      `SELECT * FROM signins ${sql} ORDER BY id ${order} LIMIT $${params.length + 1}`,
      [...params, limit],
    );
    return rows.map(toSignIn);
  }

  async get(id: number): Promise<SignInRecord | undefined> {
    const { rows } = await this.db.query<SignInRow>('read a sign-in', `SELECT * FROM signins WHERE id = $1`, [id]);
    return rows[0] && toSignIn(rows[0]);
  }

  async history(subject: string, since: number, limit: number): Promise<SignInRecord[]> {
    const { rows } = await this.db.query<SignInRow>(
      "read a user's sign-ins",
      `SELECT * FROM signins WHERE subject = $1 AND result = 'success' AND at >= $2 ORDER BY id DESC LIMIT $3`,
      [subject, since, limit],
    );
    return rows.map(toSignIn);
  }

  async prune(before: number): Promise<number> {
    const r = await this.db.query('prune the sign-in log', `DELETE FROM signins WHERE at < $1`, [before]);
    return r.rowCount ?? 0;
  }
}

export class PgRiskRepo implements RiskRepo {
  constructor(private readonly db: PgDatabase) {}

  async addDetection(d: Omit<RiskDetectionRecord, 'id'>): Promise<number> {
    return this.db.transaction('record a risk detection', async (tx) => {
      const id = await insertDetection(tx, d);
      await tx.notify('risk');
      return id;
    });
  }

  async detections(q: RiskQuery): Promise<RiskDetectionRecord[]> {
    const { sql, params } = whereOf(riskFilters(q), ph);
    const { limit, order } = pageOf(q);
    const { rows } = await this.db.query<RiskDetectionRow>(
      'read risk detections',
      `SELECT * FROM risk_detections ${sql} ORDER BY id ${order} LIMIT $${params.length + 1}`,
      [...params, limit],
    );
    return rows.map(toRiskDetection);
  }

  async userState(subject: string): Promise<UserRiskState | undefined> {
    const { rows } = await this.db.query<UserRiskRow>(
      "read a user's risk",
      `SELECT * FROM user_risk WHERE subject = $1`,
      [subject],
    );
    return rows[0] && toUserRisk(rows[0]);
  }

  async states(): Promise<UserRiskState[]> {
    const { rows } = await this.db.query<UserRiskRow>(
      "read users' risk",
      `SELECT * FROM user_risk ORDER BY subject COLLATE "C"`,
    );
    return rows.map(toUserRisk);
  }

  async dismiss(subject: string, actor: string, now: number): Promise<void> {
    await this.db.transaction('dismiss a user risk', async (tx) => {
      await tx.query(
        `INSERT INTO user_risk (subject, dismissed_at, confirmed_at, by_actor) VALUES ($1, $2, NULL, $3)
         ON CONFLICT (subject) DO UPDATE SET dismissed_at = excluded.dismissed_at, confirmed_at = NULL,
           by_actor = excluded.by_actor`,
        [subject, now, actor],
      );
      await writeAudit(tx, actor, 'risk.dismiss', null, { subject }, now);
      await tx.notify('risk');
    });
  }

  async confirm(subject: string, actor: string, now: number): Promise<void> {
    await this.db.transaction('confirm a user compromised', async (tx) => {
      await tx.query(
        `INSERT INTO user_risk (subject, dismissed_at, confirmed_at, by_actor) VALUES ($1, NULL, $2, $3)
         ON CONFLICT (subject) DO UPDATE SET confirmed_at = excluded.confirmed_at, by_actor = excluded.by_actor`,
        [subject, now, actor],
      );
      await writeAudit(tx, actor, 'risk.confirm', null, { subject }, now);
      await tx.notify('risk');
    });
  }

  async remediate(subject: string, since: number, ip: string, how: string): Promise<number> {
    return this.db.transaction('remediate risk detections', async (tx) => {
      const r = await tx.query(
        `UPDATE risk_detections SET details = details || jsonb_build_object('remediated', $1::text)
         WHERE subject = $2 AND at >= $3 AND ip = $4 AND signin_id IS NOT NULL`,
        [how, subject, since, ip],
      );
      await tx.notify('risk');
      return r.rowCount ?? 0;
    });
  }

  async prune(before: number): Promise<number> {
    const r = await this.db.query('prune risk detections', `DELETE FROM risk_detections WHERE at < $1`, [before]);
    return r.rowCount ?? 0;
  }
}
