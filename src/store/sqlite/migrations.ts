// The SQLite schema, one entry per version: PRAGMA user_version counts the entries
// applied. Append only; never edit an entry a released proxyctl has applied.

export const SCHEMA_VERSION = 10;

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE connectors (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     group_name TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     created_by TEXT NOT NULL,
     version TEXT,
     last_seen INTEGER,
     revoked_at INTEGER
   );
   CREATE TABLE certificates (
     serial TEXT PRIMARY KEY,
     connector_id TEXT NOT NULL REFERENCES connectors(id),
     issued_at INTEGER NOT NULL,
     not_after INTEGER NOT NULL,
     revoked_at INTEGER,
     kind TEXT NOT NULL CHECK (kind IN ('register', 'renew'))
   );
   CREATE INDEX certificates_connector ON certificates(connector_id);
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     connector_id TEXT,
     details TEXT NOT NULL
   );`,
  `CREATE TABLE keys (
     kid TEXT PRIMARY KEY,
     purpose TEXT NOT NULL CHECK (purpose IN ('session', 'assertion')),
     material TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     retired_at INTEGER
   );
   CREATE TABLE signin_states (
     state TEXT PRIMARY KEY,
     app TEXT NOT NULL,
     nonce TEXT NOT NULL,
     verifier TEXT NOT NULL,
     return_to TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     step_up INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE sessions (
     sid TEXT PRIMARY KEY,
     app TEXT NOT NULL,
     subject TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     revoked_at INTEGER,
     client_ip TEXT
   );
   CREATE INDEX sessions_expiry ON sessions(expires_at);
   CREATE TABLE users (
     username TEXT PRIMARY KEY,
     password_hash TEXT NOT NULL,
     email TEXT,
     name TEXT,
     groups TEXT NOT NULL DEFAULT '[]',
     roles TEXT NOT NULL DEFAULT '[]',
     totp_secret TEXT,
     created_at INTEGER NOT NULL
   );`,
  `CREATE TABLE idp_artifacts (
     model TEXT NOT NULL,
     id TEXT NOT NULL,
     payload TEXT NOT NULL,
     expires_at INTEGER,
     uid TEXT,
     user_code TEXT,
     grant_id TEXT,
     PRIMARY KEY (model, id)
   );
   CREATE INDEX idp_artifacts_uid ON idp_artifacts(model, uid);
   CREATE INDEX idp_artifacts_user_code ON idp_artifacts(model, user_code);
   CREATE INDEX idp_artifacts_grant ON idp_artifacts(grant_id);`,
  `CREATE TABLE signins (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     request_id TEXT,
     app TEXT,
     subject TEXT,
     ip TEXT,
     country TEXT,
     user_agent TEXT,
     result TEXT NOT NULL,
     reason TEXT,
     policies TEXT NOT NULL DEFAULT '[]',
     risk TEXT
   );
   CREATE INDEX signins_at ON signins(at);`,
  // The last TOTP time step accepted per embedded-provider user (RFC 6238 §5.2: a code is good once).
  `CREATE TABLE totp_steps (
     username TEXT PRIMARY KEY,
     last_step INTEGER NOT NULL
   );`,
  // Provider sessions (ID token `sid`) a user signed out of at the relay: bearer tokens
  // issued in them stop working. Kept as long as such a token can live.
  `CREATE TABLE ended_provider_sessions (
     sid TEXT PRIMARY KEY,
     ended_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL
   );
   CREATE INDEX ended_provider_sessions_expires ON ended_provider_sessions(expires_at);`,
  // Relays sharing the store (one row each, refreshed by heartbeat) and named shared
  // secrets (the relay CA, the embedded provider's keys), wrapped by the caller.
  `CREATE TABLE replicas (
     id TEXT PRIMARY KEY,
     connector_api_url TEXT NOT NULL,
     version TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     heartbeat_at INTEGER NOT NULL
   );
   CREATE TABLE secrets (
     name TEXT PRIMARY KEY,
     value TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );`,
  // Sign-in analytics: how the attempt came (kind) and what was learnt about it
  // (details: location, network, client, methods, trace id, detections); risk
  // detections, administrators' decisions on users' risk, and the SIEM export's
  // cursors with the lease that lets one replica at a time export a sink.
  `ALTER TABLE signins ADD COLUMN kind TEXT NOT NULL DEFAULT 'interactive';
   ALTER TABLE signins ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
   UPDATE signins SET risk = 'none' WHERE risk IS NULL;
   CREATE INDEX signins_subject ON signins(subject, id);
   CREATE INDEX audit_at ON audit(at);
   CREATE TABLE risk_detections (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     at INTEGER NOT NULL,
     subject TEXT,
     ip TEXT,
     app TEXT,
     type TEXT NOT NULL,
     level TEXT NOT NULL CHECK (level IN ('low', 'medium', 'high')),
     signin_id INTEGER,
     request_id TEXT,
     details TEXT NOT NULL DEFAULT '{}'
   );
   CREATE INDEX risk_detections_subject ON risk_detections(subject, at);
   CREATE INDEX risk_detections_at ON risk_detections(at);
   CREATE TABLE user_risk (
     subject TEXT PRIMARY KEY,
     dismissed_at INTEGER,
     confirmed_at INTEGER,
     by_actor TEXT
   );
   CREATE TABLE export_cursors (
     sink TEXT PRIMARY KEY,
     cursor TEXT,
     owner TEXT,
     lease_until INTEGER NOT NULL DEFAULT 0
   );`,
  // The administration API: a revoked connector can be deleted from the listings (its
  // row and certificates stay, so they stay revoked), and apps, policies, locations and
  // connector groups are published in the store (spec: the JSON text as given).
  `ALTER TABLE connectors ADD COLUMN deleted_at INTEGER;
   CREATE TABLE managed_objects (
     kind TEXT NOT NULL,
     name TEXT NOT NULL,
     spec TEXT NOT NULL,
     version INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     updated_by TEXT NOT NULL,
     PRIMARY KEY (kind, name)
   );`,
  // Idempotent registration: the key a connector chose for one registration attempt,
  // what a retry must match (the CSR's public key, the administrator token, both hashed)
  // and the certificate the retry gets again when the first answer was lost.
  `CREATE TABLE connector_registrations (
     idempotency_key TEXT PRIMARY KEY,
     connector_id TEXT NOT NULL REFERENCES connectors(id),
     public_key_sha256 TEXT NOT NULL,
     credential_sha256 TEXT NOT NULL,
     certificate TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );`,
];
