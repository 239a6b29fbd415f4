// Sign-in states (single use), relay sessions and ended provider sessions over
// PostgreSQL. isActive and providerSessionEnded sit on the request path: they
// remember what they read, and the set of ended provider sessions is re-read on
// every 'sessions' topic, so an outage does not sign anyone out (memory.ts).
import { isProxyctlError } from '../../errors.js';
import type { NewSession, SessionRepo, SigninState } from '../types.js';
import { toSigninState, type SigninStateRow } from '../rows.js';
import type { PgDatabase } from './database.js';
import { Memory, serialRefresh } from './memory.js';

interface SessionState {
  expiresAt: number;
  revokedAt: number | null;
}

export class PgSessionRepo implements SessionRepo {
  private readonly sessions = new Memory<SessionState | undefined>();
  /** Ended provider sessions and when each ending expires; undefined until first read. */
  private ended: Map<string, number> | undefined;
  private endedEpoch = 0;
  /** Reads again what is remembered: after a 'sessions' topic, and once at open. */
  readonly refresh: () => Promise<void>;

  constructor(private readonly db: PgDatabase) {
    this.refresh = serialRefresh(() => this.reread());
  }

  /** Sessions changed elsewhere: reads in flight are not kept, and what is remembered is read again. */
  changed(): Promise<void> {
    this.sessions.stale();
    this.endedEpoch++;
    return this.refresh();
  }

  private async reread(): Promise<void> {
    const sids = this.sessions.keys();
    if (sids.length > 0) {
      const { rows } = await this.db.query<{ sid: string; expires_at: number; revoked_at: number | null }>(
        'read sessions',
        `SELECT sid, expires_at, revoked_at FROM sessions WHERE sid = ANY($1::text[])`,
        [sids],
      );
      const found = new Map(rows.map((r) => [r.sid, { expiresAt: r.expires_at, revokedAt: r.revoked_at }]));
      for (const sid of sids) this.sessions.set(sid, found.get(sid));
    }
    const { rows } = await this.db.query<{ sid: string; expires_at: number }>(
      'read ended provider sessions',
      `SELECT sid, expires_at FROM ended_provider_sessions`,
    );
    this.ended = new Map(rows.map((r) => [r.sid, r.expires_at]));
  }

  async putSigninState(s: SigninState): Promise<void> {
    await this.db.query(
      'store sign-in state',
      `INSERT INTO signin_states (state, app, nonce, verifier, return_to, created_at, step_up) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [s.state, s.app, s.nonce, s.verifier, s.returnTo, s.createdAt, s.stepUp],
    );
  }

  async takeSigninState(state: string): Promise<SigninState | undefined> {
    const { rows } = await this.db.query<SigninStateRow>(
      'take sign-in state',
      `DELETE FROM signin_states WHERE state = $1 RETURNING *`,
      [state],
    );
    return rows[0] && toSigninState(rows[0]);
  }

  async purgeSigninStates(olderThan: number): Promise<void> {
    await this.db.query('purge sign-in states', `DELETE FROM signin_states WHERE created_at < $1`, [olderThan]);
  }

  async create(s: NewSession): Promise<void> {
    await this.db.query(
      'create session',
      `INSERT INTO sessions (sid, app, subject, created_at, expires_at, client_ip) VALUES ($1, $2, $3, $4, $5, $6)`,
      [s.sid, s.app, s.subject, s.createdAt, s.expiresAt, s.clientIp],
    );
    this.sessions.set(s.sid, { expiresAt: s.expiresAt, revokedAt: null });
  }

  async isActive(sid: string, now = Date.now()): Promise<boolean> {
    const s = await this.sessions.read(sid, this.db.offline, async () => {
      const { rows } = await this.db.query<{ revoked_at: number | null; expires_at: number }>(
        'check session',
        `SELECT revoked_at, expires_at FROM sessions WHERE sid = $1`,
        [sid],
      );
      return rows[0] && { expiresAt: rows[0].expires_at, revokedAt: rows[0].revoked_at };
    });
    return !!s && s.revokedAt === null && s.expiresAt > now;
  }

  async revoke(sid: string, now = Date.now()): Promise<void> {
    await this.db.transaction('revoke session', async (tx) => {
      const r = await tx.query(`UPDATE sessions SET revoked_at = $1 WHERE sid = $2 AND revoked_at IS NULL`, [now, sid]);
      if (r.rowCount) await tx.notify('sessions');
    });
    this.sessions.stale();
    const known = this.sessions.get(sid);
    if (known) this.sessions.set(sid, { ...known, revokedAt: known.revokedAt ?? now });
  }

  async purge(expiredBefore: number): Promise<void> {
    await this.db.query(
      'purge sessions',
      `WITH s AS (DELETE FROM sessions WHERE expires_at < $1)
       DELETE FROM ended_provider_sessions WHERE expires_at < $1`,
      [expiredBefore],
    );
  }

  async endProviderSession(sid: string, now: number, until: number): Promise<void> {
    const expires = await this.db.transaction('end provider session', async (tx) => {
      const r = await tx.query<{ expires_at: number }>(
        `INSERT INTO ended_provider_sessions (sid, ended_at, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (sid) DO UPDATE SET expires_at = GREATEST(ended_provider_sessions.expires_at, excluded.expires_at)
         RETURNING expires_at`,
        [sid, now, until],
      );
      await tx.notify('sessions');
      return r.rows[0]!.expires_at;
    });
    this.endedEpoch++;
    this.ended?.set(sid, expires);
  }

  async providerSessionEnded(sid: string, now = Date.now()): Promise<boolean> {
    const remembered = (): boolean => (this.ended!.get(sid) ?? -Infinity) > now;
    if (this.db.offline && this.ended) return remembered();
    const epoch = this.endedEpoch;
    let expires: number | undefined;
    try {
      const { rows } = await this.db.query<{ expires_at: number }>(
        'check provider session',
        `SELECT expires_at FROM ended_provider_sessions WHERE sid = $1`,
        [sid],
      );
      expires = rows[0]?.expires_at;
    } catch (err) {
      if (isProxyctlError(err, 'ERR_STORE_UNAVAILABLE') && this.ended) return remembered();
      throw err;
    }
    if (this.ended && epoch === this.endedEpoch) {
      if (expires === undefined) this.ended.delete(sid);
      else this.ended.set(sid, expires);
    }
    return expires !== undefined && expires > now;
  }
}
