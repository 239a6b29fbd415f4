// The one SQLite connection the aggregates share: opened owner-only, in WAL mode,
// migrated to SCHEMA_VERSION; statements prepared once; every multi-row change one
// transaction, so a crash never leaves half of it.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ProxyctlError, wrapError } from '../../errors.js';
import { createPrivateFile, ensurePrivateDir, tightenPrivateFile } from '../../fs-private.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';

/** The database file in the data directory. */
export const databaseFile = (dataDir: string): string => path.join(dataDir, 'proxyctl.db');

export class SqliteDatabase {
  private readonly statements = new Map<string, Database.Statement>();
  private closed = false;

  private constructor(
    readonly file: string,
    private readonly db: Database.Database,
  ) {}

  /** Opens (creating if needed) `<dataDir>/proxyctl.db` and migrates it. */
  static open(dataDir: string): SqliteDatabase {
    ensurePrivateDir(dataDir, 'data directory');
    const file = databaseFile(dataDir);
    // SQLite would create the database with the umask (0644); its -wal and -shm files copy
    // the database's mode, so a 0600 database keeps sessions, keys and users owner-only.
    createPrivateFile(file);
    for (const suffix of ['-wal', '-shm', '-journal']) tightenPrivateFile(file + suffix);
    let db: Database.Database;
    try {
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `cannot open store ${file}: ${(err as Error).message}`);
    }
    const database = new SqliteDatabase(file, db);
    database.migrate();
    return database;
  }

  /**
   * An in-memory copy of `<dataDir>/proxyctl.db`, migrated to SCHEMA_VERSION, for a
   * reader that must leave the data directory exactly as it found it (the move to
   * PostgreSQL): the file is read, never opened by SQLite, so no -wal or -shm file
   * appears and nothing is checkpointed. A -wal file beside it means a process has
   * the store open (or was killed with it open) and the file alone may be missing
   * commits: refused.
   */
  static snapshot(dataDir: string): SqliteDatabase {
    const file = databaseFile(dataDir);
    const busy = (): string | undefined => [`${file}-wal`, `${file}-journal`].find((f) => existsSync(f));
    const refuseBusy = (found: string): ProxyctlError =>
      new ProxyctlError(
        'ERR_STORE',
        `${found} exists: a relay or admin command has the store open, or stopped without closing it; stop every relay using ${dataDir} (if none runs, \`proxyctl relay connectors list\` closes the store cleanly) and try again`,
      );
    const before = busy();
    if (before) throw refuseBusy(before);
    let bytes: Buffer;
    let stamp: string;
    try {
      const st = statSync(file);
      stamp = `${st.size}:${st.mtimeMs}`;
      bytes = readFileSync(file);
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `cannot read store ${file}: ${(err as Error).message}`);
    }
    const after = busy();
    if (after) throw refuseBusy(after);
    const st = statSync(file);
    if (`${st.size}:${st.mtimeMs}` !== stamp) throw refuseBusy(file);
    if (bytes.length < 100 || bytes.subarray(0, 16).toString('latin1') !== 'SQLite format 3\0')
      throw new ProxyctlError('ERR_STORE', `${file} is not an SQLite database`);
    // Bytes 18 and 19 say WAL (2); a database in memory cannot be one, so it is read as rollback (1).
    bytes[18] = 1;
    bytes[19] = 1;
    let db: Database.Database;
    try {
      db = new Database(bytes);
      db.pragma('foreign_keys = ON');
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `cannot read store ${file}: ${(err as Error).message}`);
    }
    const database = new SqliteDatabase(`${file} (as read)`, db);
    database.migrate();
    return database;
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw new ProxyctlError(
        'ERR_STORE',
        `store ${this.file} has schema ${current}, newer than this proxyctl (${SCHEMA_VERSION}); upgrade proxyctl`,
      );
    }
    const apply = this.db.transaction(() => {
      for (let v = current; v < SCHEMA_VERSION; v++) this.db.exec(MIGRATIONS[v]!);
      this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    apply();
  }

  /** Prepared once, reused: compiling SQL on every call dominated the hot path. */
  stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /**
   * Runs `fn` as one transaction; a failure that is not already a ProxyctlError
   * becomes ERR_STORE naming `what`. `immediate` takes the write lock before the
   * first read, for read-then-write checks another process must not interleave with.
   */
  transaction<T>(what: string, fn: () => T, mode: 'deferred' | 'immediate' = 'deferred'): T {
    const tx = this.db.transaction(fn);
    try {
      return mode === 'immediate' ? tx.immediate() : tx();
    } catch (err) {
      throw wrapError(err, 'ERR_STORE', `store: cannot ${what}: ${(err as Error).message}`);
    }
  }

  /** Changes whenever another connection (e.g. the admin CLI) commits. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
