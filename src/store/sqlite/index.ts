// The SQLite store: one WAL database in the data directory (proxyctl.db, owner-only),
// shared by the aggregates; the admin CLI and the relay may have it open at once.
import { existsSync } from 'node:fs';
import type { Store } from '../types.js';
import { SqliteAuditLog } from './audit.js';
import { SqliteConnectorRepo } from './connectors.js';
import { SqliteDatabase, databaseFile } from './database.js';
import { SqliteIdpArtifactRepo } from './idp-artifacts.js';
import { SqliteKeyRepo } from './keys.js';
import { SqliteSessionRepo } from './sessions.js';
import { SqliteSignInLog } from './sign-ins.js';
import { SqliteUserRepo } from './users.js';

class SqliteStore implements Store {
  readonly connectors: SqliteConnectorRepo;
  readonly audit: SqliteAuditLog;
  readonly keys: SqliteKeyRepo;
  readonly sessions: SqliteSessionRepo;
  readonly signIns: SqliteSignInLog;
  readonly users: SqliteUserRepo;
  readonly idpArtifacts: SqliteIdpArtifactRepo;
  private gen = 0;

  constructor(private readonly db: SqliteDatabase) {
    this.connectors = new SqliteConnectorRepo(db, () => this.gen++);
    this.audit = new SqliteAuditLog(db);
    this.keys = new SqliteKeyRepo(db);
    this.sessions = new SqliteSessionRepo(db);
    this.signIns = new SqliteSignInLog(db);
    this.users = new SqliteUserRepo(db);
    this.idpArtifacts = new SqliteIdpArtifactRepo(db);
  }

  get generation(): number {
    return this.gen;
  }

  bumpGeneration(): void {
    this.gen++;
  }

  dataVersion(): number {
    return this.db.dataVersion();
  }

  close(): void {
    this.db.close();
  }
}

/** Opens (creating if needed) `<dataDir>/proxyctl.db`, migrating it to the current schema. */
export function openSqliteStore(dataDir: string): Store {
  return new SqliteStore(SqliteDatabase.open(dataDir));
}

/** Whether the data directory holds a store yet (readers that must not create one ask first). */
export function sqliteStoreExists(dataDir: string): boolean {
  return existsSync(databaseFile(dataDir));
}
