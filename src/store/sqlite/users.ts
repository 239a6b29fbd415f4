// The embedded provider's users and their last accepted TOTP steps over SQLite.
import type { UserRecord, UserRepo } from '../types.js';
import { toUser, type UserRow } from '../rows.js';
import { writeAudit } from './audit.js';
import type { SqliteDatabase } from './database.js';

export class SqliteUserRepo implements UserRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async get(username: string): Promise<UserRecord | undefined> {
    const r = this.db.stmt(`SELECT * FROM users WHERE username = ?`).get(username) as UserRow | undefined;
    return r && toUser(r);
  }

  async list(): Promise<UserRecord[]> {
    return (this.db.stmt(`SELECT * FROM users ORDER BY username`).all() as UserRow[]).map(toUser);
  }

  async put(u: UserRecord, actor: string, action: 'user.add' | 'user.update'): Promise<void> {
    this.db.transaction('save user', () => {
      this.db
        .stmt(
          `INSERT INTO users (username, password_hash, email, name, groups, roles, totp_secret, created_at)
        VALUES (@username, @passwordHash, @email, @name, @groups, @roles, @totpSecret, @createdAt)
        ON CONFLICT(username) DO UPDATE SET password_hash = excluded.password_hash, email = excluded.email, name = excluded.name,
          groups = excluded.groups, roles = excluded.roles, totp_secret = excluded.totp_secret`,
        )
        .run({ ...u, groups: JSON.stringify(u.groups), roles: JSON.stringify(u.roles) });
      writeAudit(this.db, actor, action, null, { username: u.username }, Date.now());
    });
  }

  async remove(username: string, actor: string): Promise<boolean> {
    return this.db.transaction('remove user', () => {
      const n = this.db.stmt(`DELETE FROM users WHERE username = ?`).run(username).changes;
      if (n) writeAudit(this.db, actor, 'user.remove', null, { username }, Date.now());
      return n > 0;
    });
  }

  async acceptTotpStep(username: string, step: number): Promise<boolean> {
    return (
      this.db
        .stmt(
          `INSERT INTO totp_steps (username, last_step) VALUES (?, ?)
      ON CONFLICT(username) DO UPDATE SET last_step = excluded.last_step WHERE excluded.last_step > totp_steps.last_step`,
        )
        .run(username, step).changes === 1
    );
  }
}
