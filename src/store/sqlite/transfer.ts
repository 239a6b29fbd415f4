// A whole SQLite store out (one read transaction) and into a new one (one write
// transaction, refused unless the store is empty): how a data directory moves to
// PostgreSQL (`proxyctl relay migrate`), and the contract's round trip.
import { ProxyctlError } from '../../errors.js';
import { countDump, type StoreDump, type StoreTransfer } from '../types.js';
import { writeAudit } from './audit.js';
import type { SqliteDatabase } from './database.js';
import { toManaged, type ManagedObjectRow } from '../managed-objects.js';
import {
  SIGN_IN_COLUMNS,
  artifactKeys,
  signInValues,
  toAudit,
  toCertificate,
  toConnector,
  toSignIn,
  toRiskDetection,
  toUserRisk,
  riskDetectionValues,
  RISK_DETECTION_COLUMNS,
  toUser,
  withoutId,
  type AuditRow,
  type CertificateRow,
  type ConnectorRow,
  type SignInRow,
  type RiskDetectionRow,
  type UserRiskRow,
  type UserRow,
} from '../rows.js';

type Row = Record<string, unknown>;

export class SqliteTransfer implements StoreTransfer {
  constructor(
    private readonly db: SqliteDatabase,
    private readonly changed: () => void,
  ) {}

  async export(now = Date.now()): Promise<StoreDump> {
    return this.db.transaction('export the store', () => {
      const all = <T = Row>(sql: string, ...params: unknown[]): T[] => this.db.stmt(sql).all(...params) as T[];
      const json = (v: unknown): unknown => JSON.parse(v as string);
      return {
        connectors: all<ConnectorRow>(`SELECT * FROM connectors ORDER BY created_at, id`).map((r) => ({
          ...toConnector(r),
          deletedAt: r.deleted_at,
        })),
        certificates: all<CertificateRow>(`SELECT * FROM certificates ORDER BY issued_at, serial`).map(toCertificate),
        audit: all<AuditRow>(`SELECT * FROM audit ORDER BY id`).map((r) => withoutId(toAudit(r))),
        keys: all(`SELECT * FROM keys ORDER BY created_at, kid`).map((r) => ({
          kid: r['kid'] as string,
          purpose: r['purpose'] as 'session' | 'assertion',
          material: r['material'] as string,
          createdAt: r['created_at'] as number,
          retiredAt: r['retired_at'] as number | null,
        })),
        users: all<UserRow>(`SELECT * FROM users ORDER BY username`).map(toUser),
        totpSteps: all(`SELECT * FROM totp_steps ORDER BY username`).map((r) => ({
          username: r['username'] as string,
          lastStep: r['last_step'] as number,
        })),
        secrets: all(`SELECT name, value FROM secrets ORDER BY name`).map((r) => ({
          name: r['name'] as string,
          value: r['value'] as string,
        })),
        signIns: all<SignInRow>(`SELECT * FROM signins ORDER BY id`).map((r) => withoutId(toSignIn(r))),
        riskDetections: all<RiskDetectionRow>(`SELECT * FROM risk_detections ORDER BY id`).map((r) => {
          const { id: _id, signInId: _signInId, ...rest } = toRiskDetection(r);
          return rest;
        }),
        userRiskStates: all<UserRiskRow>(`SELECT * FROM user_risk ORDER BY subject`).map(toUserRisk),
        endedProviderSessions: all(`SELECT * FROM ended_provider_sessions ORDER BY sid`).map((r) => ({
          sid: r['sid'] as string,
          endedAt: r['ended_at'] as number,
          expiresAt: r['expires_at'] as number,
        })),
        sessions: all(`SELECT * FROM sessions WHERE expires_at > ? ORDER BY sid`, now).map((r) => ({
          sid: r['sid'] as string,
          app: r['app'] as string,
          subject: r['subject'] as string,
          createdAt: r['created_at'] as number,
          expiresAt: r['expires_at'] as number,
          clientIp: r['client_ip'] as string | null,
          revokedAt: r['revoked_at'] as number | null,
        })),
        idpArtifacts: all(
          `SELECT model, id, payload, expires_at FROM idp_artifacts WHERE expires_at IS NULL OR expires_at > ? ORDER BY model, id`,
          now,
        ).map((r) => ({
          model: r['model'] as string,
          id: r['id'] as string,
          payload: json(r['payload']) as Record<string, unknown>,
          expiresAt: r['expires_at'] as number | null,
        })),
        objects: all<ManagedObjectRow>(`SELECT * FROM managed_objects ORDER BY kind, name`).map(toManaged),
      };
    });
  }

  async import(dump: StoreDump, actor: string, now = Date.now()): Promise<void> {
    // immediate: nothing can be written between the emptiness check and the import
    this.db.transaction(
      'import the store',
      () => {
        this.assertEmpty();
        const run = (sql: string, ...params: unknown[]): void => {
          this.db.stmt(sql).run(...params);
        };
        for (const c of dump.connectors)
          run(
            `INSERT INTO connectors (id, name, group_name, created_at, created_by, version, last_seen, revoked_at, deleted_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            c.id,
            c.name,
            c.group,
            c.createdAt,
            c.createdBy,
            c.version,
            c.lastSeen,
            c.revokedAt,
            c.deletedAt,
          );
        for (const c of dump.certificates)
          run(
            `INSERT INTO certificates (serial, connector_id, issued_at, not_after, revoked_at, kind) VALUES (?, ?, ?, ?, ?, ?)`,
            c.serial,
            c.connectorId,
            c.issuedAt,
            c.notAfter,
            c.revokedAt,
            c.kind,
          );
        for (const a of dump.audit) writeAudit(this.db, a.actor, a.action, a.connectorId, a.details, a.at);
        for (const k of dump.keys)
          run(
            `INSERT INTO keys (kid, purpose, material, created_at, retired_at) VALUES (?, ?, ?, ?, ?)`,
            k.kid,
            k.purpose,
            k.material,
            k.createdAt,
            k.retiredAt,
          );
        for (const u of dump.users)
          run(
            `INSERT INTO users (username, password_hash, email, name, groups, roles, totp_secret, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
            u.username,
            u.passwordHash,
            u.email,
            u.name,
            JSON.stringify(u.groups),
            JSON.stringify(u.roles),
            u.totpSecret,
            u.createdAt,
          );
        for (const s of dump.totpSteps)
          run(`INSERT INTO totp_steps (username, last_step) VALUES (?, ?)`, s.username, s.lastStep);
        for (const s of dump.secrets)
          run(`INSERT INTO secrets (name, value, updated_at) VALUES (?, ?, ?)`, s.name, s.value, now);
        for (const e of dump.signIns)
          run(
            `INSERT INTO signins (${SIGN_IN_COLUMNS}) VALUES (${SIGN_IN_COLUMNS.split(',')
              .map(() => '?')
              .join(', ')})`,
            ...signInValues(e),
          );
        for (const d of dump.riskDetections)
          run(
            `INSERT INTO risk_detections (${RISK_DETECTION_COLUMNS}) VALUES (${RISK_DETECTION_COLUMNS.split(',')
              .map(() => '?')
              .join(', ')})`,
            ...riskDetectionValues({ ...d, signInId: null }),
          );
        for (const r of dump.userRiskStates)
          run(
            `INSERT INTO user_risk (subject, dismissed_at, confirmed_at, by_actor) VALUES (?, ?, ?, ?)`,
            r.subject,
            r.dismissedAt,
            r.confirmedAt,
            r.by,
          );
        for (const e of dump.endedProviderSessions)
          run(
            `INSERT INTO ended_provider_sessions (sid, ended_at, expires_at) VALUES (?, ?, ?)`,
            e.sid,
            e.endedAt,
            e.expiresAt,
          );
        for (const s of dump.sessions)
          run(
            `INSERT INTO sessions (sid, app, subject, created_at, expires_at, revoked_at, client_ip) VALUES (?, ?, ?, ?, ?, ?, ?)`,
            s.sid,
            s.app,
            s.subject,
            s.createdAt,
            s.expiresAt,
            s.revokedAt,
            s.clientIp,
          );
        for (const a of dump.idpArtifacts)
          run(
            `INSERT INTO idp_artifacts (model, id, payload, expires_at, uid, user_code, grant_id) VALUES (?, ?, ?, ?, ?, ?, ?)`,
            a.model,
            a.id,
            JSON.stringify(a.payload),
            a.expiresAt,
            ...artifactKeys(a.payload),
          );
        for (const o of dump.objects)
          run(
            `INSERT INTO managed_objects (kind, name, spec, version, created_at, updated_at, updated_by)
             VALUES (?, ?, ?, ?, ?, ?, ?)`,
            o.kind,
            o.name,
            JSON.stringify(o.spec),
            o.version,
            o.createdAt,
            o.updatedAt,
            o.updatedBy,
          );
        writeAudit(this.db, actor, 'store.import', null, countDump(dump), now);
      },
      'immediate',
    );
    this.changed();
  }

  private assertEmpty(): void {
    const held = this.db
      .stmt(
        `SELECT (SELECT COUNT(*) FROM connectors) AS connectors, (SELECT COUNT(*) FROM keys) AS keys,
           (SELECT COUNT(*) FROM users) AS users, (SELECT COUNT(*) FROM secrets) AS secrets,
           (SELECT COUNT(*) FROM managed_objects) AS objects`,
      )
      .get() as Record<string, number>;
    const found = Object.entries(held).filter(([, n]) => n > 0);
    if (found.length > 0) {
      throw new ProxyctlError(
        'ERR_STORE',
        `store ${this.db.file} already holds ${found.map(([kind, n]) => `${n} ${kind}`).join(', ')}; a store is imported only into an empty one`,
        { details: Object.fromEntries(found) },
      );
    }
  }
}
