// The oidc-provider adapter's artifacts over SQLite: one table, keyed by (model, id),
// with the payload as JSON and the fields the provider looks artifacts up by.
import type { IdpArtifactKey, IdpArtifactRepo } from '../types.js';
import type { SqliteDatabase } from './database.js';
import { ARTIFACT_COLUMN, artifactKeys } from '../rows.js';

export class SqliteIdpArtifactRepo implements IdpArtifactRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async upsert(
    model: string,
    id: string,
    payload: Record<string, unknown>,
    expiresInS: number | undefined,
  ): Promise<void> {
    const expiresAt = expiresInS ? Date.now() + expiresInS * 1000 : null;
    this.db
      .stmt(
        `INSERT INTO idp_artifacts (model, id, payload, expires_at, uid, user_code, grant_id) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(model, id) DO UPDATE SET payload = excluded.payload, expires_at = excluded.expires_at, uid = excluded.uid,
        user_code = excluded.user_code, grant_id = excluded.grant_id`,
      )
      .run(model, id, JSON.stringify(payload), expiresAt, ...artifactKeys(payload));
  }

  async find(model: string, by: IdpArtifactKey, value: string): Promise<Record<string, unknown> | undefined> {
    return this.findSync(model, by, value);
  }

  private findSync(model: string, by: IdpArtifactKey, value: string): Record<string, unknown> | undefined {
    const row = this.db
      .stmt(`SELECT payload, expires_at FROM idp_artifacts WHERE model = ? AND ${ARTIFACT_COLUMN[by]} = ?`)
      .get(model, value) as { payload: string; expires_at: number | null } | undefined;
    if (!row || (row.expires_at !== null && row.expires_at <= Date.now())) return undefined;
    return JSON.parse(row.payload) as Record<string, unknown>;
  }

  async consume(model: string, id: string): Promise<void> {
    const row = this.findSync(model, 'id', id);
    if (!row) return;
    row['consumed'] = Math.floor(Date.now() / 1000);
    this.db.stmt(`UPDATE idp_artifacts SET payload = ? WHERE model = ? AND id = ?`).run(JSON.stringify(row), model, id);
  }

  async destroy(model: string, id: string): Promise<void> {
    this.db.stmt(`DELETE FROM idp_artifacts WHERE model = ? AND id = ?`).run(model, id);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    this.db.stmt(`DELETE FROM idp_artifacts WHERE grant_id = ?`).run(grantId);
  }

  async purgeExpired(): Promise<void> {
    this.db.stmt(`DELETE FROM idp_artifacts WHERE expires_at IS NOT NULL AND expires_at <= ?`).run(Date.now());
  }
}
