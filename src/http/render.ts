// The one renderer for everything the relay and its embedded provider refuse or
// show about sign-in: relay pages and JSON, raw-socket answers (parser errors,
// refused upgrades, connector channels), connector API errors, sign-out pages
// and the provider's own pages. One HTML escaper, one set of security headers,
// one rule that turns an unknown error into ERR_INTERNAL and hides it. A leaf:
// it imports only errors.ts, so relay/ and idp/ can both use it.
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ProxyctlError, isProxyctlError, type ErrorCode } from '../errors.js';
import { isGrpcContentType, isGrpcRequest, renderGrpcRefusal } from './grpc-refusal.js';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * - `page`: every refusal and every relay- or provider-rendered sign-in page: no store, no framing, no scripts.
 * - `provider`: responses oidc-provider renders itself (it sets its own caching; it may add script hashes).
 */
export type HeaderKind = 'page' | 'provider';

export interface HeaderOptions {
  /** A script allowed by nonce (the provider's auto-submitting logout form). */
  scriptNonce?: string;
  /**
   * Where forms may post (and, in Chromium, where the answering redirect may go). Omitted:
   * nowhere for `page`; null: no directive (the provider's sign-in POST ends in a redirect
   * chain back to an app host, which form-action would have to list).
   */
  formAction?: string | null;
}

/**
 * The security headers, one set for every kind: never framed (clickjacking of sign-in,
 * consent, sign-out and refusal pages), no sniffing, no referrer beyond our origin, and
 * no caching of anything that names a user or a sign-in (`page`).
 */
export function securityHeaders(kind: HeaderKind = 'page', opts: HeaderOptions = {}): Record<string, string> {
  const script = opts.scriptNonce ? `'nonce-${opts.scriptNonce}'` : "'none'";
  const action = opts.formAction === undefined ? (kind === 'provider' ? null : "'none'") : opts.formAction;
  const formAction = action === null ? '' : `; form-action ${action}`;
  const headers: Record<string, string> = {
    'content-security-policy': `default-src 'none'; style-src 'unsafe-inline'; script-src ${script}${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  };
  if (kind === 'page') headers['cache-control'] = 'no-store';
  return headers;
}

/** Script clients get JSON: an Accept without HTML, X-Requested-With, or a CORS fetch. */
export function wantsJson(req: IncomingMessage | undefined): boolean {
  if (!req) return false;
  const accept = req.headers['accept'] ?? '';
  return (
    (/application\/json/i.test(accept) && !/text\/html/i.test(accept)) ||
    req.headers['x-requested-with'] !== undefined ||
    req.headers['sec-fetch-mode'] === 'cors' ||
    // gRPC clients cannot follow a sign-in redirect: they get 401 (UNAUTHENTICATED to them).
    isGrpcContentType(req.headers['content-type'])
  );
}

/** The single rule for anything that is not a ProxyctlError: ERR_INTERNAL, its text hidden. */
export function refusalOf(err: unknown): ProxyctlError {
  return isProxyctlError(err) ? err : new ProxyctlError('ERR_INTERNAL', 'internal error', { cause: err });
}

interface PageText {
  title: string;
  step: string;
}

const TEXT: Partial<Record<ErrorCode, PageText>> = {
  ERR_APP_NOT_FOUND: { title: 'No application here', step: 'routing' },
  ERR_NO_CONNECTOR: { title: 'No connector available', step: 'connector' },
  ERR_CONNECTOR_LOST: { title: 'Connector went away', step: 'connector' },
  ERR_BACKEND_UNREACHABLE: { title: 'Application unreachable', step: 'backend' },
  ERR_BACKEND_TIMEOUT: { title: 'Application timed out', step: 'backend' },
  ERR_BACKEND_FAILED: { title: 'Application failed', step: 'backend' },
  ERR_APP_UNKNOWN: { title: 'Application not configured on the connector', step: 'connector' },
  ERR_BODY_TOO_LARGE: { title: 'Request too large', step: 'request' },
  ERR_BAD_REQUEST: { title: 'Bad request', step: 'request' },
  ERR_PATH_AMBIGUOUS: { title: 'Bad request', step: 'routing: ambiguous path' },
  ERR_NOT_FOUND: { title: 'Not found', step: 'relay' },
  ERR_METHOD_NOT_ALLOWED: { title: 'Method not allowed', step: 'relay' },
  ERR_RATE_LIMITED: { title: 'Too many requests', step: 'rate limit' },
  ERR_HEADERS_TOO_LARGE: { title: 'Request headers too large', step: 'request' },
  ERR_MISDIRECTED: { title: 'Wrong host for this connection', step: 'request' },
  ERR_REQUEST_TIMEOUT: { title: 'Request timed out', step: 'request' },
  ERR_SIGNIN_REQUIRED: { title: 'Sign-in required', step: 'sign-in' },
  ERR_SIGNIN_PROVIDER: { title: 'Sign-in failed at the identity provider', step: 'sign-in: provider error' },
  ERR_SIGNIN_STATE: { title: 'Sign-in could not be completed', step: 'sign-in: bad state' },
  ERR_SIGNIN_CODE: { title: 'Sign-in could not be completed', step: 'sign-in: code rejected' },
  ERR_SIGNIN_TOKEN: { title: 'Sign-in failed', step: 'sign-in: token invalid' },
  ERR_IDP_UNAVAILABLE: { title: 'Identity provider unavailable', step: 'sign-in: provider unreachable' },
  ERR_STORE_UNAVAILABLE: { title: 'Temporarily unavailable', step: 'relay: store unreachable' },
  ERR_SHUTTING_DOWN: { title: 'Temporarily unavailable', step: 'relay: shutting down' },
  ERR_NOT_ASSIGNED: { title: 'Access denied', step: 'authorization: not assigned' },
  ERR_POLICY_DENIED: { title: 'Access denied by policy', step: 'authorization: conditional access' },
  ERR_TOKEN_INVALID: { title: 'Token refused', step: 'sign-in: token invalid' },
  ERR_TOKEN_EXPIRED: { title: 'Token expired', step: 'sign-in: token invalid' },
  ERR_TOKEN_AUDIENCE: { title: 'Token refused', step: 'sign-in: token invalid' },
  ERR_TOKEN_ALG: { title: 'Token refused', step: 'sign-in: token invalid' },
  ERR_TOKEN_SIGNATURE: { title: 'Token refused', step: 'sign-in: token invalid' },
  ERR_TOKEN_ISSUER: { title: 'Token refused', step: 'sign-in: token invalid' },
  ERR_TOKEN_NOT_YET_VALID: { title: 'Token refused', step: 'sign-in: token invalid' },
  ERR_TOKEN_TYPE: { title: 'Token refused', step: 'sign-in: not an access token' },
};

export interface RenderOptions {
  /** Always JSON (the connector API); otherwise chosen by wantsJson(req). */
  json?: boolean;
  /** Headers of this answer only (retry-after, connection: close…). */
  headers?: Record<string, string>;
}

export interface Rendered {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** What a refusal tells the visitor. */
function visibleMessage(e: ProxyctlError): string {
  // Neither an internal error nor the store's connection trouble (its host, its error) is the visitor's business.
  return e.code === 'ERR_INTERNAL'
    ? 'internal error'
    : e.code === 'ERR_STORE_UNAVAILABLE'
      ? 'The relay cannot reach its database for a moment, so it cannot sign you in or register anything now. Signed-in sessions keep working. Try again shortly.'
      : e.message;
}

/** The whole answer for a refusal: status, headers (security set included) and body. */
export function renderDocument(
  req: IncomingMessage | undefined,
  err: unknown,
  requestId: string,
  opts: RenderOptions = {},
): Rendered {
  const e = refusalOf(err);
  const t = TEXT[e.code] ?? { title: e.status >= 500 ? 'Something went wrong' : 'Request refused', step: 'relay' };
  const message = visibleMessage(e);
  let type: string;
  let body: string;
  if (opts.json || wantsJson(req)) {
    const d = e.details;
    type = 'application/json; charset=utf-8';
    body = JSON.stringify({
      error: {
        code: e.code,
        step: t.step,
        message,
        requestId,
        ...(d?.['app'] ? { app: d['app'] } : {}),
        ...(d?.['policy'] ? { policy: d['policy'] } : {}),
        ...(d?.['reason'] ? { reason: d['reason'] } : {}),
      },
    });
  } else {
    type = 'text/html; charset=utf-8';
    body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${escapeHtml(t.title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}.meta{color:#666;font-size:.9rem}</style></head>
<body><h1>${escapeHtml(t.title)}</h1><p>${escapeHtml(message)}</p>
<p class="meta">Step: <code>${escapeHtml(t.step)}</code> · Status ${e.status} · Code <code>${escapeHtml(e.code)}</code><br>
Request id: <code>${escapeHtml(requestId)}</code> — quote it to your administrator.</p></body></html>
`;
  }
  return {
    status: e.status,
    headers: {
      ...(e.status === 401 ? { 'www-authenticate': 'Bearer realm="proxyctl"' } : {}),
      ...(e.code === 'ERR_RATE_LIMITED'
        ? { 'retry-after': String(typeof e.details?.['retryAfterS'] === 'number' ? e.details['retryAfterS'] : 1) }
        : {}),
      'content-type': type,
      'content-length': String(Buffer.byteLength(body)),
      ...securityHeaders('page'),
      'x-request-id': requestId,
      ...opts.headers,
    },
    body,
  };
}

/** A refusal on a response: HTML or JSON; a response already under way is cut instead. */
export function renderError(
  req: IncomingMessage | undefined,
  res: ServerResponse,
  err: unknown,
  requestId: string,
  opts: RenderOptions = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (isGrpcRequest(req) && renderGrpc(res, err, requestId, opts)) return;
  const d = renderDocument(req, err, requestId, opts);
  // HTTP/2 forbids connection-specific headers (RFC 9113 §8.2.2; Node throws or drops them):
  // a close-refusal there ends the stream instead (edge/request-path.ts).
  if (req?.httpVersionMajor === 2) for (const name of CONNECTION_SPECIFIC) delete d.headers[name];
  res.writeHead(d.status, d.headers);
  res.end(req?.method === 'HEAD' ? undefined : d.body);
}

/** A gRPC call's refusal: a gRPC status, with the same message, request id and headers as the page. */
function renderGrpc(res: ServerResponse, err: unknown, requestId: string, opts: RenderOptions): boolean {
  const e = refusalOf(err);
  const d = renderDocument(undefined, e, requestId, { ...opts, json: true });
  const message = visibleMessage(e);
  const extra: Record<string, string> = {};
  for (const name of ['www-authenticate', 'retry-after'])
    if (d.headers[name] !== undefined) extra[name] = d.headers[name];
  return renderGrpcRefusal(res, e, message, requestId, extra);
}

const CONNECTION_SPECIFIC = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

/** The same refusal where no ServerResponse exists (parser errors, upgrades): a whole HTTP/1.1 answer, then close. */
export function renderRaw(
  socket: Duplex,
  err: unknown,
  requestId: string,
  opts: RenderOptions & { req?: IncomingMessage } = {},
): void {
  const d = renderDocument(opts.req, err, requestId, opts);
  let head = `HTTP/1.1 ${d.status} ${STATUS_CODES[d.status] ?? 'Refused'}\r\n`;
  for (const [name, value] of Object.entries({ ...d.headers, connection: 'close' })) head += `${name}: ${value}\r\n`;
  socket.end(`${head}\r\n${opts.req?.method === 'HEAD' ? '' : d.body}`);
}

/** A page that is not a refusal (sign-out, signed-out, the provider's forms), with the same headers. */
export function sendPage(
  req: IncomingMessage | undefined,
  res: ServerResponse,
  status: number,
  html: string,
  opts: HeaderOptions & { headers?: Record<string, string> } = {},
): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    ...securityHeaders('page', opts),
    ...opts.headers,
  });
  res.end(req?.method === 'HEAD' ? undefined : html);
}

/** What the HTTP parser refused, as the error the renderer answers with. */
export function parserRefusal(code: string | undefined): ProxyctlError {
  const why = `the request was refused before routing (${code ?? 'parse error'})`;
  if (code === 'HPE_HEADER_OVERFLOW')
    return new ProxyctlError('ERR_HEADERS_TOO_LARGE', `Request headers too large: ${why}.`, { status: 431 });
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return new ProxyctlError('ERR_REQUEST_TIMEOUT', `Request timed out: ${why}.`, { status: 408 });
  return new ProxyctlError('ERR_BAD_REQUEST', `Bad request: ${why}.`, { status: 400 });
}
