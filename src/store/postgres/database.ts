// The connection pool the aggregates share. Every table lives in one schema (the
// search_path each connection gets as it opens); migrations run in one transaction
// under an advisory lock; errors are classified where they leave node-postgres:
// connection trouble is ERR_STORE_UNAVAILABLE (503), anything else ERR_STORE.
import { createHash } from 'node:crypto';
import pg from 'pg';
import { ProxyctlError, wrapError } from '../../errors.js';
import type { StoreTopic } from '../types.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';

export interface PostgresStoreOptions {
  /** postgres://user:password@host:port/database */
  url: string;
  /** The schema holding proxyctl's tables (default `proxyctl`); tests use one per run. */
  schema?: string;
}

/** Where the store is, checked, and what every connection to it is configured with. */
export interface PgTarget {
  readonly schema: string;
  /** The NOTIFY channel every change of this store is announced on. */
  readonly channel: string;
  /** For node-postgres (the pool adds its own settings); carries the password. */
  readonly client: pg.ClientConfig;
  /** Removes the URL's password from a message. */
  readonly mask: (message: string) => string;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const POOL_SIZE = 10;
const CONNECT_TIMEOUT_MS = 3_000;
const STATEMENT_TIMEOUT_MS = 10_000;

/** BIGINT (milliseconds, counts, identity ids) as a number: every value stored fits in 2^53. */
const TYPES = new pg.TypeOverrides();
TYPES.setTypeParser(pg.types.builtins.INT8, Number);

export const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** A stable advisory-lock key for `purpose` in `schema` (a signed 64-bit integer, as text). */
export function lockKey(purpose: string, schema: string): string {
  return createHash('sha256').update(`proxyctl:${purpose}:${schema}`).digest().readBigInt64BE(0).toString();
}

export function pgTarget(options: PostgresStoreOptions): PgTarget {
  const schema = options.schema ?? 'proxyctl';
  if (!SCHEMA_NAME.test(schema) || schema.startsWith('pg_')) {
    throw new ProxyctlError(
      'ERR_STORE',
      `the PostgreSQL schema name ${JSON.stringify(schema)} is not one proxyctl uses: lower-case letters, digits and _, at most 63, not starting with a digit or pg_`,
    );
  }
  let password = '';
  try {
    password = new URL(options.url).password;
  } catch {
    // Never echo the URL: it may hold a password.
    throw new ProxyctlError('ERR_STORE', 'the PostgreSQL URL is not a valid URL (postgres://user:password@host/db)');
  }
  const secrets = password ? [...new Set([password, safeDecode(password)])] : [];
  // Identifiers longer than 63 bytes would be cut; a long schema name gets a hashed channel.
  const plain = `proxyctl_${schema}`;
  const channel =
    plain.length <= 63 ? plain : `proxyctl_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
  return {
    schema,
    channel,
    client: {
      connectionString: options.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      types: TYPES,
    },
    mask: (message) => secrets.reduce((m, s) => m.split(s).join('***'), message),
  };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Server errors that mean the connection is gone or cannot be had: class 08
 * (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect now),
 * 53300 (too many connections). Errors node-postgres raises itself (refused, reset,
 * connection timeout, terminated) are not DatabaseErrors and mean the same.
 */
function connectionLost(err: unknown): boolean {
  if (!(err instanceof pg.DatabaseError)) return true;
  const code = err.code ?? '';
  return code.startsWith('08') || ['57P01', '57P02', '57P03', '53300'].includes(code);
}

function describe(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(describe).join('; ');
  const e = err as { message?: unknown; code?: unknown };
  if (typeof e.message === 'string' && e.message) return e.message;
  return typeof e.code === 'string' ? e.code : String(err);
}

/**
 * Classifies an error thrown by node-postgres: connection trouble becomes
 * ERR_STORE_UNAVAILABLE (and `lost` is told), a statement timeout too (the store did
 * not answer in time), anything else ERR_STORE, as SQLite's wrapError does.
 */
export function storeError(target: PgTarget, err: unknown, what: string, lost?: () => void): ProxyctlError {
  if (err instanceof ProxyctlError) return err;
  const reason = target.mask(describe(err));
  if (connectionLost(err)) {
    lost?.();
    return new ProxyctlError('ERR_STORE_UNAVAILABLE', `the store (PostgreSQL) is unreachable: ${reason}`, {
      status: 503,
      cause: err,
      details: { operation: what },
    });
  }
  if ((err as pg.DatabaseError).code === '57014') {
    return new ProxyctlError('ERR_STORE_UNAVAILABLE', `the store (PostgreSQL) did not answer in time: ${reason}`, {
      status: 503,
      cause: err,
      details: { operation: what },
    });
  }
  return new ProxyctlError('ERR_STORE', `store: cannot ${what}: ${reason}`, { cause: err });
}

/** The SQL constraint an ERR_STORE came from, if any (e.g. a unique index). */
export function constraintOf(err: unknown): string | undefined {
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof pg.DatabaseError ? cause.constraint : undefined;
}

/** Statements inside one transaction (or, for reads, one pool connection each). */
export interface Sql {
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<pg.QueryResult<R>>;
}

export interface Tx extends Sql {
  /** Announces `topic` on the store's channel, delivered when (and only if) this transaction commits. */
  notify(topic: StoreTopic): Promise<void>;
}

export class PgDatabase {
  private readonly pool: pg.Pool;
  private failed = false;
  private feedUp = false;
  private closed = false;

  constructor(readonly target: PgTarget) {
    this.pool = new pg.Pool({
      ...target.client,
      application_name: 'proxyctl',
      max: POOL_SIZE,
      idleTimeoutMillis: 30_000,
      statement_timeout: STATEMENT_TIMEOUT_MS,
      idle_in_transaction_session_timeout: 30_000,
      // pg-pool awaits this before handing the connection out (its types say void).
      // eslint-disable-next-line @typescript-eslint/no-misused-promises
      onConnect: async (client) => {
        await client.query(`SET search_path TO ${quoteIdent(target.schema)}`);
      },
    });
    // An idle connection that drops (a restart, an idle timeout) is discarded by the pool and
    // replaced on next use; without a listener the 'error' event would end the process.
    this.pool.on('error', () => undefined);
  }

  /** Whether the change feed is connected and the last query did not fail for want of a connection. */
  get reachable(): boolean {
    return this.feedUp && !this.failed && !this.closed;
  }

  /** While the change feed is down, reads on the request path answer from memory at once (memory.ts). */
  get offline(): boolean {
    return !this.feedUp;
  }

  /** The change feed's connection came up (true: the database answers again) or went down. */
  feedState(up: boolean): void {
    this.feedUp = up;
    if (up) this.failed = false;
  }

  private lost = (): void => {
    this.failed = true;
  };

  private fail(err: unknown, what: string): ProxyctlError {
    return storeError(this.target, err, what, this.lost);
  }

  private assertOpen(): void {
    if (this.closed) throw new ProxyctlError('ERR_STORE', 'the store is closed');
  }

  /** One statement on a pool connection. */
  async query<R extends pg.QueryResultRow = Record<string, unknown>>(
    what: string,
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    this.assertOpen();
    try {
      const result = await this.pool.query<R>(sql, params as unknown[]);
      this.failed = false;
      return result;
    } catch (err) {
      throw this.fail(err, what);
    }
  }

  /** `query` with `what` bound, for code that runs both inside and outside a transaction. */
  reader(what: string): Sql {
    return { query: (sql, params) => this.query(what, sql, params) };
  }

  /**
   * Runs `fn` as one transaction on one connection. A failure that is not already a
   * ProxyctlError (a bug here, not the database) becomes ERR_STORE naming `what`.
   */
  async transaction<T>(what: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    this.assertOpen();
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.fail(err, what);
    }
    // A drop between two statements surfaces on the next one; until then the event needs a listener.
    const ignore = (): void => undefined;
    client.on('error', ignore);
    let broken = false;
    const tx: Tx = {
      query: async <R extends pg.QueryResultRow>(sql: string, params: readonly unknown[] = []) => {
        try {
          return await client.query<R>(sql, params as unknown[]);
        } catch (err) {
          if (connectionLost(err)) broken = true;
          throw this.fail(err, what);
        }
      },
      notify: async (topic) => {
        await tx.query('SELECT pg_notify($1, $2)', [this.target.channel, topic]);
      },
    };
    try {
      await tx.query('BEGIN');
      const out = await fn(tx);
      await tx.query('COMMIT');
      this.failed = false;
      return out;
    } catch (err) {
      if (!broken) await client.query('ROLLBACK').catch(() => (broken = true));
      throw wrapError(err, 'ERR_STORE', `store: cannot ${what}: ${this.target.mask(describe(err))}`);
    } finally {
      client.removeListener('error', ignore);
      // A connection that failed is destroyed rather than handed to the next caller.
      client.release(broken);
    }
  }

  /**
   * Creates the schema and brings it to SCHEMA_VERSION, in one transaction under an
   * advisory lock, so replicas starting together migrate once. A schema newer than
   * this code is refused and left as it is.
   */
  async migrate(): Promise<void> {
    const { schema } = this.target;
    await this.transaction('migrate the store', async (tx) => {
      await tx.query(`SET LOCAL statement_timeout = 300000`);
      await tx.query(`SELECT pg_advisory_xact_lock($1::bigint)`, [lockKey('migrate', schema)]);
      const found = await tx.query<{ t: string | null }>(`SELECT to_regclass($1)::text AS t`, [
        `${quoteIdent(schema)}.schema_migrations`,
      ]);
      let current = 0;
      if (found.rows[0]?.t) {
        const v = await tx.query<{ v: number }>(`SELECT coalesce(max(version), 0) AS v FROM schema_migrations`);
        current = v.rows[0]?.v ?? 0;
      }
      if (current > SCHEMA_VERSION) {
        throw new ProxyctlError(
          'ERR_STORE',
          `the store (PostgreSQL schema ${schema}) has schema ${current}, newer than this proxyctl (${SCHEMA_VERSION}); upgrade proxyctl`,
        );
      }
      if (current === SCHEMA_VERSION) return;
      // Created only when missing: a role without CREATE on the database can run on a prepared schema.
      const ns = await tx.query(`SELECT 1 FROM pg_namespace WHERE nspname = $1`, [schema]);
      if (ns.rowCount === 0) await tx.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`,
      );
      for (let v = current; v < SCHEMA_VERSION; v++) {
        await tx.query(MIGRATIONS[v]!);
        await tx.query(`INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, [v + 1, Date.now()]);
      }
    });
  }

  /** Whether the schema holds a store yet. */
  async exists(): Promise<boolean> {
    const r = await this.query<{ t: string | null }>('look for the store', `SELECT to_regclass($1)::text AS t`, [
      `${quoteIdent(this.target.schema)}.schema_migrations`,
    ]);
    return !!r.rows[0]?.t;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end().catch(() => undefined);
  }
}
