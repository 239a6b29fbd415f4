// The user-facing request path, top to bottom:
//   match app → relay-owned paths → authenticate → authorize → pick connector
//   → queue (forward) → the connector streams the answer back (data-plane.ts).
// Every refusal goes through pages.ts with the request id that is also logged.
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AppConfig, RelayConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { QueuedRequest } from '../../protocol/connector-api.js';
import { requestHeadersForBackend } from './headers.js';
import { refusalOf, sendRefusal, sendRefusalOnSocket } from './pages.js';
import type { RequestQueue } from '../connectors/queue.js';
import { hostName, routerFor, stripPort, type Route } from './router.js';
import { checkBackendView } from './path-guard.js';
import type { Authenticator, Authenticated } from '../auth/authenticator.js';
import { ASSERTION_HEADER, type AssertionSigner } from '../auth/assertion.js';
import { backendCookieHeader } from '../auth/session.js';
import { RateLimiter, TrustedProxies } from './limits.js';
import { canonicalAddress } from '../../net/address.js';
import { clientAddress, setClientAddress, trustedForwardedFor } from './client-address.js';
import type { HeaderPairs } from '../../protocol/connector-api.js';

export interface EdgeLimits {
  perIp: RateLimiter | undefined;
  perApp: RateLimiter | undefined;
  proxies: TrustedProxies;
}

export interface RequestPathDeps {
  config: () => RelayConfig;
  /** Rate limiters and trusted proxies for the config in force. */
  limits: () => EdgeLimits;
  queue: RequestQueue;
  auth: Authenticator;
  assertions: AssertionSigner;
  /** The port the public listener actually bound (Host headers may carry it). */
  publicPort: () => number;
  /** The embedded identity provider, served on its own host of this listener. */
  identityProvider: () => { host: string; handle(req: IncomingMessage, res: ServerResponse): void } | undefined;
  log: Logger;
}

const stripHostPort = (host: string | undefined): string => stripPort(host ?? '').toLowerCase();

function rateLimited(retryAfterS: number, who: string): ProxyctlError {
  return new ProxyctlError('ERR_RATE_LIMITED', `Too many requests for ${who}. Try again in ${retryAfterS} s.`, { status: 429, details: { retryAfterS } });
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

/**
 * The relay and the backend must agree on which app a path belongs to: only
 * origin-form targets, and no dot segments or backslashes (raw or encoded),
 * which a backend would resolve to a path outside the app's prefix.
 */
function checkTarget(target: string): void {
  if (!target.startsWith('/')) throw new ProxyctlError('ERR_BAD_REQUEST', 'Only origin-form request targets (/path) are accepted.', { status: 400 });
  const path = pathOf(target);
  if (/\\|%5c/i.test(path)) throw new ProxyctlError('ERR_BAD_REQUEST', 'Backslashes are not allowed in paths.', { status: 400 });
  // A dot segment needs a dot, raw or encoded: most paths skip the walk.
  if (!path.includes('.') && !path.includes('%')) return;
  for (const seg of path.split('/')) {
    const s = seg.replace(/%2e/gi, '.');
    if (s === '.' || s === '..') throw new ProxyctlError('ERR_BAD_REQUEST', 'Dot segments (. and ..) are not allowed in paths.', { status: 400 });
  }
}

/**
 * A claim as a header value a backend reads one way only: UTF-8, with every byte
 * outside visible ASCII, and `%` and `,`, percent-encoded (decodeURIComponent
 * undoes it). A comma in a group name can then never split it into two groups.
 */
export function headerValue(v: string): string {
  if (/^[\x21-\x24\x26-\x2b\x2d-\x7e]*$/.test(v)) return v;
  let out = '';
  for (const b of Buffer.from(v, 'utf8')) {
    out += b > 0x20 && b < 0x7f && b !== 0x25 && b !== 0x2c ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const ROBOTS = 'User-agent: *\nDisallow: /\n';

export function createRequestPath(deps: RequestPathDeps) {
  /** Connections answered with a close-refusal: nothing more is processed on them. */
  const closing = new WeakSet<object>();

  /** Step 1: which app. Unknown hosts learn nothing about what is published. */
  function matchApp(config: RelayConfig, req: IncomingMessage): Route {
    const target = req.url ?? '/';
    checkTarget(target);
    const host = hostName(req.headers.host ?? '');
    // The host the TLS handshake named (SNI) is the host the request is for. An IP
    // address there is not a name (RFC 6066 forbids it; some clients send one when
    // dialled by address): it counts as no SNI, which chose the relay-CA certificate.
    const sni = (req.socket as TLSSocket).servername;
    if (typeof sni === 'string' && sni && isIP(sni) === 0 && host !== sni.toLowerCase().replace(/\.$/, '')) {
      throw new ProxyctlError('ERR_MISDIRECTED', 'The Host header names a different host than the TLS connection.', { status: 421 });
    }
    const route = routerFor(config).match(host, target);
    if (!route) throw new ProxyctlError('ERR_APP_NOT_FOUND', 'No application is published at this address.', { status: 404 });
    checkBackendView(pathOf(target), route.rest, route.app, route.candidates);
    return route;
  }

  /** Step 0: who is the client, may it send now, is the request well-formed enough to route. */
  function admit(config: RelayConfig, req: IncomingMessage): void {
    const edge = deps.limits();
    const xff = req.headers['x-forwarded-for'];
    const { client, trustedChain } = edge.proxies.clientAddress(req.socket.remoteAddress ?? '', Array.isArray(xff) ? xff.join(', ') : xff);
    setClientAddress(req, client, trustedChain);
    const limited = edge.perIp?.take(client);
    if (limited && !limited.ok) throw rateLimited(limited.retryAfterS, 'your address');
    if (req.rawHeaders.length / 2 > config.limits.maxHeaders) {
      throw new ProxyctlError('ERR_HEADERS_TOO_LARGE', `Too many request headers (at most ${config.limits.maxHeaders}).`, { status: 431 });
    }
    let hosts = 0;
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
    }
    // Framing the relay does not trust: answer and close, never read what follows as another request.
    if (hosts > 1) throw new ProxyctlError('ERR_BAD_REQUEST', 'More than one Host header.', { status: 400, details: { close: true } });
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      // Only plain chunked framing: anything else could be read differently by the backend.
      throw new ProxyctlError('ERR_BAD_REQUEST', 'Only "Transfer-Encoding: chunked" is accepted.', { status: 501, details: { close: true } });
    }
  }

  /** Per-app rate and body size, before any work reaches a connector. */
  function appLimits(route: Route, req: IncomingMessage): void {
    const limited = deps.limits().perApp?.take(route.app.name);
    if (limited && !limited.ok) throw rateLimited(limited.retryAfterS, route.app.name);
    const max = route.app.maxBodyBytes;
    const length = req.headers['content-length'];
    if (max !== undefined && length !== undefined && Number(length) > max) {
      throw new ProxyctlError('ERR_BODY_TOO_LARGE', `The request body is ${length} bytes; ${route.app.name} accepts at most ${max}.`, { status: 413, details: { app: route.app.name } });
    }
  }

  /** The origin the user reached the app on; redirects are built from it, so its port is checked. */
  function originOf(route: Route, req: IncomingMessage): string {
    const host = (req.headers.host ?? '').toLowerCase();
    const m = /^(\[[0-9a-f:.]+\]|[^:]+)(?::(\d+))?$/.exec(host);
    const port = m?.[2];
    if (!m || (port !== undefined && port !== route.app.externalUrl.port && port !== String(deps.publicPort()) && !(port === '443' && route.app.externalUrl.port === ''))) {
      throw new ProxyctlError('ERR_BAD_REQUEST', 'The Host header names a port this application is not published on.', { status: 400 });
    }
    return `https://${m[1]}${port && port !== '443' ? `:${port}` : ''}`;
  }

  /**
   * Step 2: answered by the relay itself, never forwarded. Decided without a
   * promise for the paths that are not the relay's (nearly every request).
   */
  function relayOwned(req: IncomingMessage, res: ServerResponse, route: Route, origin: string, requestId: string): boolean | Promise<boolean> {
    const path = pathOf(req.url ?? '/');
    if (path === '/robots.txt' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': ROBOTS.length, 'cache-control': 'public, max-age=3600' });
      res.end(req.method === 'HEAD' ? undefined : ROBOTS);
      return true;
    }
    return deps.auth.handleReserved(req, res, route.app, origin, route.rest, requestId);
  }

  /** Step 3: preauthentication. Passthrough apps skip it (no promise); undefined = a sign-in redirect was sent. */
  function authenticate(req: IncomingMessage, res: ServerResponse | undefined, app: AppConfig, origin: string, requestId: string): 'anonymous' | Promise<Authenticated | 'anonymous' | undefined> {
    if (app.preauth === 'passthrough') return 'anonymous';
    return deps.auth.authenticate(req, res, app, origin, requestId);
  }

  /** Step 4: identity for the backend — a signed assertion, optionally plain headers. */
  async function identityHeaders(app: AppConfig, who: Authenticated): Promise<HeaderPairs> {
    const out: HeaderPairs = [[ASSERTION_HEADER, await deps.assertions.sign(app, who.identity, who.sid)]];
    if (app.identityHeaders) {
      out.push(['x-proxyctl-user', headerValue(who.identity.sub)]);
      if (who.identity.email) out.push(['x-proxyctl-email', headerValue(who.identity.email)]);
      out.push(['x-proxyctl-groups', who.identity.groups.map(headerValue).join(',')]);
    }
    return out;
  }

  /** Step 5: an open channel of the app's connector group, waiting briefly for one. */
  async function pickConnector(config: RelayConfig, app: AppConfig, signal: AbortSignal) {
    const channel = await deps.queue.acquire(app.connectorGroup, config.connectors.queueTimeoutMs, signal);
    if (!channel) {
      throw new ProxyctlError('ERR_NO_CONNECTOR',
        `No connector is available for ${app.name} (connector group "${app.connectorGroup}"). Try again shortly; if this persists, tell your administrator.`,
        { status: 503, details: { app: app.name } });
    }
    return channel;
  }

  /** Step 6: put the request on the channel; the data plane delivers the answer. */
  async function forward(config: RelayConfig, route: Route, req: IncomingMessage, requestId: string, target: { res?: ServerResponse; socket?: Duplex; head?: Buffer }, who: Authenticated | 'anonymous') {
    const identity = who === 'anonymous' ? undefined : await identityHeaders(route.app, who);
    // Usually a channel is open: take it without the machinery for waiting.
    let channel = deps.queue.pick(route.app.connectorGroup);
    if (!channel) {
      const abort = new AbortController();
      const onGone = () => abort.abort();
      (target.res ?? target.socket)!.once('close', onGone);
      channel = await pickConnector(config, route.app, abort.signal);
      (target.res ?? target.socket)!.off('close', onGone);
      if (abort.signal.aborted) return undefined;
    }
    const upgrade = target.socket !== undefined;
    const hasBody = !upgrade && (req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined);
    const ex = deps.queue.open({ id: requestId, app: route.app, channel, req, res: target.res, socket: target.socket, head: target.head, hasBody });
    const msg: QueuedRequest = {
      type: 'request',
      id: requestId,
      app: route.app.name,
      method: req.method ?? 'GET',
      target: route.rest,
      headers: requestHeadersForBackend(req.rawHeaders, req.headers, {
        // X-Forwarded-For: the vetted chain (from trusted proxies only), then the peer that connected to us.
        clientAddress: canonicalAddress(req.socket.remoteAddress ?? ''),
        trustedForwardedFor: trustedForwardedFor(req),
        host: req.headers.host ?? '',
        requestId,
        upgrade,
        cookie: backendCookieHeader(req.headers.cookie),
        dropAuthorization: who !== 'anonymous' && who.via === 'bearer',
        identity,
        forwardHeaders: route.app.forwardHeaders,
      }),
      body: hasBody,
      upgrade,
    };
    channel.send(msg);
    ex.armTimeout(route.app.backendTimeoutMs + 5_000);
    const userSide = target.res ?? target.socket!;
    userSide.once('close', () => {
      if (ex.state === 'done') return;
      // The user left: tell the connector so it aborts the backend call.
      channel.send({ type: 'cancel', id: requestId });
      ex.abortUser();
    });
    if (!hasBody && !upgrade) req.resume();
    return ex;
  }

  async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A request pipelined behind a close-refusal on this connection is never read:
    // the framing of everything after that refusal is untrusted.
    if (closing.has(req.socket)) return;
    const requestId = randomUUID();
    const started = performance.now();
    const config = deps.config();
    // Captured as decided by admit(): a destroyed request loses its socket.
    let client = req.socket?.remoteAddress;
    let app: string | undefined;
    res.once('close', () => {
      deps.log.info({
        request_id: requestId, app, method: req.method, status: res.statusCode, duration_ms: Math.round(performance.now() - started),
        client, completed: res.writableFinished,
      }, 'request');
    });
    try {
      admit(config, req);
      client = clientAddress(req);
      const idp = deps.identityProvider();
      if (idp && stripHostPort(req.headers.host) === idp.host) {
        app = '(identity provider)';
        idp.handle(req, res);
        return;
      }
      const route = matchApp(config, req);
      app = route.app.name;
      appLimits(route, req);
      const origin = originOf(route, req);
      const owned = relayOwned(req, res, route, origin, requestId);
      if (owned === true || (owned !== false && await owned)) return;
      const authenticated = authenticate(req, res, route.app, origin, requestId);
      const who = typeof authenticated === 'string' ? authenticated : await authenticated;
      if (!who) return;
      await forward(config, route, req, requestId, { res }, who);
    } catch (err) {
      const e = refusalOf(err);
      if (e.status >= 500 && e.code === 'ERR_INTERNAL') deps.log.error({ request_id: requestId, err: e.cause }, 'request failed');
      const close = e.details?.['close'] === true || e.code === 'ERR_BODY_TOO_LARGE';
      if (close) closing.add(req.socket);
      else req.resume();
      sendRefusal(req, res, e, requestId, {
        ...(e.code === 'ERR_RATE_LIMITED' ? { 'retry-after': String(e.details?.['retryAfterS'] ?? 1) } : {}),
        ...(close ? { connection: 'close' } : {}),
      });
    }
  }

  async function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (closing.has(socket)) {
      socket.destroy();
      return;
    }
    const requestId = randomUUID();
    const config = deps.config();
    socket.on('error', () => socket.destroy());
    try {
      if ((req.headers['upgrade'] ?? '').toLowerCase() !== 'websocket') {
        throw new ProxyctlError('ERR_BAD_REQUEST', 'Only WebSocket upgrades are supported.', { status: 400 });
      }
      admit(config, req);
      const route = matchApp(config, req);
      appLimits(route, req);
      const who = await authenticate(req, undefined, route.app, originOf(route, req), requestId);
      if (!who) throw new ProxyctlError('ERR_SIGNIN_REQUIRED', 'Sign in first.', { status: 401 });
      await forward(config, route, req, requestId, { socket, head }, who);
      deps.log.info({ request_id: requestId, app: route.app.name, method: req.method }, 'upgrade queued');
    } catch (err) {
      const e = refusalOf(err);
      deps.log.info({ request_id: requestId, status: e.status, code: e.code }, 'upgrade refused');
      sendRefusalOnSocket(req, socket, e, requestId);
    }
  }

  /** Whether a close-refusal was sent on this connection (the parser's own errors then stay unanswered). */
  const isClosing = (socket: object): boolean => closing.has(socket);

  return { handleRequest, handleUpgrade, isClosing };
}
