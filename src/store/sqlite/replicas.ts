// The relays sharing this store over SQLite (several relay processes on one machine
// may share a data directory), and the named secrets they share.
import type { ReplicaRecord, ReplicaRepo, SecretRepo } from '../types.js';
import { writeAudit } from './audit.js';
import type { SqliteDatabase } from './database.js';
import { STALE_REPLICA_KEEP_MS, toReplica, type ReplicaRow } from '../rows.js';

export class SqliteReplicaRepo implements ReplicaRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async heartbeat(r: Omit<ReplicaRecord, 'startedAt' | 'heartbeatAt'>, now: number): Promise<void> {
    this.db.transaction('record replica heartbeat', () => {
      this.db
        .stmt(
          `INSERT INTO replicas (id, connector_api_url, version, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(id) DO UPDATE SET connector_api_url = excluded.connector_api_url,
             version = excluded.version, heartbeat_at = excluded.heartbeat_at`,
        )
        .run(r.id, r.connectorApiUrl, r.version, now, now);
      this.db.stmt(`DELETE FROM replicas WHERE heartbeat_at < ?`).run(now - STALE_REPLICA_KEEP_MS);
    });
  }

  async live(now: number, staleMs: number): Promise<ReplicaRecord[]> {
    const rows = this.db
      .stmt(`SELECT * FROM replicas WHERE heartbeat_at >= ? ORDER BY id`)
      .all(now - staleMs) as ReplicaRow[];
    return rows.map(toReplica);
  }

  async remove(id: string): Promise<void> {
    this.db.stmt(`DELETE FROM replicas WHERE id = ?`).run(id);
  }
}

export class SqliteSecretRepo implements SecretRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async get(name: string): Promise<string | undefined> {
    const row = this.db.stmt(`SELECT value FROM secrets WHERE name = ?`).get(name) as { value: string } | undefined;
    return row?.value;
  }

  async putIfAbsent(name: string, value: string): Promise<string> {
    return this.db.transaction(
      'store secret',
      () => {
        this.db
          .stmt(`INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO NOTHING`)
          .run(name, value, Date.now());
        return (this.db.stmt(`SELECT value FROM secrets WHERE name = ?`).get(name) as { value: string }).value;
      },
      'immediate',
    );
  }

  async put(name: string, value: string, actor: string): Promise<void> {
    const now = Date.now();
    this.db.transaction('store secret', () => {
      this.db
        .stmt(
          `INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?)
           ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
        )
        .run(name, value, now);
      writeAudit(this.db, actor, 'secret.put', null, { name }, now);
    });
  }

  async list(): Promise<{ name: string; value: string }[]> {
    return this.db.stmt(`SELECT name, value FROM secrets ORDER BY name`).all() as { name: string; value: string }[];
  }

  async remove(name: string): Promise<boolean> {
    return this.db.stmt(`DELETE FROM secrets WHERE name = ?`).run(name).changes > 0;
  }
}
