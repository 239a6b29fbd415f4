// The relays sharing this store and the named secrets they share, over PostgreSQL.
// A replica joining, moving or leaving announces 'replicas'; a plain heartbeat does not.
import type { ReplicaRecord, ReplicaRepo, SecretRepo } from '../types.js';
import { writeAudit } from './audit.js';
import type { PgDatabase } from './database.js';
import { STALE_REPLICA_KEEP_MS, toReplica, type ReplicaRow } from '../rows.js';

export class PgReplicaRepo implements ReplicaRepo {
  constructor(private readonly db: PgDatabase) {}

  async heartbeat(r: Omit<ReplicaRecord, 'startedAt' | 'heartbeatAt'>, now: number): Promise<void> {
    await this.db.transaction('record replica heartbeat', async (tx) => {
      // The CTE reads the row as it was before the upsert: no row, or another URL, is news to the others.
      const up = await tx.query<{ news: boolean }>(
        `WITH before AS (SELECT connector_api_url, version FROM replicas WHERE id = $1)
         INSERT INTO replicas (id, connector_api_url, version, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (id) DO UPDATE SET connector_api_url = excluded.connector_api_url,
           version = excluded.version, heartbeat_at = excluded.heartbeat_at
         RETURNING NOT EXISTS (SELECT 1 FROM before WHERE connector_api_url = $2 AND version = $3) AS news`,
        [r.id, r.connectorApiUrl, r.version, now],
      );
      const gone = await tx.query(`DELETE FROM replicas WHERE heartbeat_at < $1`, [now - STALE_REPLICA_KEEP_MS]);
      if (up.rows[0]?.news || gone.rowCount) await tx.notify('replicas');
    });
  }

  async live(now: number, staleMs: number): Promise<ReplicaRecord[]> {
    const { rows } = await this.db.query<ReplicaRow>(
      'list replicas',
      `SELECT * FROM replicas WHERE heartbeat_at >= $1 ORDER BY id`,
      [now - staleMs],
    );
    return rows.map(toReplica);
  }

  async remove(id: string): Promise<void> {
    await this.db.transaction('remove replica', async (tx) => {
      const r = await tx.query(`DELETE FROM replicas WHERE id = $1`, [id]);
      if (r.rowCount) await tx.notify('replicas');
    });
  }
}

export class PgSecretRepo implements SecretRepo {
  constructor(private readonly db: PgDatabase) {}

  async get(name: string): Promise<string | undefined> {
    const { rows } = await this.db.query<{ value: string }>(
      'read secret',
      `SELECT value FROM secrets WHERE name = $1`,
      [name],
    );
    return rows[0]?.value;
  }

  async putIfAbsent(name: string, value: string): Promise<string> {
    return this.db.transaction('store secret', async (tx) => {
      // A concurrent insert of the same name makes this one wait for it, then do nothing.
      const inserted = await tx.query(
        `INSERT INTO secrets (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
        [name, value, Date.now()],
      );
      if (inserted.rowCount) {
        await tx.notify('secrets');
        return value;
      }
      const { rows } = await tx.query<{ value: string }>(`SELECT value FROM secrets WHERE name = $1`, [name]);
      return rows[0]!.value;
    });
  }

  async put(name: string, value: string, actor: string): Promise<void> {
    const now = Date.now();
    await this.db.transaction('store secret', async (tx) => {
      await tx.query(
        `INSERT INTO secrets (name, value, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
        [name, value, now],
      );
      await writeAudit(tx, actor, 'secret.put', null, { name }, now);
      await tx.notify('secrets');
    });
  }

  async list(): Promise<{ name: string; value: string }[]> {
    const { rows } = await this.db.query<{ name: string; value: string }>(
      'list secrets',
      `SELECT name, value FROM secrets ORDER BY name`,
    );
    return rows;
  }

  async remove(name: string): Promise<boolean> {
    // No notification: nothing another replica holds changes when an expired secret goes.
    const r = await this.db.query('remove secret', `DELETE FROM secrets WHERE name = $1`, [name]);
    return (r.rowCount ?? 0) > 0;
  }
}
