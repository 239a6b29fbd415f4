// The store room: what the relay keeps (types.ts) and the two implementations that
// keep it: SQLite in the data directory (one machine) and PostgreSQL (replicas).
// Nothing outside src/store/ knows a table or a driver.
import type { Store } from './types.js';
import { openSqliteStore, sqliteStoreExists } from './sqlite/index.js';
import type { PostgresStoreOptions } from './postgres/index.js';

export type * from './types.js';
export { openSqliteStore, sqliteStoreExists } from './sqlite/index.js';
export type { PostgresStoreOptions } from './postgres/index.js';

// The PostgreSQL driver (pg) loads only for a store that uses it: a relay on SQLite
// starts without it.
/** Opens (creating and migrating if needed) the PostgreSQL store `options` names. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  return (await import('./postgres/index.js')).openPostgresStore(options);
}

export type StoreLocation =
  { kind: 'sqlite'; dataDir: string } | ({ kind: 'postgres'; url: string } & Omit<PostgresStoreOptions, 'url'>);

/** Opens (creating and migrating if needed) the store at `where`. */
export async function openStore(where: StoreLocation): Promise<Store> {
  if (where.kind === 'sqlite') return openSqliteStore(where.dataDir);
  const { kind: _kind, ...options } = where;
  return openPostgresStore(options);
}

/** Whether `where` holds a store yet (readers that must not create one ask first). */
export async function storeExists(where: StoreLocation): Promise<boolean> {
  if (where.kind === 'sqlite') return sqliteStoreExists(where.dataDir);
  const { kind: _kind, ...options } = where;
  return (await import('./postgres/index.js')).postgresStoreExists(options);
}
