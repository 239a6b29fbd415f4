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

/**
 * Small, complete responses (known length up to INLINE_MAX bytes, or no body)
 * come back on the control channel the request arrived on, in one binary frame:
 * u32 big-endian length of a JSON InlineResponseHead, the JSON, then the body.
 * Everything else streams over its own response call.
 */
export const INLINE_MAX = 64 * 1024;

export interface InlineResponseHead { type: 'response'; id: string; status: number; headers: HeaderPairs }

export function encodeInlineResponse(head: InlineResponseHead, body: Buffer): Buffer {
  // One allocation for the whole frame: this runs for most responses.
  const json = JSON.stringify(head);
  const n = Buffer.byteLength(json);
  const frame = Buffer.allocUnsafe(4 + n + body.length);
  frame.writeUInt32BE(n, 0);
  frame.write(json, 4);
  body.copy(frame, 4 + n);
  return frame;
}

export function decodeInlineResponse(frame: Buffer): { head: InlineResponseHead; body: Buffer } | undefined {
  if (frame.length < 4) return undefined;
  const n = frame.readUInt32BE(0);
  if (n > frame.length - 4 || n > 256 * 1024) return undefined;
  try {
    const head = JSON.parse(frame.toString('utf8', 4, 4 + n)) as InlineResponseHead;
    if (head?.type !== 'response' || typeof head.id !== 'string' || !Number.isInteger(head.status) || !Array.isArray(head.headers)) return undefined;
    for (const pair of head.headers) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return undefined;
    }
    return { head, body: frame.subarray(4 + n) };
  } catch {
    return undefined;
  }
}
