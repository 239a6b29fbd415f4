// Session-encryption and assertion-signing keys over PostgreSQL. Changes announce
// 'keys'; list remembers its answer per purpose for an outage (memory.ts).
import type { KeyPurpose, KeyRecord, KeyRepo } from '../types.js';
import { writeAudit } from './audit.js';
import type { PgDatabase } from './database.js';
import { Memory } from './memory.js';

interface KeyRow {
  kid: string;
  purpose: KeyPurpose;
  material: string;
  created_at: number;
  retired_at: number | null;
}

const toKey = (r: KeyRow): KeyRecord => ({
  kid: r.kid,
  purpose: r.purpose,
  material: r.material,
  createdAt: r.created_at,
  retiredAt: r.retired_at,
});

const COLUMNS = 'kid, purpose, material, created_at, retired_at';

export class PgKeyRepo implements KeyRepo {
  private readonly memory = new Memory<KeyRecord[]>();

  constructor(private readonly db: PgDatabase) {}

  /** Keys changed (here or elsewhere). */
  forget(): void {
    this.memory.forget();
  }

  async list(purpose: KeyPurpose): Promise<KeyRecord[]> {
    const keys = await this.memory.read(purpose, this.db.offline, async () => {
      const { rows } = await this.db.query<KeyRow>(
        'read keys',
        `SELECT ${COLUMNS} FROM keys WHERE purpose = $1 ORDER BY created_at DESC, kid`,
        [purpose],
      );
      return rows.map(toKey);
    });
    // Callers get their own copies: what is remembered stays as it was read.
    return keys.map((k) => ({ ...k }));
  }

  async all(): Promise<KeyRecord[]> {
    const { rows } = await this.db.query<KeyRow>(
      'read keys',
      `SELECT ${COLUMNS} FROM keys ORDER BY created_at DESC, kid`,
    );
    return rows.map(toKey);
  }

  async setMaterial(kid: string, material: string): Promise<void> {
    await this.db.transaction('re-wrap key', async (tx) => {
      const r = await tx.query(`UPDATE keys SET material = $1 WHERE kid = $2`, [material, kid]);
      if (r.rowCount) await tx.notify('keys');
    });
    this.forget();
  }

  async add(
    key: { kid: string; purpose: KeyPurpose; material: string },
    actor: string,
    now = Date.now(),
  ): Promise<void> {
    await this.db.transaction('add key', async (tx) => {
      await tx.query(`UPDATE keys SET retired_at = $1 WHERE purpose = $2 AND retired_at IS NULL`, [now, key.purpose]);
      await tx.query(`INSERT INTO keys (kid, purpose, material, created_at) VALUES ($1, $2, $3, $4)`, [
        key.kid,
        key.purpose,
        key.material,
        now,
      ]);
      await writeAudit(tx, actor, 'key.rotate', null, { purpose: key.purpose, kid: key.kid }, now);
      await tx.notify('keys');
    });
    this.forget();
  }

  async dropRetiredBefore(purpose: KeyPurpose, before: number): Promise<number> {
    const n = await this.db.transaction('drop retired keys', async (tx) => {
      const r = await tx.query(`DELETE FROM keys WHERE purpose = $1 AND retired_at IS NOT NULL AND retired_at < $2`, [
        purpose,
        before,
      ]);
      if (r.rowCount) await tx.notify('keys');
      return r.rowCount ?? 0;
    });
    if (n > 0) this.forget();
    return n;
  }
}
