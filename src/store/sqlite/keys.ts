// Session-encryption and assertion-signing keys over SQLite.
import type { KeyPurpose, KeyRecord, KeyRepo } from '../types.js';
import { writeAudit } from './audit.js';
import type { SqliteDatabase } from './database.js';

export class SqliteKeyRepo implements KeyRepo {
  constructor(private readonly db: SqliteDatabase) {}

  async list(purpose: KeyPurpose): Promise<KeyRecord[]> {
    return this.select(`WHERE purpose = ?`, purpose);
  }

  async all(): Promise<KeyRecord[]> {
    return this.select('');
  }

  async setMaterial(kid: string, material: string): Promise<void> {
    this.db.stmt(`UPDATE keys SET material = ? WHERE kid = ?`).run(material, kid);
  }

  private select(where: string, ...params: string[]): KeyRecord[] {
    return (
      this.db
        .stmt(`SELECT kid, purpose, material, created_at, retired_at FROM keys ${where} ORDER BY created_at DESC, kid`)
        .all(...params) as {
        kid: string;
        purpose: KeyPurpose;
        material: string;
        created_at: number;
        retired_at: number | null;
      }[]
    ).map((r) => ({
      kid: r.kid,
      purpose: r.purpose,
      material: r.material,
      createdAt: r.created_at,
      retiredAt: r.retired_at,
    }));
  }

  async add(
    key: { kid: string; purpose: KeyPurpose; material: string },
    actor: string,
    now = Date.now(),
  ): Promise<void> {
    this.db.transaction('add key', () => {
      this.db.stmt(`UPDATE keys SET retired_at = ? WHERE purpose = ? AND retired_at IS NULL`).run(now, key.purpose);
      this.db
        .stmt(`INSERT INTO keys (kid, purpose, material, created_at) VALUES (?, ?, ?, ?)`)
        .run(key.kid, key.purpose, key.material, now);
      writeAudit(this.db, actor, 'key.rotate', null, { purpose: key.purpose, kid: key.kid }, now);
    });
  }

  async dropRetiredBefore(purpose: KeyPurpose, before: number): Promise<number> {
    return this.db
      .stmt(`DELETE FROM keys WHERE purpose = ? AND retired_at IS NOT NULL AND retired_at < ?`)
      .run(purpose, before).changes;
  }
}
