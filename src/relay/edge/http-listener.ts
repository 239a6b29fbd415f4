// The plain-HTTP listener (`public.httpListen`): it answers ACME HTTP-01 challenges
// (/.well-known/acme-challenge/<token>) from the tokens the ACME manager has pending,
// and sends every other request to HTTPS with 308 (same host, path and query). It
// never proxies anything. Same header/request timeouts, header size limit and
// per-address connection cap as the HTTPS listener; a bad Host header gets 400.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ProxyctlError } from '../../errors.js';
import { parserRefusal, renderError, renderRaw, securityHeaders } from '../../http/render.js';
import type { Logger } from '../../log.js';
import { ConnectionCap } from './limits.js';

export interface HttpListenerLimits {
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly bodyIdleTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly connectionsPerIp: number;
}

export interface HttpListenerOptions {
  limits: HttpListenerLimits;
  /** The port users reach the HTTPS listener on (443 is left out of redirect URLs). */
  httpsPort: () => number;
  /** The key authorization of a pending HTTP-01 challenge for `token` on `host`, if any. */
  challenge: (token: string, host: string) => string | undefined;
  log: Logger;
}

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
/** ACME tokens are base64url (RFC 8555 §8.3: at least 128 bits of entropy). */
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/;
/** A DNS name (labels of letters, digits, dashes; optional trailing dot) or a bracketed IPv6 literal, then an optional port. */
const HOST =
  /^(?:((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.?)|(\[[0-9a-f:.]+\]))(?::(\d{1,5}))?$/;

/** The host name of a Host header (lower case, no port, no trailing dot), or undefined when it is not one. */
export function hostOf(header: string | undefined): string | undefined {
  if (header === undefined || header.length === 0 || header.length > 260) return undefined;
  const m = HOST.exec(header.toLowerCase());
  if (!m) return undefined;
  if (m[3] !== undefined && Number(m[3]) > 65535) return undefined;
  if (m[2] !== undefined) {
    try {
      // The URL parser is the judge of an IPv6 literal.
      return new URL(`http://${m[2]}/`).host;
    } catch {
      return undefined;
    }
  }
  const name = m[1]!.replace(/\.$/, '');
  return name.length > 253 ? undefined : name;
}

export function createHttpListener(opts: HttpListenerOptions): Server {
  const l = opts.limits;
  const server = createServer({
    headersTimeout: l.headersTimeoutMs,
    connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(l.headersTimeoutMs / 2))),
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.idleTimeoutMs,
    maxHeaderSize: l.maxHeaderBytes,
    noDelay: true,
  });
  server.setTimeout(Math.max(l.idleTimeoutMs, l.bodyIdleTimeoutMs) + 5_000, (socket) => socket.destroy());
  new ConnectionCap(l.connectionsPerIp, (address) =>
    opts.log.warn({ client: address }, 'too many connections from one address to the HTTP listener; refused'),
  ).attach(server);
  server.on('request', (req, res) => answer(opts, req, res));
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    renderRaw(socket, parserRefusal(err.code), randomUUID());
  });
  return server;
}

function answer(opts: HttpListenerOptions, req: IncomingMessage, res: ServerResponse): void {
  const requestId = randomUUID();
  // Nothing here reads a body: a request that sent one gets its answer and the connection closes,
  // so the body is never parsed as the next request nor drained at our cost.
  const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody) res.shouldKeepAlive = false;
  // Node keeps the first of several Host headers; a request with two is refused (RFC 9112 §3.2).
  const hosts = req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'host').length;
  const host = hosts === 1 ? hostOf(req.headers.host) : undefined;
  const target = req.url ?? '';
  if (host === undefined || !target.startsWith('/')) {
    const why = host === undefined ? 'a missing or malformed Host header' : 'a request target that is not a path';
    opts.log.info({ request_id: requestId, client: req.socket.remoteAddress, status: 400 }, `HTTP listener: ${why}`);
    return renderError(
      req,
      res,
      new ProxyctlError('ERR_BAD_REQUEST', `Bad request: ${why}.`, { status: 400 }),
      requestId,
    );
  }
  if ((req.method === 'GET' || req.method === 'HEAD') && target.startsWith(CHALLENGE_PREFIX)) {
    const token = target.slice(CHALLENGE_PREFIX.length);
    const keyAuthorization = TOKEN.test(token) ? opts.challenge(token, host) : undefined;
    opts.log.info(
      { request_id: requestId, host, client: req.socket.remoteAddress, status: keyAuthorization ? 200 : 404 },
      'ACME HTTP-01 challenge request',
    );
    const body = keyAuthorization ?? 'no such challenge\n';
    res.writeHead(keyAuthorization ? 200 : 404, {
      'content-type': keyAuthorization ? 'application/octet-stream' : 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-request-id': requestId,
    });
    return void res.end(req.method === 'HEAD' ? undefined : body);
  }
  const port = opts.httpsPort();
  // Bytes a header may not carry (the parser lets some through in the target) are percent-encoded.
  const path = target.replace(/[^\x21-\x7e]/g, (c) => encodeURIComponent(c));
  const location = `https://${host}${port === 443 ? '' : `:${port}`}${path}`;
  res.writeHead(308, {
    location,
    'content-length': 0,
    ...securityHeaders('page'),
    'x-request-id': requestId,
  });
  res.end();
}
