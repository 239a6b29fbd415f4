// The store a command works on: the one the relay configuration names (PostgreSQL
// under `store.postgres`, otherwise SQLite in the data directory).
import type { RelayConfig } from '../config/relay-config.js';
import { openStore, storeExists, type Store, type StoreLocation } from '../store/index.js';

export function storeLocation(config: RelayConfig): StoreLocation {
  return config.store ? { kind: 'postgres', ...config.store.postgres } : { kind: 'sqlite', dataDir: config.dataDir };
}

export function openConfiguredStore(config: RelayConfig): Promise<Store> {
  return openStore(storeLocation(config));
}

/** Whether there is a store to read yet (readers that must not create one ask first). */
export function configuredStoreExists(config: RelayConfig): Promise<boolean> {
  return storeExists(storeLocation(config));
}

/** Runs `fn` on the configured store and closes it. */
export async function withStore<T>(config: RelayConfig, fn: (store: Store) => Promise<T> | T): Promise<T> {
  const store = await openConfiguredStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
