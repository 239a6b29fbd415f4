// The wire contract between relay and connector: HTTP paths, JSON bodies and
// control-channel messages. Both sides import these types; nothing else is shared.

export const API = {
  register: '/v1/connectors/register',
  config: '/v1/connector/config',
  renew: '/v1/connector/renew',
  channel: '/v1/connector/channel',
  /** Public: where administrators get tokens (used by `proxyctl login`). */
  identity: '/v1/identity',
  /** Per-request data plane: /v1/connector/requests/<id>/<body|response|error|upgrade>. */
  requests: '/v1/connector/requests/',
} as const;

export type DataAction = 'body' | 'response' | 'error' | 'upgrade';

export const requestPath = (id: string, action: DataAction): string => `${API.requests}${id}/${action}`;

/** Response status and headers travel in these request headers of the response call. */
export const RESPONSE_STATUS_HEADER = 'x-proxyctl-status';
export const RESPONSE_HEADERS_HEADER = 'x-proxyctl-headers';

/** Header pairs in order, duplicates kept (multiple Set-Cookie). */
export type HeaderPairs = [string, string][];

export function encodeHeaderPairs(pairs: HeaderPairs): string {
  return Buffer.from(JSON.stringify(pairs)).toString('base64url');
}

export function decodeHeaderPairs(text: string): HeaderPairs | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    if (!Array.isArray(v)) return undefined;
    for (const p of v) {
      if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || typeof p[1] !== 'string') return undefined;
    }
    return v as HeaderPairs;
  } catch {
    return undefined;
  }
}

/** Why a connector could not produce a response; the relay renders the page. */
export type BackendFailure = 'ERR_BACKEND_UNREACHABLE' | 'ERR_BACKEND_TIMEOUT' | 'ERR_APP_UNKNOWN' | 'ERR_BACKEND_FAILED';

export interface FailureReport { code: BackendFailure; message: string }

/** A user request queued on a control channel. Never carries the session cookie. */
export interface QueuedRequest {
  type: 'request';
  id: string;
  app: string;
  method: string;
  /** Path and query relative to the app's internal URL path (no leading slash). */
  target: string;
  headers: HeaderPairs;
  /** The body is fetched from the relay (requestPath(id, 'body')) when true. */
  body: boolean;
  upgrade: boolean;
}

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

export interface IdentityInfo { issuer: string; cliClientId: string | undefined; adminAudience: string }

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
  | { type: 'revoked'; reason: string }
  | QueuedRequest
  | { type: 'cancel'; id: string };

export type ConnectorMessage = { type: 'draining' };

export interface ApiErrorBody {
  error: { code: string; message: string; requestId: string };
}
