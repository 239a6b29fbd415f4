// The store room: what the relay keeps (types.ts) and the implementation that keeps
// it (SQLite today). Nothing outside src/store/ knows a table or a driver.
export type * from './types.js';
export { openSqliteStore, sqliteStoreExists } from './sqlite/index.js';
