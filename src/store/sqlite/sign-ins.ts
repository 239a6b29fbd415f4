// The sign-in log and the risk detections over SQLite.
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
import type { SqliteDatabase } from './database.js';

const ph = () => '?';
const SIGN_IN_INSERT = `INSERT INTO signins (${SIGN_IN_COLUMNS}) VALUES (${SIGN_IN_COLUMNS.split(',').map(ph).join(', ')})`;
const DETECTION_INSERT = `INSERT INTO risk_detections (${RISK_DETECTION_COLUMNS}) VALUES (${RISK_DETECTION_COLUMNS.split(',').map(ph).join(', ')})`;

export class SqliteSignInLog implements SignInLog {
  constructor(private readonly db: SqliteDatabase) {}

  async record(e: Omit<SignInRecord, 'id'>): Promise<number> {
    return this.db.transaction('record a sign-in', () => {
      const id = Number(this.db.stmt(SIGN_IN_INSERT).run(...signInValues(e)).lastInsertRowid);
      for (const d of detectionsOf(e, id)) this.db.stmt(DETECTION_INSERT).run(...riskDetectionValues(d));
      return id;
    });
  }

  async list(limit = 100, afterId = 0): Promise<SignInRecord[]> {
    return this.query({ afterId, limit });
  }

  async query(q: SignInQuery): Promise<SignInRecord[]> {
    const { sql, params } = whereOf(signInFilters(q), ph);
    const { limit, order } = pageOf(q);
    const rows = this.db
      .stmt(`SELECT * FROM signins ${sql} ORDER BY id ${order} LIMIT ?`)
      .all(...params, limit) as SignInRow[];
    return rows.map(toSignIn);
  }

  async get(id: number): Promise<SignInRecord | undefined> {
    const row = this.db.stmt(`SELECT * FROM signins WHERE id = ?`).get(id) as SignInRow | undefined;
    return row && toSignIn(row);
  }

  async history(subject: string, since: number, limit: number): Promise<SignInRecord[]> {
    const rows = this.db
      .stmt(`SELECT * FROM signins WHERE subject = ? AND result = 'success' AND at >= ? ORDER BY id DESC LIMIT ?`)
      .all(subject, since, limit) as SignInRow[];
    return rows.map(toSignIn);
  }

  async prune(before: number): Promise<number> {
    return this.db.stmt(`DELETE FROM signins WHERE at < ?`).run(before).changes;
  }
}

export class SqliteRiskRepo implements RiskRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async addDetection(d: Omit<RiskDetectionRecord, 'id'>): Promise<number> {
    return Number(this.db.stmt(DETECTION_INSERT).run(...riskDetectionValues(d)).lastInsertRowid);
  }

  async detections(q: RiskQuery): Promise<RiskDetectionRecord[]> {
    const { sql, params } = whereOf(riskFilters(q), ph);
    const { limit, order } = pageOf(q);
    const rows = this.db
      .stmt(`SELECT * FROM risk_detections ${sql} ORDER BY id ${order} LIMIT ?`)
      .all(...params, limit) as RiskDetectionRow[];
    return rows.map(toRiskDetection);
  }

  async userState(subject: string): Promise<UserRiskState | undefined> {
    const row = this.db.stmt(`SELECT * FROM user_risk WHERE subject = ?`).get(subject) as UserRiskRow | undefined;
    return row && toUserRisk(row);
  }

  async states(): Promise<UserRiskState[]> {
    return (this.db.stmt(`SELECT * FROM user_risk ORDER BY subject`).all() as UserRiskRow[]).map(toUserRisk);
  }

  async dismiss(subject: string, actor: string, now: number): Promise<void> {
    this.db.transaction('dismiss a user risk', () => {
      this.db
        .stmt(
          `INSERT INTO user_risk (subject, dismissed_at, confirmed_at, by_actor) VALUES (?, ?, NULL, ?)
           ON CONFLICT (subject) DO UPDATE SET dismissed_at = excluded.dismissed_at, confirmed_at = NULL, by_actor = excluded.by_actor`,
        )
        .run(subject, now, actor);
      writeAudit(this.db, actor, 'risk.dismiss', null, { subject }, now);
    });
  }

  async confirm(subject: string, actor: string, now: number): Promise<void> {
    this.db.transaction('confirm a user compromised', () => {
      this.db
        .stmt(
          `INSERT INTO user_risk (subject, dismissed_at, confirmed_at, by_actor) VALUES (?, NULL, ?, ?)
           ON CONFLICT (subject) DO UPDATE SET confirmed_at = excluded.confirmed_at, by_actor = excluded.by_actor`,
        )
        .run(subject, now, actor);
      writeAudit(this.db, actor, 'risk.confirm', null, { subject }, now);
    });
  }

  async remediate(subject: string, since: number, ip: string, how: string): Promise<number> {
    return this.db
      .stmt(
        `UPDATE risk_detections SET details = json_set(details, '$.remediated', ?)
         WHERE subject = ? AND at >= ? AND ip = ? AND signin_id IS NOT NULL`,
      )
      .run(how, subject, since, ip).changes;
  }

  async prune(before: number): Promise<number> {
    return this.db.stmt(`DELETE FROM risk_detections WHERE at < ?`).run(before).changes;
  }
}
