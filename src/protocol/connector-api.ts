// The wire contract between relay and connector: HTTP paths, header names, JSON
// bodies, control-channel messages and close codes, each declared once with the
// validator the receiving side runs. Both sides import this; nothing else is shared.

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

/** Every call and channel the connector opens carries its version in this header. */
export const VERSION_HEADER = 'x-proxyctl-version';

/**
 * The relay↔connector protocol version: an integer raised only when a change breaks
 * the other side. Each side sends its own in PROTOCOL_HEADER (the connector on every
 * connector-API request and on the channel upgrade, the relay on every answer) and
 * refuses a peer outside PROTOCOL_SUPPORTED. A peer that sends none predates the
 * header and speaks version 1.
 */
export const PROTOCOL_VERSION = 2;
export const PROTOCOL_SUPPORTED: Readonly<{ min: number; max: number }> = { min: 1, max: 2 };
/**
 * Version 2 sends each queued request and each inline response as a binary frame
 * (binary-frames.ts) instead of JSON. A channel uses the lower of the two ends' versions,
 * so a version-1 peer keeps getting JSON requests and sending JSON-headed responses.
 */
export const PROTOCOL_BINARY_FRAMES = 2;

/** The version a channel speaks: the lower of this side's and the peer's (an unusable header: 1). */
export function agreedProtocol(raw: string | string[] | number | undefined | null): number {
  const peer = parsePeerProtocol(raw);
  return peer.ok ? Math.min(peer.version, PROTOCOL_VERSION) : PROTOCOL_IMPLIED;
}
export const PROTOCOL_HEADER = 'x-proxyctl-protocol';
/** The version a peer without PROTOCOL_HEADER speaks. */
export const PROTOCOL_IMPLIED = 1;

export type PeerProtocol = { ok: true; version: number; supported: boolean } | { ok: false; error: string };

/**
 * Reads a peer's PROTOCOL_HEADER as Node gives it (string, array, or joined with ", "
 * when repeated). Exactly one plain decimal integer is accepted; missing = version 1.
 */
export function parsePeerProtocol(raw: string | string[] | number | undefined | null): PeerProtocol {
  if (raw === undefined || raw === null) return { ok: true, version: PROTOCOL_IMPLIED, supported: true };
  const text = Array.isArray(raw) ? (raw.length === 1 ? raw[0]! : undefined) : String(raw);
  if (text === undefined) return { ok: false, error: `${PROTOCOL_HEADER} was sent ${(raw as string[]).length} times` };
  const v = text.trim();
  if (!/^[0-9]{1,6}$/.test(v))
    return {
      ok: false,
      error: `${PROTOCOL_HEADER} must be one decimal integer (found ${JSON.stringify(v.slice(0, 32))})`,
    };
  const version = Number(v);
  return { ok: true, version, supported: version >= PROTOCOL_SUPPORTED.min && version <= PROTOCOL_SUPPORTED.max };
}

/** The supported range as people read it: "1" or "1-3". */
export const supportedProtocols = (): string =>
  PROTOCOL_SUPPORTED.min === PROTOCOL_SUPPORTED.max
    ? String(PROTOCOL_SUPPORTED.min)
    : `${PROTOCOL_SUPPORTED.min}-${PROTOCOL_SUPPORTED.max}`;

/** The Upgrade token of the tunnel a connector opens for an upgraded (WebSocket) request. */
export const TUNNEL_PROTOCOL = 'proxyctl-tunnel';

/**
 * Response status and headers travel in these request headers of the response call. The
 * body is the call's body; the backend's trailers (HTTP/2 and gRPC: grpc-status,
 * grpc-message…) are the call's own HTTP/1.1 chunked trailers, read by the relay at its end
 * and filtered like headers (trailersForClient).
 */
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
    return isHeaderPairs(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Why a connector could not produce a response; the relay renders the page. */
export type BackendFailure =
  'ERR_BACKEND_UNREACHABLE' | 'ERR_BACKEND_TIMEOUT' | 'ERR_APP_UNKNOWN' | 'ERR_BACKEND_FAILED';

/** The body of requestPath(id, 'error'). */
export interface FailureReport {
  code: BackendFailure;
  message: string;
}

const BACKEND_FAILURES: ReadonlySet<string> = new Set<BackendFailure>([
  'ERR_BACKEND_UNREACHABLE',
  'ERR_BACKEND_TIMEOUT',
  'ERR_APP_UNKNOWN',
  'ERR_BACKEND_FAILED',
]);
/** Longer failure messages are cut, not refused: the text is for the user's error page. */
export const FAILURE_MESSAGE_MAX = 300;

/** A failure report as the relay accepts it; undefined when the code is not one of BackendFailure. */
export function parseFailureReport(body: unknown): FailureReport | undefined {
  if (!isRecord(body) || typeof body['code'] !== 'string' || !BACKEND_FAILURES.has(body['code'])) return undefined;
  const message =
    typeof body['message'] === 'string' ? body['message'].slice(0, FAILURE_MESSAGE_MAX) : 'the application failed';
  return { code: body['code'] as BackendFailure, message };
}

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

/** WebSocket close codes of the control channel; the connector acts on the relay's. */
export const CLOSE = {
  revoked: 4403,
  unknown: 4401,
  replaced: 4000,
  shutdown: 1001,
  /** Either end: the peer sent a message or frame this contract does not allow (RFC 6455 1002). */
  protocol: 1002,
} as const;

export interface RegisterRequest {
  csr: string;
  name: string;
  group: string;
  version: string;
  /**
   * Chosen at random by the connector for one registration attempt and saved with its key
   * before sending. A retry with the same key, CSR public key and token gets the same
   * certificate back (the first answer was lost) instead of making a second connector.
   * Absent from connectors before it: each request then registers anew.
   */
  idempotencyKey?: string;
}

/** An idempotency key as the relay accepts it: base64url, 32 to 128 characters (the connector sends 43). */
export const IDEMPOTENCY_KEY = /^[A-Za-z0-9_-]{32,128}$/;

export interface RegisterResponse {
  connectorId: string;
  certificate: string;
  caCertificate: string;
  serial: string;
  notAfter: string;
}

export interface IdentityInfo {
  issuer: string;
  cliClientId: string | undefined;
  adminAudience: string;
}

export interface RenewRequest {
  csr: string;
}
export type RenewResponse = RegisterResponse;

export interface ConnectorAppConfig {
  name: string;
  internalUrl: string;
  externalUrl: string;
  backendTimeoutMs: number;
  passHostHeader: boolean;
  /**
   * HTTP version to the backend: http1, h2c (HTTP/2 prior knowledge, cleartext) or h2
   * (HTTP/2 over TLS). Absent from relays before it: http1. A connector from before it
   * ignores the field and speaks HTTP/1.1 (the backend then fails the call: 502).
   */
  backendProtocol?: 'http1' | 'h2c' | 'h2';
}

/** One live relay replica: its id and its own connector API base URL. */
export interface ReplicaInfo {
  id: string;
  url: string;
}

export interface ConnectorConfig {
  /**
   * Content hash of what every replica answers alike: the settings, the group's apps and
   * the replica set. `relay` names the replica that answered, so it is left out: every
   * replica must announce and serve the same version, or a connector with channels to
   * several would pull again at each hello.
   */
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
  /**
   * Every live replica, sorted by id: the connector keeps `channels` control channels to
   * each. A relay from before replicas sends none; the connector then treats the relay it
   * registered with as the whole set. Checked on receipt with parseReplicaSet.
   */
  replicas: ReplicaInfo[];
}

/**
 * A change of the replica set is announced with `config-changed`, not a message of its own:
 * the set is part of the config version, so the one announcement covers it, and a connector
 * from before replicas (whose validator refuses unknown message types by closing the channel)
 * simply pulls a config whose extra field it ignores.
 */
export type RelayMessage =
  | { type: 'hello'; connectorId: string; channelId: string; configVersion: string }
  | { type: 'config-changed'; configVersion: string }
  | { type: 'revoked'; reason: string }
  | QueuedRequest
  | { type: 'cancel'; id: string };

/** The connector is shutting down or rolling its certificate: send nothing new on this channel. */
export type ConnectorMessage = { type: 'draining' };

/** Largest control-channel message either end accepts (the WebSocket maxPayload on both ends). */
export const MAX_CONTROL_MESSAGE = 1024 * 1024;

/**
 * Field limits of control messages: what the relay can produce (ids are UUIDs,
 * app names follow the config's name rule, methods are tokens), so a bad peer is
 * caught at the edge. A request's target and headers are bounded by the public
 * listener's header limits (up to 1 MiB), so only by MAX_CONTROL_MESSAGE here.
 */
export const MESSAGE_LIMITS = {
  id: 64,
  name: 63,
  version: 128,
  reason: 1024,
  method: 32,
  target: MAX_CONTROL_MESSAGE,
} as const;

export type Parsed<T> = { ok: true; message: T } | { ok: false; error: string };

/** Validates a text frame from the relay; the connector closes the channel with CLOSE.protocol on an error. */
export function parseRelayMessage(text: string): Parsed<RelayMessage> {
  if (text.length > MAX_CONTROL_MESSAGE) return bad('message too large');
  const v = parseJson(text);
  if (!isRecord(v)) return bad('not a JSON object');
  const L = MESSAGE_LIMITS;
  switch (v['type']) {
    case 'hello':
      return fields(v, { connectorId: L.id, channelId: L.id, configVersion: L.version }) ?? ok(v as RelayMessage);
    case 'config-changed':
      return fields(v, { configVersion: L.version }) ?? ok(v as RelayMessage);
    case 'revoked':
      return fields(v, { reason: L.reason }) ?? ok(v as RelayMessage);
    case 'cancel':
      return fields(v, { id: L.id }) ?? ok(v as RelayMessage);
    case 'request': {
      const problem = fields(v, { id: L.id, app: L.name, method: L.method, target: L.target });
      if (problem) return problem;
      if (typeof v['body'] !== 'boolean' || typeof v['upgrade'] !== 'boolean')
        return bad('request: body and upgrade must be booleans');
      if (!isHeaderPairs(v['headers'])) return bad('request: headers must be a list of [name, value] string pairs');
      return ok(v as unknown as QueuedRequest);
    }
    default:
      return bad(`unknown message type ${describe(v['type'])}`);
  }
}

/** Validates a text frame from a connector; the relay closes the channel with CLOSE.protocol on an error. */
export function parseConnectorMessage(text: string): Parsed<ConnectorMessage> {
  if (text.length > MAX_CONTROL_MESSAGE) return bad('message too large');
  const v = parseJson(text);
  if (!isRecord(v)) return bad('not a JSON object');
  if (v['type'] === 'draining') return ok({ type: 'draining' });
  return bad(`unknown message type ${describe(v['type'])}`);
}

/** More replicas than this is not a deployment but a hostile or broken relay. */
export const MAX_REPLICAS = 64;
/** Longest replica URL accepted (a base URL: scheme, host, port, perhaps a path). */
export const MAX_REPLICA_URL = 2048;

/**
 * Validates the `replicas` of a pulled config. undefined (a relay from before replicas) is
 * the unknown set; anything else must be a list of at most MAX_REPLICAS entries, each an id
 * (a non-empty string of at most MESSAGE_LIMITS.id, unique) and an https URL without
 * credentials. The result is sorted by id; the connector keeps its previous set on an error.
 */
export function parseReplicaSet(v: unknown): Parsed<ReplicaInfo[] | undefined> {
  if (v === undefined) return ok(undefined);
  if (!Array.isArray(v)) return bad(`replicas must be a list, found ${describe(v)}`);
  if (v.length > MAX_REPLICAS) return bad(`replicas lists ${v.length} entries, more than ${MAX_REPLICAS}`);
  const out: ReplicaInfo[] = [];
  const ids = new Set<string>();
  const origins = new Set<string>();
  for (const [i, r] of v.entries()) {
    if (!isRecord(r)) return bad(`replicas[${i}] must be an object, found ${describe(r)}`);
    const { id, url } = r;
    if (typeof id !== 'string' || id.length === 0 || id.length > MESSAGE_LIMITS.id)
      return bad(`replicas[${i}].id must be a string of 1 to ${MESSAGE_LIMITS.id} characters, found ${describe(id)}`);
    if (ids.has(id)) return bad(`replicas[${i}].id ${describe(id)} appears twice`);
    if (typeof url !== 'string' || url.length > MAX_REPLICA_URL)
      return bad(
        `replicas[${i}].url must be a string of at most ${MAX_REPLICA_URL} characters, found ${describe(url)}`,
      );
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return bad(`replicas[${i}].url is not a URL: ${describe(url)}`);
    }
    if (parsed.protocol !== 'https:')
      return bad(`replicas[${i}].url must be https, found ${describe(parsed.protocol)}`);
    if (parsed.username || parsed.password) return bad(`replicas[${i}].url must not carry credentials`);
    // Two ids at one address would be two sets of channels to one replica.
    if (origins.has(parsed.origin)) return bad(`replicas[${i}].url ${describe(parsed.origin)} appears twice`);
    ids.add(id);
    origins.add(parsed.origin);
    out.push({ id, url: parsed.href });
  }
  return ok(out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
}

const ok = <T>(message: T): Parsed<T> => ({ ok: true, message });
const bad = (error: string): { ok: false; error: string } => ({ ok: false, error });

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isHeaderPairs(v: unknown): v is HeaderPairs {
  return (
    Array.isArray(v) &&
    v.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string')
  );
}

/** Each named field must be a string of at most its limit (ids and names also non-empty). */
function fields(v: Record<string, unknown>, limits: Record<string, number>): { ok: false; error: string } | undefined {
  for (const [name, max] of Object.entries(limits)) {
    const f = v[name];
    if (typeof f !== 'string') return bad(`${String(v['type'])}: ${name} must be a string, found ${describe(f)}`);
    if (f.length > max) return bad(`${String(v['type'])}: ${name} is longer than ${max}`);
    if (f.length === 0 && name !== 'target' && name !== 'reason') return bad(`${String(v['type'])}: ${name} is empty`);
  }
  return undefined;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 40));
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

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

export interface InlineResponseHead {
  type: 'response';
  id: string;
  status: number;
  headers: HeaderPairs;
  /** The backend's trailers (HTTP/2, gRPC); a relay from before them ignores the field. */
  trailers?: HeaderPairs;
}

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
    if (
      head?.type !== 'response' ||
      typeof head.id !== 'string' ||
      head.id.length > MESSAGE_LIMITS.id ||
      !Number.isInteger(head.status)
    )
      return undefined;
    if (!isHeaderPairs(head.headers)) return undefined;
    if (head.trailers !== undefined && !isHeaderPairs(head.trailers)) return undefined;
    return { head, body: frame.subarray(4 + n) };
  } catch {
    return undefined;
  }
}
