// Managed objects (what the administration API publishes) over SQLite. Each change is
// one immediate transaction with its audit row: the version check and the write
// cannot interleave with another process's. Listeners of this store hear 'objects'
// after the commit (`changed`); other processes see the data version move.
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
import type { SqliteDatabase } from './database.js';

export class SqliteManagedObjectRepo implements ManagedObjectRepo {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly changed: () => void,
  ) {}

  async list(kind?: ManagedKind): Promise<ManagedObject[]> {
    const rows = (
      kind === undefined
        ? this.db.stmt(`SELECT * FROM managed_objects ORDER BY kind, name`).all()
        : this.db.stmt(`SELECT * FROM managed_objects WHERE kind = ? ORDER BY name`).all(kind)
    ) as ManagedObjectRow[];
    return rows.map(toManaged);
  }

  async get(kind: ManagedKind, name: string): Promise<ManagedObject | undefined> {
    const row = this.read(kind, name);
    return row && toManaged(row);
  }

  private read(kind: ManagedKind, name: string): ManagedObjectRow | undefined {
    return this.db.stmt(`SELECT * FROM managed_objects WHERE kind = ? AND name = ?`).get(kind, name) as
      ManagedObjectRow | undefined;
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
    const row = this.db.transaction(
      `save ${kind}`,
      () => {
        const found = this.read(kind, name);
        let row: ManagedObjectRow;
        if (!found) {
          if (expectedVersion !== undefined && expectedVersion > 0) throw objectNotFound(kind, name);
          row = this.db
            .stmt(
              `INSERT INTO managed_objects (kind, name, spec, version, created_at, updated_at, updated_by)
               VALUES (?, ?, ?, 1, ?, ?, ?) RETURNING *`,
            )
            .get(kind, name, text, now, now, audit.actor) as ManagedObjectRow;
        } else {
          if (expectedVersion === 0) throw alreadyExists(kind, name, found.version);
          if (expectedVersion !== undefined && found.version !== expectedVersion)
            throw versionDiffers(kind, name, found.version, expectedVersion);
          row = this.db
            .stmt(
              `UPDATE managed_objects SET spec = ?, version = version + 1, updated_at = ?, updated_by = ?
               WHERE kind = ? AND name = ? RETURNING *`,
            )
            .get(text, now, audit.actor, kind, name) as ManagedObjectRow;
        }
        writeAudit(this.db, audit.actor, audit.action, null, audit.details, now);
        return row;
      },
      'immediate',
    );
    this.changed();
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
    this.db.transaction(
      `remove ${kind}`,
      () => {
        const found = this.read(kind, name);
        if (!found) throw objectNotFound(kind, name);
        if (expectedVersion !== undefined && found.version !== expectedVersion)
          throw versionDiffers(kind, name, found.version, expectedVersion);
        this.db.stmt(`DELETE FROM managed_objects WHERE kind = ? AND name = ?`).run(kind, name);
        writeAudit(this.db, audit.actor, audit.action, null, audit.details, now);
      },
      'immediate',
    );
    this.changed();
  }
}
