// The PostgreSQL schema, one entry per version: schema_migrations holds a row per
// entry applied. Append only; never edit an entry a released proxyctl has applied.
// The tables are SQLite's (sqlite/migrations.ts) with PostgreSQL types: BIGINT
// milliseconds (read back as numbers), JSONB for JSON, identity ids.

export const SCHEMA_VERSION = 4;

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE connectors (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     group_name TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     created_by TEXT NOT NULL,
     version TEXT,
     last_seen BIGINT,
     revoked_at BIGINT
   );
   -- A live connector's name is unique ignoring case, even when two replicas register at once.
   CREATE UNIQUE INDEX connectors_live_name ON connectors (lower(name)) WHERE revoked_at IS NULL;
   CREATE INDEX connectors_name ON connectors (name);
   CREATE INDEX connectors_lower_id ON connectors (lower(id));
   CREATE TABLE certificates (
     serial TEXT PRIMARY KEY,
     connector_id TEXT NOT NULL REFERENCES connectors (id),
     issued_at BIGINT NOT NULL,
     not_after BIGINT NOT NULL,
     revoked_at BIGINT,
     kind TEXT NOT NULL CHECK (kind IN ('register', 'renew'))
   );
   CREATE INDEX certificates_connector ON certificates (connector_id);
   CREATE TABLE audit (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     at BIGINT NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     connector_id TEXT,
     details JSONB NOT NULL
   );
   CREATE TABLE keys (
     kid TEXT PRIMARY KEY,
     purpose TEXT NOT NULL CHECK (purpose IN ('session', 'assertion')),
     material TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     retired_at BIGINT
   );
   CREATE TABLE signin_states (
     state TEXT PRIMARY KEY,
     app TEXT NOT NULL,
     nonce TEXT NOT NULL,
     verifier TEXT NOT NULL,
     return_to TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     step_up BOOLEAN NOT NULL DEFAULT false
   );
   CREATE INDEX signin_states_created ON signin_states (created_at);
   CREATE TABLE sessions (
     sid TEXT PRIMARY KEY,
     app TEXT NOT NULL,
     subject TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     expires_at BIGINT NOT NULL,
     revoked_at BIGINT,
     client_ip TEXT
   );
   CREATE INDEX sessions_expiry ON sessions (expires_at);
   CREATE TABLE users (
     username TEXT PRIMARY KEY,
     password_hash TEXT NOT NULL,
     email TEXT,
     name TEXT,
     groups JSONB NOT NULL DEFAULT '[]',
     roles JSONB NOT NULL DEFAULT '[]',
     totp_secret TEXT,
     created_at BIGINT NOT NULL
   );
   -- The last TOTP time step accepted per embedded-provider user (RFC 6238 §5.2: a code is good once).
   CREATE TABLE totp_steps (
     username TEXT PRIMARY KEY,
     last_step BIGINT NOT NULL
   );
   CREATE TABLE idp_artifacts (
     model TEXT NOT NULL,
     id TEXT NOT NULL,
     payload JSONB NOT NULL,
     expires_at BIGINT,
     uid TEXT,
     user_code TEXT,
     grant_id TEXT,
     PRIMARY KEY (model, id)
   );
   CREATE INDEX idp_artifacts_uid ON idp_artifacts (model, uid);
   CREATE INDEX idp_artifacts_user_code ON idp_artifacts (model, user_code);
   CREATE INDEX idp_artifacts_grant ON idp_artifacts (grant_id);
   CREATE INDEX idp_artifacts_expiry ON idp_artifacts (expires_at);
   CREATE TABLE signins (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     at BIGINT NOT NULL,
     request_id TEXT,
     app TEXT,
     subject TEXT,
     ip TEXT,
     country TEXT,
     user_agent TEXT,
     result TEXT NOT NULL,
     reason TEXT,
     policies JSONB NOT NULL DEFAULT '[]',
     risk TEXT
   );
   CREATE INDEX signins_at ON signins (at);
   -- Provider sessions (ID token sid) a user signed out of at the relay.
   CREATE TABLE ended_provider_sessions (
     sid TEXT PRIMARY KEY,
     ended_at BIGINT NOT NULL,
     expires_at BIGINT NOT NULL
   );
   CREATE INDEX ended_provider_sessions_expires ON ended_provider_sessions (expires_at);
   CREATE TABLE replicas (
     id TEXT PRIMARY KEY,
     connector_api_url TEXT NOT NULL,
     version TEXT NOT NULL,
     started_at BIGINT NOT NULL,
     heartbeat_at BIGINT NOT NULL
   );
   CREATE TABLE secrets (
     name TEXT PRIMARY KEY,
     value TEXT NOT NULL,
     updated_at BIGINT NOT NULL
   );`,
  // Sign-in analytics (SQLite's version 8): kind and details of each sign-in, risk
  // detections, administrators' decisions on users' risk, the SIEM export's cursors.
  `ALTER TABLE signins ADD COLUMN kind TEXT NOT NULL DEFAULT 'interactive';
   ALTER TABLE signins ADD COLUMN details JSONB NOT NULL DEFAULT '{}';
   UPDATE signins SET risk = 'none' WHERE risk IS NULL;
   CREATE INDEX signins_subject ON signins (subject, id);
   CREATE INDEX audit_at ON audit (at);
   CREATE TABLE risk_detections (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     at BIGINT NOT NULL,
     subject TEXT,
     ip TEXT,
     app TEXT,
     type TEXT NOT NULL,
     level TEXT NOT NULL CHECK (level IN ('low', 'medium', 'high')),
     signin_id BIGINT,
     request_id TEXT,
     details JSONB NOT NULL DEFAULT '{}'
   );
   CREATE INDEX risk_detections_subject ON risk_detections (subject, at);
   CREATE INDEX risk_detections_at ON risk_detections (at);
   CREATE TABLE user_risk (
     subject TEXT PRIMARY KEY,
     dismissed_at BIGINT,
     confirmed_at BIGINT,
     by_actor TEXT
   );
   CREATE TABLE export_cursors (
     sink TEXT PRIMARY KEY,
     cursor JSONB,
     owner TEXT,
     lease_until BIGINT NOT NULL DEFAULT 0
   );`,
  // The administration API (SQLite's version 9): deleted connectors, managed objects.
  // spec is json, not jsonb: the text is kept as given (key order, \u0000 in strings).
  `ALTER TABLE connectors ADD COLUMN deleted_at BIGINT;
   CREATE TABLE managed_objects (
     kind TEXT NOT NULL,
     name TEXT NOT NULL,
     spec JSON NOT NULL,
     version INTEGER NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     updated_by TEXT NOT NULL,
     PRIMARY KEY (kind, name)
   );`,
  // Idempotent registration (SQLite's version 10): a registration attempt's key, what a
  // retry must match, the certificate it gets again.
  `CREATE TABLE connector_registrations (
     idempotency_key TEXT PRIMARY KEY,
     connector_id TEXT NOT NULL REFERENCES connectors(id),
     public_key_sha256 TEXT NOT NULL,
     credential_sha256 TEXT NOT NULL,
     certificate TEXT NOT NULL,
     created_at BIGINT NOT NULL
   );`,
];
