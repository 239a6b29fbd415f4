// Sign-in states (single use), relay sessions and ended provider sessions over SQLite.
import type { NewSession, SessionRepo, SigninState } from '../types.js';
import type { SqliteDatabase } from './database.js';
import { toSigninState, type SigninStateRow } from '../rows.js';

export class SqliteSessionRepo implements SessionRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async putSigninState(s: SigninState): Promise<void> {
    this.db
      .stmt(
        `INSERT INTO signin_states (state, app, nonce, verifier, return_to, created_at, step_up) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(s.state, s.app, s.nonce, s.verifier, s.returnTo, s.createdAt, s.stepUp ? 1 : 0);
  }

  async takeSigninState(state: string): Promise<SigninState | undefined> {
    const row = this.db.transaction('take sign-in state', () => {
      const row = this.db.stmt(`SELECT * FROM signin_states WHERE state = ?`).get(state) as SigninStateRow | undefined;
      if (row) this.db.stmt(`DELETE FROM signin_states WHERE state = ?`).run(state);
      return row;
    });
    return row && toSigninState(row);
  }

  async purgeSigninStates(olderThan: number): Promise<void> {
    this.db.stmt(`DELETE FROM signin_states WHERE created_at < ?`).run(olderThan);
  }

  async create(s: NewSession): Promise<void> {
    this.db
      .stmt(`INSERT INTO sessions (sid, app, subject, created_at, expires_at, client_ip) VALUES (?, ?, ?, ?, ?, ?)`)
      .run(s.sid, s.app, s.subject, s.createdAt, s.expiresAt, s.clientIp);
  }

  async isActive(sid: string, now = Date.now()): Promise<boolean> {
    const row = this.db.stmt(`SELECT revoked_at, expires_at FROM sessions WHERE sid = ?`).get(sid) as
      { revoked_at: number | null; expires_at: number } | undefined;
    return !!row && row.revoked_at === null && row.expires_at > now;
  }

  async revoke(sid: string, now = Date.now()): Promise<void> {
    this.db.stmt(`UPDATE sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL`).run(now, sid);
  }

  async purge(expiredBefore: number): Promise<void> {
    this.db.stmt(`DELETE FROM sessions WHERE expires_at < ?`).run(expiredBefore);
    this.db.stmt(`DELETE FROM ended_provider_sessions WHERE expires_at < ?`).run(expiredBefore);
  }

  async endProviderSession(sid: string, now: number, until: number): Promise<void> {
    this.db
      .stmt(
        `INSERT INTO ended_provider_sessions (sid, ended_at, expires_at) VALUES (?, ?, ?)
      ON CONFLICT(sid) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)`,
      )
      .run(sid, now, until);
  }

  async providerSessionEnded(sid: string, now = Date.now()): Promise<boolean> {
    return (
      this.db.stmt(`SELECT 1 FROM ended_provider_sessions WHERE sid = ? AND expires_at > ?`).get(sid, now) !== undefined
    );
  }
}
