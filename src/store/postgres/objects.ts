// Managed objects (what the administration API publishes) over PostgreSQL. Each
// change is one transaction with its audit row and an 'objects' notification; the
// version checks are single statements (ON CONFLICT, UPDATE … WHERE version), so two
// replicas writing one object at once cannot both win.
import type { ManagedAudit, ManagedKind, ManagedObject, ManagedObjectRepo } from '../types.js';
import {
  alreadyExists,
  checkExpectedVersion,
  checkKey,
  objectNotFound,
  specText,
  toManaged,
  versionDiffers,
  type ManagedObjectRow,
} from '../managed-objects.js';
import { writeAudit } from './audit.js';
import type { PgDatabase, Sql } from './database.js';

/** Names sort by code point, as SQLite sorts them, whatever the database's collation. */
const C = 'COLLATE "C"';

const COLUMNS = 'kind, name, spec, version, created_at, updated_at, updated_by';

export class PgManagedObjectRepo implements ManagedObjectRepo {
  constructor(private readonly db: PgDatabase) {}

  async list(kind?: ManagedKind): Promise<ManagedObject[]> {
    const { rows } =
      kind === undefined
        ? await this.db.query<ManagedObjectRow>(
            'list managed objects',
            `SELECT ${COLUMNS} FROM managed_objects ORDER BY kind ${C}, name ${C}`,
          )
        : await this.db.query<ManagedObjectRow>(
            'list managed objects',
            `SELECT ${COLUMNS} FROM managed_objects WHERE kind = $1 ORDER BY name ${C}`,
            [kind],
          );
    return rows.map(toManaged);
  }

  async get(kind: ManagedKind, name: string): Promise<ManagedObject | undefined> {
    const row = await current(this.db.reader('read managed object'), kind, name);
    return row && toManaged(row);
  }

  async put(
    kind: ManagedKind,
    name: string,
    spec: Record<string, unknown>,
    audit: ManagedAudit,
    expectedVersion: number | undefined,
    now: number,
  ): Promise<ManagedObject> {
    checkKey(kind, name);
    checkExpectedVersion(expectedVersion);
    const text = specText(kind, name, spec);
    const row = await this.db.transaction(`save ${kind}`, async (tx) => {
      const insert = `INSERT INTO managed_objects (${COLUMNS}) VALUES ($1, $2, $3::json, 1, $4, $4, $5)`;
      const params = [kind, name, text, now, audit.actor];
      let row: ManagedObjectRow | undefined;
      if (expectedVersion === undefined) {
        row = (
          await tx.query<ManagedObjectRow>(
            `${insert} ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec,
               version = managed_objects.version + 1, updated_at = excluded.updated_at, updated_by = excluded.updated_by
             RETURNING ${COLUMNS}`,
            params,
          )
        ).rows[0];
      } else if (expectedVersion === 0) {
        row = (await tx.query<ManagedObjectRow>(`${insert} ON CONFLICT DO NOTHING RETURNING ${COLUMNS}`, params))
          .rows[0];
        if (!row) throw alreadyExists(kind, name, (await current(tx, kind, name))?.version);
      } else {
        row = (
          await tx.query<ManagedObjectRow>(
            `UPDATE managed_objects SET spec = $3::json, version = version + 1, updated_at = $4, updated_by = $5
             WHERE kind = $1 AND name = $2 AND version = $6 RETURNING ${COLUMNS}`,
            [...params, expectedVersion],
          )
        ).rows[0];
        if (!row) throw refused(await current(tx, kind, name), kind, name, expectedVersion);
      }
      await writeAudit(tx, audit.actor, audit.action, null, audit.details, now);
      await tx.notify('objects');
      return row!;
    });
    return toManaged(row);
  }

  async remove(
    kind: ManagedKind,
    name: string,
    audit: ManagedAudit,
    expectedVersion: number | undefined,
    now: number,
  ): Promise<void> {
    checkKey(kind, name);
    checkExpectedVersion(expectedVersion);
    await this.db.transaction(`remove ${kind}`, async (tx) => {
      const removed = await tx.query(
        `DELETE FROM managed_objects WHERE kind = $1 AND name = $2 AND ($3::integer IS NULL OR version = $3)`,
        [kind, name, expectedVersion ?? null],
      );
      if (removed.rowCount !== 1) throw refused(await current(tx, kind, name), kind, name, expectedVersion);
      await writeAudit(tx, audit.actor, audit.action, null, audit.details, now);
      await tx.notify('objects');
    });
  }
}

async function current(sql: Sql, kind: ManagedKind, name: string): Promise<ManagedObjectRow | undefined> {
  const { rows } = await sql.query<ManagedObjectRow>(
    `SELECT ${COLUMNS} FROM managed_objects WHERE kind = $1 AND name = $2`,
    [kind, name],
  );
  return rows[0];
}

/** Why a conditional change matched no row: the object is absent, or at another version. */
function refused(
  found: ManagedObjectRow | undefined,
  kind: ManagedKind,
  name: string,
  expected: number | undefined,
): Error {
  return found ? versionDiffers(kind, name, found.version, expected ?? found.version) : objectNotFound(kind, name);
}
