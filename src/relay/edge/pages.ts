// Every refusal the public listener gives is rendered here: a readable page (or
// JSON for API clients) naming the failed step, with the request id that also
// appears in the relay log. Internals never leak into a page.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ProxyctlError, isProxyctlError, type ErrorCode } from '../../errors.js';

interface PageText { title: string; step: string }

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

export function wantsJson(req: IncomingMessage): boolean {
  const accept = req.headers['accept'] ?? '';
  return /application\/json/i.test(accept) && !/text\/html/i.test(accept)
    || req.headers['x-requested-with'] !== undefined
    || req.headers['sec-fetch-mode'] === 'cors';
}

export function refusalOf(err: unknown): ProxyctlError {
  return isProxyctlError(err) ? err : new ProxyctlError('ERR_INTERNAL', 'internal error', { cause: err });
}

function bodyFor(req: IncomingMessage, e: ProxyctlError, requestId: string): { type: string; text: string } {
  const t = TEXT[e.code] ?? { title: e.status >= 500 ? 'Something went wrong' : 'Request refused', step: 'relay' };
  const message = e.code === 'ERR_INTERNAL' ? 'The relay hit an internal error.' : e.message;
  if (wantsJson(req)) {
    return { type: 'application/json; charset=utf-8', text: JSON.stringify({ error: { code: e.code, step: t.step, message, requestId, ...(e.details?.['app'] ? { app: e.details['app'] } : {}) } }) };
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${esc(t.title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}.meta{color:#666;font-size:.9rem}</style></head>
<body><h1>${esc(t.title)}</h1><p>${esc(message)}</p>
<p class="meta">Step: <code>${esc(t.step)}</code> · Status ${e.status} · Code <code>${esc(e.code)}</code><br>
Request id: <code>${esc(requestId)}</code> — quote it to your administrator.</p></body></html>
`;
  return { type: 'text/html; charset=utf-8', text: html };
}

export function sendRefusal(req: IncomingMessage, res: ServerResponse, err: unknown, requestId: string, extraHeaders: Record<string, string> = {}): void {
  const e = refusalOf(err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { type, text } = bodyFor(req, e, requestId);
  const challenge = e.status === 401 ? { 'www-authenticate': 'Bearer realm="proxyctl"' } : {};
  res.writeHead(e.status, {
    ...challenge,
    'content-type': type,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-request-id': requestId,
    'x-content-type-options': 'nosniff',
    ...extraHeaders,
  });
  res.end(req.method === 'HEAD' ? undefined : text);
}

/** The same refusal on a socket that asked to upgrade (no ServerResponse exists). */
export function sendRefusalOnSocket(req: IncomingMessage, socket: Duplex, err: unknown, requestId: string): void {
  const e = refusalOf(err);
  const { type, text } = bodyFor(req, e, requestId);
  socket.end(`HTTP/1.1 ${e.status} ${e.status >= 500 ? 'Unavailable' : 'Refused'}\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(text)}\r\n` +
    `cache-control: no-store\r\nx-request-id: ${requestId}\r\nconnection: close\r\n\r\n${text}`);
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
