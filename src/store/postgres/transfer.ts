// A whole PostgreSQL store out (one repeatable-read snapshot) and into a new one
// (one transaction, refused unless the store is empty), announcing every topic so
// running replicas read again. Rows travel as JSON arrays, a thousand per
// statement: a data directory with years of audit and sign-ins is not a statement
// per row.
import { ProxyctlError } from '../../errors.js';
import { countDump, type StoreDump, type StoreTopic, type StoreTransfer } from '../types.js';
import { writeAudit } from './audit.js';
import type { PgDatabase, Sql } from './database.js';
import { toManaged, type ManagedObjectRow } from '../managed-objects.js';
import {
  toAudit,
  toCertificate,
  toConnector,
  toSignIn,
  signInValues,
  toRiskDetection,
  toUserRisk,
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

/** Rows per INSERT: a few hundred kilobytes of JSON at most. */
const BATCH = 1_000;

/** Text keys sort by code point, as SQLite sorts them, whatever the database's collation. */
const C = 'COLLATE "C"';

const TOPICS: readonly StoreTopic[] = ['connectors', 'keys', 'sessions', 'users', 'secrets', 'risk', 'objects'];

type Row = Record<string, unknown>;

/**
 * Inserts `records` with `sql`, which reads them from `r(v, n)`: v one record as
 * JSONB, n its place (ids follow it for audit and sign-ins).
 */
async function insertAll(tx: Sql, sql: string, records: readonly object[]): Promise<void> {
  for (let i = 0; i < records.length; i += BATCH) {
    const statement = sql.replace('$ROWS', () => 'jsonb_array_elements($1::jsonb) WITH ORDINALITY AS r(v, n)');
    await tx.query(statement, [JSON.stringify(records.slice(i, i + BATCH))]);
  }
}

export class PgTransfer implements StoreTransfer {
  constructor(
    private readonly db: PgDatabase,
    /** This store's own memory of connectors and keys is out of date (the feed tells the others). */
    private readonly changed: () => void,
  ) {}

  async export(now = Date.now()): Promise<StoreDump> {
    return this.db.transaction('export the store', async (tx) => {
      await tx.query(`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`);
      await tx.query(`SET LOCAL statement_timeout = 300000`);
      const all = async <T extends object = Row>(sql: string, params: unknown[] = []): Promise<T[]> =>
        (await tx.query<T & Row>(sql, params)).rows;
      return {
        connectors: (await all<ConnectorRow>(`SELECT * FROM connectors ORDER BY created_at, id ${C}`)).map((r) => ({
          ...toConnector(r),
          deletedAt: r.deleted_at,
        })),
        certificates: (await all<CertificateRow>(`SELECT * FROM certificates ORDER BY issued_at, serial ${C}`)).map(
          toCertificate,
        ),
        audit: (await all<AuditRow>(`SELECT * FROM audit ORDER BY id`)).map((r) => withoutId(toAudit(r))),
        keys: (await all(`SELECT * FROM keys ORDER BY created_at, kid ${C}`)).map((r) => ({
          kid: r['kid'] as string,
          purpose: r['purpose'] as 'session' | 'assertion',
          material: r['material'] as string,
          createdAt: r['created_at'] as number,
          retiredAt: r['retired_at'] as number | null,
        })),
        users: (await all<UserRow>(`SELECT * FROM users ORDER BY username ${C}`)).map(toUser),
        totpSteps: (await all(`SELECT * FROM totp_steps ORDER BY username ${C}`)).map((r) => ({
          username: r['username'] as string,
          lastStep: r['last_step'] as number,
        })),
        secrets: (await all(`SELECT name, value FROM secrets ORDER BY name ${C}`)).map((r) => ({
          name: r['name'] as string,
          value: r['value'] as string,
        })),
        signIns: (await all<SignInRow>(`SELECT * FROM signins ORDER BY id`)).map((r) => withoutId(toSignIn(r))),
        riskDetections: (await all<RiskDetectionRow>(`SELECT * FROM risk_detections ORDER BY id`)).map((r) => {
          const { id: _id, signInId: _signInId, ...rest } = toRiskDetection(r);
          return rest;
        }),
        userRiskStates: (await all<UserRiskRow>(`SELECT * FROM user_risk ORDER BY subject`)).map(toUserRisk),
        endedProviderSessions: (await all(`SELECT * FROM ended_provider_sessions ORDER BY sid ${C}`)).map((r) => ({
          sid: r['sid'] as string,
          endedAt: r['ended_at'] as number,
          expiresAt: r['expires_at'] as number,
        })),
        sessions: (await all(`SELECT * FROM sessions WHERE expires_at > $1 ORDER BY sid ${C}`, [now])).map((r) => ({
          sid: r['sid'] as string,
          app: r['app'] as string,
          subject: r['subject'] as string,
          createdAt: r['created_at'] as number,
          expiresAt: r['expires_at'] as number,
          clientIp: r['client_ip'] as string | null,
          revokedAt: r['revoked_at'] as number | null,
        })),
        idpArtifacts: (
          await all(
            `SELECT model, id, payload, expires_at FROM idp_artifacts WHERE expires_at IS NULL OR expires_at > $1
             ORDER BY model ${C}, id ${C}`,
            [now],
          )
        ).map((r) => ({
          model: r['model'] as string,
          id: r['id'] as string,
          payload: r['payload'] as Record<string, unknown>,
          expiresAt: r['expires_at'] as number | null,
        })),
        objects: (await all<ManagedObjectRow>(`SELECT * FROM managed_objects ORDER BY kind ${C}, name ${C}`)).map(
          toManaged,
        ),
      };
    });
  }

  async import(dump: StoreDump, actor: string, now = Date.now()): Promise<void> {
    await this.db.transaction('import the store', async (tx) => {
      await tx.query(`SET LOCAL statement_timeout = 300000`);
      // Nothing else writes what the emptiness check reads until this commits (readers go on).
      await tx.query(`LOCK TABLE connectors, keys, users, secrets, managed_objects IN EXCLUSIVE MODE`);
      await this.assertEmpty(tx);
      await insertAll(
        tx,
        `INSERT INTO connectors (id, name, group_name, created_at, created_by, version, last_seen, revoked_at, deleted_at)
         SELECT v->>'id', v->>'name', v->>'group', (v->>'createdAt')::bigint, v->>'createdBy', v->>'version',
           (v->>'lastSeen')::bigint, (v->>'revokedAt')::bigint, (v->>'deletedAt')::bigint FROM $ROWS ORDER BY n`,
        dump.connectors,
      );
      await insertAll(
        tx,
        `INSERT INTO certificates (serial, connector_id, issued_at, not_after, revoked_at, kind)
         SELECT v->>'serial', v->>'connectorId', (v->>'issuedAt')::bigint, (v->>'notAfter')::bigint,
           (v->>'revokedAt')::bigint, v->>'kind' FROM $ROWS ORDER BY n`,
        dump.certificates,
      );
      await insertAll(
        tx,
        `INSERT INTO audit (at, actor, action, connector_id, details)
         SELECT (v->>'at')::bigint, v->>'actor', v->>'action', v->>'connectorId', v->'details' FROM $ROWS ORDER BY n`,
        dump.audit,
      );
      await insertAll(
        tx,
        `INSERT INTO keys (kid, purpose, material, created_at, retired_at)
         SELECT v->>'kid', v->>'purpose', v->>'material', (v->>'createdAt')::bigint, (v->>'retiredAt')::bigint
         FROM $ROWS ORDER BY n`,
        dump.keys,
      );
      await insertAll(
        tx,
        `INSERT INTO users (username, password_hash, email, name, groups, roles, totp_secret, created_at)
         SELECT v->>'username', v->>'passwordHash', v->>'email', v->>'name', v->'groups', v->'roles',
           v->>'totpSecret', (v->>'createdAt')::bigint FROM $ROWS ORDER BY n`,
        dump.users,
      );
      await insertAll(
        tx,
        `INSERT INTO totp_steps (username, last_step) SELECT v->>'username', (v->>'lastStep')::bigint FROM $ROWS ORDER BY n`,
        dump.totpSteps,
      );
      await insertAll(
        tx,
        `INSERT INTO secrets (name, value, updated_at)
         SELECT v->>'name', v->>'value', (v->>'updatedAt')::bigint FROM $ROWS ORDER BY n`,
        dump.secrets.map((s) => ({ ...s, updatedAt: now })),
      );
      await insertAll(
        tx,
        `INSERT INTO signins (at, request_id, kind, app, subject, ip, country, user_agent, result, reason, policies,
           risk, details)
         SELECT (v->>'at')::bigint, v->>'requestId', v->>'kind', v->>'app', v->>'subject', v->>'ip', v->>'country',
           v->>'userAgent', v->>'result', v->>'reason', v->'policies', v->>'risk', v->'details' FROM $ROWS ORDER BY n`,
        dump.signIns.map((e) => {
          const values = signInValues(e);
          return { ...e, userAgent: values[7], details: JSON.parse(values[12] as string) as unknown };
        }),
      );
      await insertAll(
        tx,
        `INSERT INTO risk_detections (at, subject, ip, app, type, level, signin_id, request_id, details)
         SELECT (v->>'at')::bigint, v->>'subject', v->>'ip', v->>'app', v->>'type', v->>'level', NULL,
           v->>'requestId', v->'details' FROM $ROWS ORDER BY n`,
        dump.riskDetections,
      );
      await insertAll(
        tx,
        `INSERT INTO user_risk (subject, dismissed_at, confirmed_at, by_actor)
         SELECT v->>'subject', (v->>'dismissedAt')::bigint, (v->>'confirmedAt')::bigint, v->>'by' FROM $ROWS ORDER BY n`,
        dump.userRiskStates,
      );
      await insertAll(
        tx,
        `INSERT INTO ended_provider_sessions (sid, ended_at, expires_at)
         SELECT v->>'sid', (v->>'endedAt')::bigint, (v->>'expiresAt')::bigint FROM $ROWS ORDER BY n`,
        dump.endedProviderSessions,
      );
      await insertAll(
        tx,
        `INSERT INTO sessions (sid, app, subject, created_at, expires_at, revoked_at, client_ip)
         SELECT v->>'sid', v->>'app', v->>'subject', (v->>'createdAt')::bigint, (v->>'expiresAt')::bigint,
           (v->>'revokedAt')::bigint, v->>'clientIp' FROM $ROWS ORDER BY n`,
        dump.sessions,
      );
      // The lookup fields follow from the payload, as upsert derives them (strings only).
      const field = (name: string) =>
        `CASE WHEN jsonb_typeof(v->'payload'->'${name}') = 'string' THEN v->'payload'->>'${name}' END`;
      await insertAll(
        tx,
        `INSERT INTO idp_artifacts (model, id, payload, expires_at, uid, user_code, grant_id)
         SELECT v->>'model', v->>'id', v->'payload', (v->>'expiresAt')::bigint,
           ${field('uid')}, ${field('userCode')}, ${field('grantId')} FROM $ROWS ORDER BY n`,
        dump.idpArtifacts,
      );
      // The spec travels as its JSON text: through jsonb it would lose its key order (and \u0000).
      await insertAll(
        tx,
        `INSERT INTO managed_objects (kind, name, spec, version, created_at, updated_at, updated_by)
         SELECT v->>'kind', v->>'name', (v->>'spec')::json, (v->>'version')::integer, (v->>'createdAt')::bigint,
           (v->>'updatedAt')::bigint, v->>'updatedBy' FROM $ROWS ORDER BY n`,
        dump.objects.map((o) => ({ ...o, spec: JSON.stringify(o.spec) })),
      );
      await writeAudit(tx, actor, 'store.import', null, countDump(dump), now);
      for (const topic of TOPICS) await tx.notify(topic);
    });
    this.changed();
  }

  private async assertEmpty(tx: Sql): Promise<void> {
    const { rows } = await tx.query<Record<string, number>>(
      `SELECT (SELECT COUNT(*) FROM connectors)::int AS connectors, (SELECT COUNT(*) FROM keys)::int AS keys,
         (SELECT COUNT(*) FROM users)::int AS users, (SELECT COUNT(*) FROM secrets)::int AS secrets,
         (SELECT COUNT(*) FROM managed_objects)::int AS objects`,
    );
    const found = Object.entries(rows[0]!).filter(([, n]) => n > 0);
    if (found.length > 0) {
      throw new ProxyctlError(
        'ERR_STORE',
        `the store (PostgreSQL schema ${this.db.target.schema}) already holds ${found.map(([kind, n]) => `${n} ${kind}`).join(', ')}; a store is imported only into an empty one`,
        { details: Object.fromEntries(found) },
      );
    }
  }
}
