// The embedded provider's users and their last accepted TOTP steps over PostgreSQL.
import type { UserRecord, UserRepo } from '../types.js';
import { toUser, type UserRow } from '../rows.js';
import { writeAudit } from './audit.js';
import type { PgDatabase } from './database.js';

export class PgUserRepo implements UserRepo {
  constructor(private readonly db: PgDatabase) {}

  async get(username: string): Promise<UserRecord | undefined> {
    const { rows } = await this.db.query<UserRow>('read user', `SELECT * FROM users WHERE username = $1`, [username]);
    return rows[0] && toUser(rows[0]);
  }

  async list(): Promise<UserRecord[]> {
    const { rows } = await this.db.query<UserRow>('list users', `SELECT * FROM users ORDER BY username`);
    return rows.map(toUser);
  }

  async put(u: UserRecord, actor: string, action: 'user.add' | 'user.update'): Promise<void> {
    await this.db.transaction('save user', async (tx) => {
      await tx.query(
        `INSERT INTO users (username, password_hash, email, name, groups, roles, totp_secret, created_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)
         ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, email = excluded.email,
           name = excluded.name, groups = excluded.groups, roles = excluded.roles, totp_secret = excluded.totp_secret`,
        [
          u.username,
          u.passwordHash,
          u.email,
          u.name,
          JSON.stringify(u.groups),
          JSON.stringify(u.roles),
          u.totpSecret,
          u.createdAt,
        ],
      );
      await writeAudit(tx, actor, action, null, { username: u.username }, Date.now());
      await tx.notify('users');
    });
  }

  async remove(username: string, actor: string): Promise<boolean> {
    return this.db.transaction('remove user', async (tx) => {
      const r = await tx.query(`DELETE FROM users WHERE username = $1`, [username]);
      if (!r.rowCount) return false;
      await writeAudit(tx, actor, 'user.remove', null, { username }, Date.now());
      await tx.notify('users');
      return true;
    });
  }

  async acceptTotpStep(username: string, step: number): Promise<boolean> {
    // One statement: of two relays accepting the same step at once, the second finds it taken.
    const r = await this.db.query(
      'record TOTP step',
      `INSERT INTO totp_steps (username, last_step) VALUES ($1, $2)
       ON CONFLICT (username) DO UPDATE SET last_step = excluded.last_step
         WHERE totp_steps.last_step < excluded.last_step
       RETURNING last_step`,
      [username, step],
    );
    return r.rowCount === 1;
  }
}
