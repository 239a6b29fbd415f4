// The sign-in log over SQLite.
import { SIGN_IN_COLUMNS, signInValues, toSignIn, type SignInRow } from '../rows.js';
import type { SignInLog, SignInRecord } from '../types.js';
import type { SqliteDatabase } from './database.js';

export class SqliteSignInLog implements SignInLog {
  constructor(private readonly db: SqliteDatabase) {}

  async record(e: Omit<SignInRecord, 'id'>): Promise<void> {
    this.db
      .stmt(`INSERT INTO signins (${SIGN_IN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      .run(...signInValues(e));
  }

  async list(limit = 100, afterId = 0): Promise<SignInRecord[]> {
    const rows = this.db
      .stmt(`SELECT * FROM signins WHERE id > ? ORDER BY id LIMIT ?`)
      .all(afterId, limit) as SignInRow[];
    return rows.map(toSignIn);
  }
}
