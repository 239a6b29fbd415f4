// PostgreSQL store: placeholder until the implementation lands in this folder.
import { ProxyctlError } from '../../errors.js';
import type { Store } from '../types.js';

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database */
  url: string;
  /** The schema holding proxyctl's tables (default `proxyctl`); tests use one per run. */
  schema?: string;
}

export function openPostgresStore(_options: PostgresStoreOptions): Promise<Store> {
  return Promise.reject(new ProxyctlError('ERR_STORE', 'the PostgreSQL store is not built yet'));
}

export function postgresStoreExists(_options: PostgresStoreOptions): Promise<boolean> {
  return Promise.resolve(false);
}
