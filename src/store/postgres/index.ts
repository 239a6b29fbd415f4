// The PostgreSQL store: replicas sharing one database. A pool for the aggregates
// (database.ts), a connection of its own for the change feed (change-feed.ts), and
// what the request path remembers to ride out an outage (memory.ts).
import type { Store, StoreTopic } from '../types.js';
import { PgAuditLog } from './audit.js';
import { ChangeFeed } from './change-feed.js';
import { PgConnectorRepo } from './connectors.js';
import { PgDatabase, pgTarget, storeError, type PostgresStoreOptions } from './database.js';
import { PgIdpArtifactRepo } from './idp-artifacts.js';
import { PgKeyRepo } from './keys.js';
import { PgManagedObjectRepo } from './objects.js';
import { PgReplicaRepo, PgSecretRepo } from './replicas.js';
import { PgSessionRepo } from './sessions.js';
import { PgEventFeed, PgExportCursorRepo } from './events.js';
import { PgRiskRepo, PgSignInLog } from './sign-ins.js';
import { PgTransfer } from './transfer.js';
import { PgUserRepo } from './users.js';

export type { PostgresStoreOptions } from './database.js';

type Listener = (topics: ReadonlySet<StoreTopic> | 'all') => void;

class PostgresStore implements Store {
  readonly kind = 'postgres';
  readonly connectors: PgConnectorRepo;
  readonly audit: PgAuditLog;
  readonly keys: PgKeyRepo;
  readonly sessions: PgSessionRepo;
  readonly signIns: PgSignInLog;
  readonly risk: PgRiskRepo;
  readonly events: PgEventFeed;
  readonly exportCursors: PgExportCursorRepo;
  readonly users: PgUserRepo;
  readonly idpArtifacts: PgIdpArtifactRepo;
  readonly replicas: PgReplicaRepo;
  readonly secrets: PgSecretRepo;
  readonly objects: PgManagedObjectRepo;
  readonly transfer: PgTransfer;
  readonly feed: ChangeFeed;
  private readonly listeners = new Set<Listener>();
  private gen = 0;
  private closing: Promise<void> | undefined;

  constructor(private readonly db: PgDatabase) {
    this.connectors = new PgConnectorRepo(db, () => this.gen++);
    this.audit = new PgAuditLog(db);
    this.keys = new PgKeyRepo(db);
    this.sessions = new PgSessionRepo(db);
    this.signIns = new PgSignInLog(db);
    this.risk = new PgRiskRepo(db);
    this.events = new PgEventFeed(db);
    this.exportCursors = new PgExportCursorRepo(db);
    this.users = new PgUserRepo(db);
    this.idpArtifacts = new PgIdpArtifactRepo(db);
    this.replicas = new PgReplicaRepo(db);
    this.secrets = new PgSecretRepo(db);
    this.objects = new PgManagedObjectRepo(db);
    this.transfer = new PgTransfer(db, () => {
      this.connectors.forget();
      this.keys.forget();
      this.gen++;
      void this.sessions.changed();
    });
    this.feed = new ChangeFeed(
      db.target,
      (topics) => this.changed(topics),
      (up) => db.feedState(up),
    );
  }

  get generation(): number {
    return this.gen;
  }

  bumpGeneration(): void {
    this.gen++;
  }

  /** What the feed reports: first what this store remembers is brought up to date, then the listeners. */
  private changed(topics: ReadonlySet<StoreTopic> | 'all'): void {
    const has = (t: StoreTopic): boolean => topics === 'all' || topics.has(t);
    if (has('connectors')) {
      this.connectors.forget();
      this.gen++;
    }
    if (has('keys')) this.keys.forget();
    if (has('sessions')) void this.sessions.changed();
    // One microtask each: a listener that throws does not keep the others from hearing.
    for (const listener of this.listeners) queueMicrotask(() => listener(topics));
  }

  /** LISTEN/NOTIFY: `pollMs` is SQLite's and not used here. */
  onChange(listener: Listener, _pollMs?: number): () => void {
    const own: Listener = (topics) => listener(topics);
    this.listeners.add(own);
    return () => this.listeners.delete(own);
  }

  reachable(): boolean {
    return this.db.reachable;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.listeners.clear();
      await this.feed.close();
      await this.db.close();
    })();
    return this.closing;
  }
}

/**
 * Opens the store in `options.schema` (default `proxyctl`), creating and migrating
 * it if needed, and starts its change feed. Rejects with ERR_STORE_UNAVAILABLE when
 * the database cannot be reached, ERR_STORE when the schema is newer than this code.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const target = pgTarget(options);
  const db = new PgDatabase(target);
  const store = new PostgresStore(db);
  try {
    await db.migrate();
    await store.feed.start().catch((err: unknown) => {
      throw storeError(target, err, 'listen for changes');
    });
    // What an outage would need from the start: the ended provider sessions.
    await store.sessions.refresh();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** Whether the schema holds a store yet (readers that must not create one ask first). */
export async function postgresStoreExists(options: PostgresStoreOptions): Promise<boolean> {
  const db = new PgDatabase(pgTarget(options));
  try {
    return await db.exists();
  } finally {
    await db.close();
  }
}
