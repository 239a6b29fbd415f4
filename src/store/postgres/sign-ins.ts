// The sign-in log over PostgreSQL.
import { SIGN_IN_COLUMNS, signInValues, toSignIn, type SignInRow } from '../rows.js';
import type { SignInLog, SignInRecord } from '../types.js';
import type { PgDatabase } from './database.js';

export class PgSignInLog implements SignInLog {
  constructor(private readonly db: PgDatabase) {}

  async record(e: Omit<SignInRecord, 'id'>): Promise<void> {
    await this.db.query(
      'record sign-in',
      `INSERT INTO signins (${SIGN_IN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)`,
      signInValues(e),
    );
  }

  async list(limit = 100, afterId = 0): Promise<SignInRecord[]> {
    const { rows } = await this.db.query<SignInRow>(
      'read the sign-in log',
      `SELECT * FROM signins WHERE id > $1 ORDER BY id LIMIT $2`,
      [afterId, limit],
    );
    return rows.map(toSignIn);
  }
}
