// The wire contract between relay and connector: HTTP paths, JSON bodies and
// control-channel messages. Both sides import these types; nothing else is shared.

export const API = {
  register: '/v1/connectors/register',
  config: '/v1/connector/config',
  renew: '/v1/connector/renew',
  channel: '/v1/connector/channel',
} as const;

/** WebSocket close codes the relay uses; the connector acts on them. */
export const CLOSE = {
  revoked: 4403,
  unknown: 4401,
  replaced: 4000,
  shutdown: 1001,
} as const;

export interface RegisterRequest {
  csr: string;
  name: string;
  group: string;
  version: string;
}

export interface RegisterResponse {
  connectorId: string;
  certificate: string;
  caCertificate: string;
  serial: string;
  notAfter: string;
}

export interface RenewRequest { csr: string }
export type RenewResponse = RegisterResponse;

export interface ConnectorAppConfig {
  name: string;
  internalUrl: string;
  externalUrl: string;
  backendTimeoutMs: number;
  passHostHeader: boolean;
}

export interface ConnectorConfig {
  /** Content hash: changes whenever anything below changes. */
  version: string;
  connectorId: string;
  name: string;
  group: string;
  relay: { connectorApiUrl: string };
  channels: number;
  heartbeatIntervalMs: number;
  configRefreshMs: number;
  renewAfterMs: number;
  certificate: { serial: string; issuedAt: string; notAfter: string };
  apps: ConnectorAppConfig[];
}

export type RelayMessage =
  | { type: 'hello'; connectorId: string; channelId: string; configVersion: string }
  | { type: 'config-changed'; configVersion: string }
  | { type: 'revoked'; reason: string };

export type ConnectorMessage = { type: 'draining' };

export interface ApiErrorBody {
  error: { code: string; message: string; requestId: string };
}
