// The oidc-provider adapter's artifacts over PostgreSQL: one table, keyed by
// (model, id), with the payload as JSONB and the fields the provider looks
// artifacts up by.
import type { IdpArtifactKey, IdpArtifactRepo } from '../types.js';
import type { PgDatabase } from './database.js';
import { ARTIFACT_COLUMN, artifactKeys } from '../rows.js';

export class PgIdpArtifactRepo implements IdpArtifactRepo {
  constructor(private readonly db: PgDatabase) {}

  async upsert(
    model: string,
    id: string,
    payload: Record<string, unknown>,
    expiresInS: number | undefined,
  ): Promise<void> {
    const expiresAt = expiresInS ? Date.now() + expiresInS * 1000 : null;
    await this.db.query(
      'store provider artifact',
      `INSERT INTO idp_artifacts (model, id, payload, expires_at, uid, user_code, grant_id)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)
       ON CONFLICT (model, id) DO UPDATE SET payload = excluded.payload, expires_at = excluded.expires_at,
         uid = excluded.uid, user_code = excluded.user_code, grant_id = excluded.grant_id`,
      [model, id, JSON.stringify(payload), expiresAt, ...artifactKeys(payload)],
    );
  }

  async find(model: string, by: IdpArtifactKey, value: string): Promise<Record<string, unknown> | undefined> {
    const { rows } = await this.db.query<{ payload: Record<string, unknown> }>(
      'read provider artifact',
      `SELECT payload FROM idp_artifacts WHERE model = $1 AND ${ARTIFACT_COLUMN[by]} = $2
         AND (expires_at IS NULL OR expires_at > $3) LIMIT 1`,
      [model, value, Date.now()],
    );
    return rows[0]?.payload;
  }

  async consume(model: string, id: string): Promise<void> {
    // One statement: the mark cannot be lost to a concurrent upsert of another field.
    await this.db.query(
      'consume provider artifact',
      `UPDATE idp_artifacts SET payload = jsonb_set(payload, '{consumed}', to_jsonb($3::bigint))
       WHERE model = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $4)`,
      [model, id, Math.floor(Date.now() / 1000), Date.now()],
    );
  }

  async destroy(model: string, id: string): Promise<void> {
    await this.db.query('delete provider artifact', `DELETE FROM idp_artifacts WHERE model = $1 AND id = $2`, [
      model,
      id,
    ]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.query('revoke provider grant', `DELETE FROM idp_artifacts WHERE grant_id = $1`, [grantId]);
  }

  async purgeExpired(): Promise<void> {
    await this.db.query(
      'purge provider artifacts',
      `DELETE FROM idp_artifacts WHERE expires_at IS NOT NULL AND expires_at <= $1`,
      [Date.now()],
    );
  }
}
