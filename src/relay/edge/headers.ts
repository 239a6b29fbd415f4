// Header rules at the trust boundary. Requests: hop-by-hop headers (and any the
// client names in Connection) are dropped, identity headers can only come from
// the relay, forwarding headers are rebuilt. Responses: hop-by-hop dropped so
// the relay frames the body itself.
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderPairs } from '../../protocol/connector-api.js';
import { foreignHeaderKey, isForeignProxyHeader } from '../../net/foreign-headers.js';
import { addField } from '../../net/header-fields.js';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Never forwarded from the client: the relay or the connector sets these. */
const RELAY_OWNED = new Set([
  'host',
  'expect',
  'content-length',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-real-ip',
  'x-request-id',
  // W3C trace context: the relay's own hop replaces the client's (src/net/trace-context.ts).
  'traceparent',
  'tracestate',
]);

/** x-proxyctl-* in any case, and with underscores (some servers fold _ into -). */
export function isIdentityHeader(name: string): boolean {
  return /^x[-_]proxyctl[-_]/i.test(name);
}

const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(value: string | string[] | undefined): ReadonlySet<string> {
  if (value === undefined) return NO_TOKENS;
  const out = new Set<string>();
  for (const v of typeof value === 'string' ? [value] : value)
    for (const tok of v.split(',')) out.add(tok.trim().toLowerCase());
  return out;
}

export interface ForwardContext {
  clientAddress: string;
  /** Client-supplied X-Forwarded-For, already vetted against trusted proxies (or undefined). */
  trustedForwardedFor: string | undefined;
  host: string;
  requestId: string;
  upgrade: boolean;
  /** The Cookie header for the backend, the relay's own cookies already removed. */
  cookie?: string | undefined;
  /** The relay consumed the Authorization header (a bearer token for the app). */
  dropAuthorization?: boolean;
  /** Identity headers set by the relay (assertion, optional plain headers). */
  identity?: HeaderPairs;
  /** Other proxies' headers the app opted back in to (apps[].forwardHeaders, compared as foreignHeaderKey). */
  forwardHeaders?: readonly string[];
  /**
   * Keep the client's `te: trailers` (only that value): the app's backend speaks HTTP/2, where
   * gRPC requires it. HTTP/1.1 backends never get TE (hop-by-hop there).
   */
  teTrailers?: boolean;
  /** The relay's hop of the trace (continued from the client's, or new). */
  traceparent?: string;
  /** The client's tracestate, vetted; only with a valid incoming traceparent. */
  tracestate?: string | undefined;
}

const NONE: readonly string[] = [];

/** A comma-separated header (possibly repeated) names `token`, parameters aside. */
function hasToken(value: string | string[] | undefined, token: string): boolean {
  if (value === undefined) return false;
  for (const v of typeof value === 'string' ? [value] : value)
    for (const t of v.split(',')) if (t.split(';')[0]!.trim().toLowerCase() === token) return true;
  return false;
}

/** The header list the backend will see (the connector adds Host). */
export function requestHeadersForBackend(
  rawHeaders: readonly string[],
  headers: IncomingHttpHeaders,
  ctx: ForwardContext,
): HeaderPairs {
  const named = connectionTokens(headers['connection']);
  const out: HeaderPairs = [];
  const hasBody = headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // HTTP/2 pseudo-headers (:method, :path, :authority…) describe the request; the connector rebuilds them.
    if (name.charCodeAt(0) === 0x3a) continue;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || RELAY_OWNED.has(lower) || named.has(lower) || isIdentityHeader(lower)) continue;
    // Another proxy's identity or path override, sent by the client: dropped unless the app opted in.
    if (isForeignProxyHeader(lower) && !(ctx.forwardHeaders ?? NONE).includes(foreignHeaderKey(lower))) continue;
    // Underscore spellings of dropped headers could be folded back by the backend.
    if (lower.includes('_')) {
      const dashed = lower.replace(/_/g, '-');
      if (HOP_BY_HOP.has(dashed) || RELAY_OWNED.has(dashed) || named.has(dashed)) continue;
    }
    if (lower === 'cookie') continue; // filtered separately so the session cookie never leaves the relay
    if (lower === 'authorization' && ctx.dropAuthorization) continue;
    out.push([name, rawHeaders[i + 1]!]);
  }
  if (ctx.cookie) out.push(['cookie', ctx.cookie]);
  if (ctx.teTrailers && hasToken(headers['te'], 'trailers')) out.push(['te', 'trailers']);
  if (ctx.identity) out.push(...ctx.identity);
  if (ctx.upgrade) {
    out.push(['connection', 'upgrade']);
    if (headers['upgrade']) out.push(['upgrade', headers['upgrade']]);
  }
  if (hasBody && headers['content-length'] !== undefined && headers['transfer-encoding'] === undefined) {
    out.push(['content-length', headers['content-length']]);
  }
  const xff = ctx.trustedForwardedFor ? `${ctx.trustedForwardedFor}, ${ctx.clientAddress}` : ctx.clientAddress;
  out.push(
    ['x-forwarded-for', xff],
    ['x-forwarded-proto', 'https'],
    ['x-forwarded-host', ctx.host],
    ['x-request-id', ctx.requestId],
  );
  if (ctx.traceparent) out.push(['traceparent', ctx.traceparent]);
  if (ctx.tracestate) out.push(['tracestate', ctx.tracestate]);
  return out;
}

/** Backend response headers as a flat [name, value, …] list for writeHead. */
export function responseHeadersForClient(pairs: HeaderPairs, keepUpgrade = false): string[] {
  // Headers the backend names in Connection are hop-by-hop too; most responses name none.
  let named: Set<string> | undefined;
  for (const [k, v] of pairs)
    if (k.toLowerCase() === 'connection')
      for (const t of v.split(',')) (named ??= new Set()).add(t.trim().toLowerCase());
  const flat: string[] = [];
  for (const [name, value] of pairs) {
    const lower = name.toLowerCase();
    if (keepUpgrade && (lower === 'upgrade' || lower === 'connection')) {
      flat.push(name, value);
      continue;
    }
    // A pseudo-header name would set the HTTP/2 response's own (:status).
    if (HOP_BY_HOP.has(lower) || named?.has(lower) || lower.charCodeAt(0) === 0x3a) continue;
    flat.push(name, value);
  }
  return flat;
}

/**
 * Never taken from a backend's trailers: fields that frame, route, authenticate or describe
 * the response (RFC 9110 §6.5.1) only mean something in the header section.
 */
const NOT_TRAILERS = new Set([
  ...HOP_BY_HOP,
  'content-length',
  'content-type',
  'content-encoding',
  'content-range',
  'content-location',
  'host',
  'authorization',
  'www-authenticate',
  'set-cookie',
  'cookie',
  'cache-control',
  'expires',
  'age',
  'date',
  'location',
  'retry-after',
  'vary',
]);

export interface TrailerLimits {
  /** Names and values together, in bytes. */
  readonly maxBytes: number;
  readonly maxFields: number;
}

/**
 * A backend's trailers (gRPC's grpc-status, grpc-message…) as the user gets them, filtered
 * like headers: hop-by-hop, pseudo-headers and header-only fields dropped, names in lower
 * case, repeats kept in order. Over the limits the answer is 'too-large': the caller must
 * not end the response cleanly without them (a gRPC status would be lost).
 */
export function trailersForClient(
  pairs: HeaderPairs,
  limits: TrailerLimits,
): Record<string, string | string[]> | 'too-large' {
  const out: Record<string, string | string[]> = {};
  if (pairs.length > limits.maxFields) return 'too-large';
  let bytes = 0;
  for (const [name, value] of pairs) {
    bytes += name.length + value.length;
    if (bytes > limits.maxBytes) return 'too-large';
    const lower = name.toLowerCase();
    if (lower.charCodeAt(0) === 0x3a || NOT_TRAILERS.has(lower) || isIdentityHeader(lower)) continue;
    addField(out, lower, value);
  }
  return out;
}
