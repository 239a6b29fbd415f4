// PostgreSQL for tests: CI starts it at 127.0.0.1:5432 (trust authentication, database
// `test`); PROXYCTL_TEST_PG_URL points elsewhere. Every test gets a schema or database
// of its own, dropped when it ends.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env['PROXYCTL_TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** One administrative connection, closed when `t` ends. */
export async function pgAdmin(t: Teardown): Promise<pg.Client> {
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 5_000 });
  admin.on('error', () => undefined);
  await admin.connect();
  t.teardown(() => admin.end());
  return admin;
}

/** A schema name nobody uses, dropped with everything in it when `t` ends. */
export function freshSchema(t: Teardown, admin: pg.Client, prefix = 'pxt'): string {
  const schema = `${prefix}_${randomBytes(6).toString('hex')}`;
  t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
  return schema;
}

/** A database of its own (relays open the schema proxyctl in it), dropped when `t` ends; its URL. */
export async function freshDatabase(t: Teardown, admin: pg.Client, prefix = 'pxd'): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  t.teardown(() => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return url.href;
}
