// The SQLite store: one WAL database in the data directory (proxyctl.db, owner-only),
// shared by the aggregates; the admin CLI and the relay may have it open at once.
import { existsSync } from 'node:fs';
import type { Store, StoreTopic } from '../types.js';
import { SqliteAuditLog } from './audit.js';
import { SqliteConnectorRepo } from './connectors.js';
import { SqliteDatabase, databaseFile } from './database.js';
import { SqliteIdpArtifactRepo } from './idp-artifacts.js';
import { SqliteKeyRepo } from './keys.js';
import { SqliteManagedObjectRepo } from './objects.js';
import { SqliteReplicaRepo, SqliteSecretRepo } from './replicas.js';
import { SqliteSessionRepo } from './sessions.js';
import { SqliteEventFeed, SqliteExportCursorRepo } from './events.js';
import { SqliteRiskRepo, SqliteSignInLog } from './sign-ins.js';
import { SqliteTransfer } from './transfer.js';
import { SqliteUserRepo } from './users.js';

type Listener = (topics: ReadonlySet<StoreTopic> | 'all') => void;

class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly connectors: SqliteConnectorRepo;
  readonly audit: SqliteAuditLog;
  readonly keys: SqliteKeyRepo;
  readonly sessions: SqliteSessionRepo;
  readonly signIns: SqliteSignInLog;
  readonly risk: SqliteRiskRepo;
  readonly events: SqliteEventFeed;
  readonly exportCursors: SqliteExportCursorRepo;
  readonly users: SqliteUserRepo;
  readonly idpArtifacts: SqliteIdpArtifactRepo;
  readonly replicas: SqliteReplicaRepo;
  readonly secrets: SqliteSecretRepo;
  readonly objects: SqliteManagedObjectRepo;
  readonly transfer: SqliteTransfer;
  private readonly listeners = new Set<Listener>();
  private gen = 0;

  constructor(private readonly db: SqliteDatabase) {
    this.connectors = new SqliteConnectorRepo(db, () => this.gen++);
    this.audit = new SqliteAuditLog(db);
    this.keys = new SqliteKeyRepo(db);
    this.sessions = new SqliteSessionRepo(db);
    this.signIns = new SqliteSignInLog(db);
    this.risk = new SqliteRiskRepo(db);
    this.events = new SqliteEventFeed(db);
    this.exportCursors = new SqliteExportCursorRepo(db);
    this.users = new SqliteUserRepo(db);
    this.idpArtifacts = new SqliteIdpArtifactRepo(db);
    this.replicas = new SqliteReplicaRepo(db);
    this.secrets = new SqliteSecretRepo(db);
    this.objects = new SqliteManagedObjectRepo(db, () => this.changed('objects'));
    this.transfer = new SqliteTransfer(db, () => {
      this.gen++;
      this.changed('all');
    });
  }

  get generation(): number {
    return this.gen;
  }

  bumpGeneration(): void {
    this.gen++;
  }

  /**
   * A change this store committed, told to its own listeners: the data version moves
   * only for other connections' commits. One microtask each, as PostgreSQL's feed does.
   */
  private changed(topic: StoreTopic | 'all'): void {
    const topics: ReadonlySet<StoreTopic> | 'all' = topic === 'all' ? 'all' : new Set([topic]);
    for (const listener of this.listeners) queueMicrotask(() => listener(topics));
  }

  /**
   * SQLite tells a connection only that another one committed (its data version), not
   * what: every poll that sees it move reports 'all'. This store's own changes of
   * managed objects are told at once, as 'objects' (an import as 'all').
   */
  onChange(listener: Listener, pollMs = 500): () => void {
    const own: Listener = (topics) => listener(topics);
    this.listeners.add(own);
    let seen = this.db.dataVersion();
    const timer = setInterval(() => {
      if (this.closed) return;
      const v = this.db.dataVersion();
      if (v === seen) return;
      seen = v;
      listener('all');
    }, pollMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      this.listeners.delete(own);
    };
  }

  reachable(): boolean {
    return !this.closed;
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    this.db.close();
  }
}

/** Opens (creating if needed) `<dataDir>/proxyctl.db`, migrating it to the current schema. */
export function openSqliteStore(dataDir: string): Store {
  return new SqliteStore(SqliteDatabase.open(dataDir));
}

/**
 * The store of `dataDir` as it is now, read into memory (SqliteDatabase.snapshot):
 * for a reader that must leave the data directory untouched. Changes to it are lost
 * on close.
 */
export function openSqliteSnapshot(dataDir: string): Store {
  return new SqliteStore(SqliteDatabase.snapshot(dataDir));
}

/** Whether the data directory holds a store yet (readers that must not create one ask first). */
export function sqliteStoreExists(dataDir: string): boolean {
  return existsSync(databaseFile(dataDir));
}
