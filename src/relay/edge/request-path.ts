// The user-facing request path: one ordered list of steps, the same for HTTP
// requests and WebSocket upgrades (see `steps` below):
//   admit → match app → app limits → relay-owned paths → authenticate →
//   authorize → identity for the backend → pick connector → forward,
// then the connector streams the answer back (data-plane.ts). A request takes
// the relay state (config and all built from it) once, at admit, and uses that
// snapshot to the end. Every refusal goes through the one renderer with the
// request id that is also logged.
import { randomUUID } from 'node:crypto';
import { constants } from 'node:http2';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AppConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { QueuedRequest } from '../../protocol/connector-api.js';
import { requestFits } from '../../protocol/binary-frames.js';
import { requestHeadersForBackend } from './headers.js';
import { refusalOf, renderError, renderRaw, wantsJson } from '../../http/render.js';
import type { Channel } from '../connectors/channels.js';
import type { RequestQueue } from '../connectors/queue.js';
import { hostName, routerFor, stripPort, type Route } from './router.js';
import { checkBackendView } from './path-guard.js';
import type { Authenticated, Authentication } from '../auth/authenticate.js';
import type { Verdict } from '../auth/authorize.js';
import type { RelayOwned } from '../auth/relay-owned.js';
import type { SignIn } from '../auth/sign-in.js';
import type { RelayState } from '../state.js';
import { ASSERTION_HEADER, type AssertionSigner } from '../auth/assertion.js';
import { backendCookieHeader } from '../auth/session.js';
import { canonicalAddress } from '../../net/address.js';
import { clientAddress, setClientAddress, trustedForwardedFor } from './client-address.js';
import type { HeaderPairs } from '../../protocol/connector-api.js';
import { continueTrace, type TraceContext } from '../../net/trace-context.js';
import { http2StreamOf, isHttp2 } from '../../http/http2-compat.js';
import type { RelayMetrics } from '../admin/metrics.js';
import type { Clock } from '../../clock.js';

export type { EdgeLimits } from '../state.js';

/** The part of the relay state the request path reads (tests pass a smaller one). */
export type PathState = Pick<RelayState, 'config' | 'edge' | 'generation' | 'verifier' | 'oidc' | 'authorizer'> & {
  /** The embedded identity provider, served on its own host of this listener. */
  readonly idp: { host: string; handle(req: IncomingMessage, res: ServerResponse): void } | undefined;
};

export interface RequestPathDeps {
  /** The relay state in force; each request reads it once, at admit. */
  state: () => PathState;
  queue: RequestQueue;
  authentication: Authentication;
  signIn: SignIn;
  relayOwned: RelayOwned;
  assertions: AssertionSigner;
  /** The port the public listener actually bound (Host headers may carry it). */
  publicPort: () => number;
  log: Logger;
  /** Requests by app and status class, latency and queue wait (absent: nothing is counted). */
  metrics?: RelayMetrics;
  /** The console's app, answered in-process instead of through a connector (admin.consoleHost). */
  console?: InProcessApp;
}

/** An app the relay answers itself once the request is signed in and allowed. */
export interface InProcessApp {
  readonly name: string;
  /** Requests that carry their own credentials (the API's bearer tokens): no session sign-in. */
  ownAuthentication(req: IncomingMessage): boolean;
  answerOwn(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void>;
  answer(
    req: IncomingMessage,
    res: ServerResponse,
    who: Authenticated,
    origin: string,
    requestId: string,
  ): Promise<void>;
}

/** One request or upgrade on its way through the steps, with the state it took at admit. */
interface Pass {
  readonly req: IncomingMessage;
  /** HTTP requests; upgrades have `socket` and `head` instead. */
  readonly res: ServerResponse | undefined;
  readonly socket: Duplex | undefined;
  readonly head: Buffer | undefined;
  readonly requestId: string;
  /** The request's W3C trace (continued or started at admit); `trace.traceId` goes in logs and sign-in rows. */
  readonly trace: TraceContext;
  readonly state: PathState;
  app: string | undefined;
}

const stripHostPort = (host: string | undefined): string => stripPort(host ?? '').toLowerCase();

function rateLimited(retryAfterS: number, who: string): ProxyctlError {
  return new ProxyctlError('ERR_RATE_LIMITED', `Too many requests for ${who}. Try again in ${retryAfterS} s.`, {
    status: 429,
    details: { retryAfterS },
  });
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
  if (!target.startsWith('/'))
    throw new ProxyctlError('ERR_BAD_REQUEST', 'Only origin-form request targets (/path) are accepted.', {
      status: 400,
    });
  const path = pathOf(target);
  if (/\\|%5c/i.test(path))
    throw new ProxyctlError('ERR_BAD_REQUEST', 'Backslashes are not allowed in paths.', { status: 400 });
  // A dot segment needs a dot, raw or encoded: most paths skip the walk.
  if (!path.includes('.') && !path.includes('%')) return;
  for (const seg of path.split('/')) {
    const s = seg.replace(/%2e/gi, '.');
    if (s === '.' || s === '..')
      throw new ProxyctlError('ERR_BAD_REQUEST', 'Dot segments (. and ..) are not allowed in paths.', { status: 400 });
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
    out +=
      b > 0x20 && b < 0x7f && b !== 0x25 && b !== 0x2c
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * A request goes to the connector as one control message, which neither end takes above
 * MAX_CONTROL_MESSAGE (UTF-8 bytes). Headers the listener accepted (maxHeaderBytes goes up to
 * 1 MiB) plus identity headers can exceed it (after JSON escaping on a protocol-1 channel);
 * such a request is refused here (431) rather than sent, which would close the channel and
 * fail every request on it. Typical requests are far below the bound and skip the count.
 */
function checkMessageSize(msg: QueuedRequest, binary: boolean): void {
  if (requestFits(msg, binary)) return;
  throw new ProxyctlError('ERR_HEADERS_TOO_LARGE', 'The request headers are too large to forward.', {
    status: 431,
    details: { app: msg.app },
  });
}

/** Where a request's trace is kept: a property, cheaper per request than a WeakMap entry. */
const TRACE = Symbol('proxyctl.trace');
type Traced = IncomingMessage & { [TRACE]?: TraceContext };

/** The W3C trace id of a request on the public listener (sign-in rows record it); null for any other. */
export function traceIdOf(req: IncomingMessage): string | null {
  return (req as Traced)[TRACE]?.traceId ?? null;
}

const ANONYMOUS = 'anonymous';
type Who = Authenticated | typeof ANONYMOUS;

export function createRequestPath(deps: RequestPathDeps) {
  /** Connections answered with a close-refusal: nothing more is processed on them. */
  const closing = new WeakSet<object>();
  /** Responses not yet closed, for the drain: it waits for them and ends their connections. */
  const inFlight = new Set<ServerResponse>();
  const idleWaiters = new Set<() => void>();
  /** Set by drain() (SIGTERM): requests from then on are refused, every connection closes after its answer. */
  let draining = false;

  /**
   * The steps, in order, for requests and upgrades alike. A step throws to refuse;
   * `true` from relayOwned means it answered. Up to routing the steps run without
   * a promise: a close-refusal must mark the connection before the parser hands
   * over a request pipelined behind it (smuggling.test.ts). Later steps that can
   * decide without a promise do (nearly every request is not relay-owned;
   * passthrough apps skip authentication).
   */
  function steps(p: Pass): Promise<void> | undefined {
    admit(p);
    if (identityProvider(p)) return undefined;
    const route = matchApp(p);
    appLimits(p, route);
    const origin = originOf(route, p.req);
    const owned = relayOwned(p, route, origin);
    if (owned === true) return undefined;
    return stepsAfterRouting(p, route, origin, owned);
  }

  async function stepsAfterRouting(
    p: Pass,
    route: Route,
    origin: string,
    owned: false | Promise<boolean>,
  ): Promise<void> {
    if (owned !== false && (await owned)) return;
    const inProcess = deps.console?.name === route.app.name ? deps.console : undefined;
    if (inProcess) {
      if (!p.res) throw new ProxyctlError('ERR_NOT_FOUND', 'The console takes no upgrades.', { status: 404 });
      if (inProcess.ownAuthentication(p.req)) return inProcess.answerOwn(p.req, p.res, p.requestId);
    }
    const found = authenticate(p, route);
    const who = found === ANONYMOUS ? found : await found;
    if (who === undefined) return signInFirst(p, route, origin);
    const verdict = authorize(p, route, who);
    if (verdict.result !== 'allow') return refuseOrStepUp(p, route, origin, verdict);
    if (inProcess && who !== ANONYMOUS) return inProcess.answer(p.req, p.res!, who, origin, p.requestId);
    const identity = who === ANONYMOUS ? undefined : await identityHeaders(route.app, who);
    let channel = deps.queue.pick(route.app.connectorGroup);
    if (channel) deps.metrics?.queued(route.app.name, 0);
    else channel = await pickConnector(p, route.app);
    if (channel) forward(p, route, who, identity, channel);
  }

  /** Admit: who is the client, may it send now, is the request well-formed enough to route. */
  function admit(p: Pass): void {
    const { req, state } = p;
    if (p.socket && (req.headers['upgrade'] ?? '').toLowerCase() !== 'websocket') {
      throw new ProxyctlError('ERR_BAD_REQUEST', 'Only WebSocket upgrades are supported.', { status: 400 });
    }
    const xff = req.headers['x-forwarded-for'];
    const { client, trustedChain } = state.edge.proxies.clientAddress(
      req.socket.remoteAddress ?? '',
      Array.isArray(xff) ? xff.join(', ') : xff,
    );
    setClientAddress(req, client, trustedChain);
    const limited = state.edge.perIp?.take(client);
    if (limited && !limited.ok) throw rateLimited(limited.retryAfterS, 'your address');
    const { limits } = state.config;
    if (isHttp2(req)) hostFromAuthority(req);
    // One pass: header fields (HTTP/2's pseudo-headers :method, :path… are not fields) and Host lines.
    let fields = 0;
    let hosts = 0;
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = req.rawHeaders[i]!;
      if (name.charCodeAt(0) === 0x3a) continue;
      fields++;
      if (name.length === 4 && name.toLowerCase() === 'host') hosts++;
    }
    if (fields > limits.maxHeaders) {
      throw new ProxyctlError('ERR_HEADERS_TOO_LARGE', `Too many request headers (at most ${limits.maxHeaders}).`, {
        status: 431,
      });
    }
    // Framing the relay does not trust: answer and close, never read what follows as another request.
    if (hosts > 1)
      throw new ProxyctlError('ERR_BAD_REQUEST', 'More than one Host header.', {
        status: 400,
        details: { close: true },
      });
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && te.trim().toLowerCase() !== 'chunked') {
      // Only plain chunked framing: anything else could be read differently by the backend.
      throw new ProxyctlError('ERR_BAD_REQUEST', 'Only "Transfer-Encoding: chunked" is accepted.', {
        status: 501,
        details: { close: true },
      });
    }
  }

  /**
   * HTTP/2 names the host in `:authority` (RFC 9113 §8.3.1); the steps read `Host`.
   * A request with both must name one host in both.
   */
  function hostFromAuthority(req: IncomingMessage): void {
    const authority = req.headers[':authority'];
    if (typeof authority !== 'string') return;
    const host = req.headers.host;
    if (host === undefined) req.headers.host = authority;
    else if (host.toLowerCase() !== authority.toLowerCase())
      throw new ProxyctlError('ERR_BAD_REQUEST', 'The Host header and :authority name different hosts.', {
        status: 400,
      });
  }

  /** The embedded identity provider's own host (requests only; it takes no upgrades). */
  function identityProvider(p: Pass): boolean {
    const idp = p.state.idp;
    if (!idp || stripHostPort(p.req.headers.host) !== idp.host) return false;
    if (!p.res) throw new ProxyctlError('ERR_NOT_FOUND', 'The identity provider takes no upgrades.', { status: 404 });
    p.app = '(identity provider)';
    idp.handle(p.req, p.res);
    return true;
  }

  /** Which app. Unknown hosts learn nothing about what is published. */
  function matchApp(p: Pass): Route {
    const { req } = p;
    const target = req.url ?? '/';
    checkTarget(target);
    const host = hostName(req.headers.host ?? '');
    // The host the TLS handshake named (SNI) is the host the request is for. An IP
    // address there is not a name (RFC 6066 forbids it; some clients send one when
    // dialled by address): it counts as no SNI, which chose the relay-CA certificate.
    const sni = (req.socket as TLSSocket).servername;
    if (typeof sni === 'string' && sni && isIP(sni) === 0 && host !== sni.toLowerCase().replace(/\.$/, '')) {
      throw new ProxyctlError('ERR_MISDIRECTED', 'The Host header names a different host than the TLS connection.', {
        status: 421,
      });
    }
    const route = routerFor(p.state.config).match(host, target);
    if (!route)
      throw new ProxyctlError('ERR_APP_NOT_FOUND', 'No application is published at this address.', { status: 404 });
    checkBackendView(pathOf(target), route.rest, route.app, route.candidates);
    p.app = route.app.name;
    return route;
  }

  /** Per-app rate and body size, before any work reaches a connector. */
  function appLimits(p: Pass, route: Route): void {
    const limited = p.state.edge.perApp?.take(route.app.name);
    if (limited && !limited.ok) throw rateLimited(limited.retryAfterS, route.app.name);
    const max = route.app.maxBodyBytes;
    const length = p.req.headers['content-length'];
    if (max !== undefined && length !== undefined && Number(length) > max) {
      throw new ProxyctlError(
        'ERR_BODY_TOO_LARGE',
        `The request body is ${length} bytes; ${route.app.name} accepts at most ${max}.`,
        { status: 413, details: { app: route.app.name } },
      );
    }
  }

  /** The origin the user reached the app on; redirects are built from it, so its port is checked. */
  function originOf(route: Route, req: IncomingMessage): string {
    const host = (req.headers.host ?? '').toLowerCase();
    const m = /^(\[[0-9a-f:.]+\]|[^:]+)(?::(\d+))?$/.exec(host);
    const port = m?.[2];
    if (
      !m ||
      (port !== undefined &&
        port !== route.app.externalUrl.port &&
        port !== String(deps.publicPort()) &&
        !(port === '443' && route.app.externalUrl.port === ''))
    ) {
      throw new ProxyctlError('ERR_BAD_REQUEST', 'The Host header names a port this application is not published on.', {
        status: 400,
      });
    }
    return `https://${m[1]}${port && port !== '443' ? `:${port}` : ''}`;
  }

  /** Relay-owned paths: answered by the relay itself, never forwarded (and never upgraded). */
  function relayOwned(p: Pass, route: Route, origin: string): boolean | Promise<boolean> {
    if (!p.res) {
      if (deps.relayOwned.owns(p.req, route.rest))
        throw new ProxyctlError('ERR_NOT_FOUND', 'Relay endpoints take no upgrades.', { status: 404 });
      return false;
    }
    return deps.relayOwned.handle(p.req, p.res, route.app, origin, route.rest, p.requestId, p.state);
  }

  /** Authenticate: who is asking (cookie or bearer), or nobody. Passthrough apps skip it, without a promise. */
  function authenticate(p: Pass, route: Route): typeof ANONYMOUS | Promise<Authenticated | undefined> {
    if (route.app.preauth === 'passthrough') return ANONYMOUS;
    return deps.authentication.identify(p.req, route.app, p.state);
  }

  /** Nobody: browsers are sent to sign in; scripts and upgrades get 401. */
  async function signInFirst(p: Pass, route: Route, origin: string): Promise<void> {
    if (!p.res || wantsJson(p.req)) {
      throw new ProxyctlError('ERR_SIGNIN_REQUIRED', `Sign in to ${route.app.name} first (no valid session).`, {
        status: 401,
        details: { app: route.app.name },
      });
    }
    await deps.signIn.begin(p.res, route.app, origin, p.state, { returnTo: p.req.url });
  }

  /** Authorize: assignment and Conditional Access under the configuration in force, on every request (cached per session). */
  function authorize(p: Pass, route: Route, who: Who): Verdict {
    if (who === ANONYMOUS) return ALLOW;
    return p.state.authorizer.authorize(p.req, route.app, who, p.requestId);
  }

  /** A denial is a refusal naming why; a step-up sends browsers to sign in for more, and refuses the rest. */
  async function refuseOrStepUp(
    p: Pass,
    route: Route,
    origin: string,
    verdict: Exclude<Verdict, { result: 'allow' }>,
  ): Promise<void> {
    if (verdict.result === 'deny' || !p.res || wantsJson(p.req)) throw verdict.error;
    await deps.signIn.begin(p.res, route.app, origin, p.state, { returnTo: p.req.url, stepUp: verdict.stepUp });
  }

  /** Identity for the backend: a signed assertion, optionally plain headers. */
  async function identityHeaders(app: AppConfig, who: Authenticated): Promise<HeaderPairs> {
    const out: HeaderPairs = [[ASSERTION_HEADER, await deps.assertions.sign(app, who.identity, who.sid)]];
    if (app.identityHeaders) {
      out.push(['x-proxyctl-user', headerValue(who.identity.sub)]);
      if (who.identity.email) out.push(['x-proxyctl-email', headerValue(who.identity.email)]);
      out.push(['x-proxyctl-groups', who.identity.groups.map(headerValue).join(',')]);
    }
    return out;
  }

  /** Pick connector, when none is open at once: wait briefly for one; undefined if the user left meanwhile. */
  async function pickConnector(p: Pass, app: AppConfig): Promise<Channel | undefined> {
    const abort = new AbortController();
    const onGone = () => abort.abort();
    const userSide = (p.res ?? p.socket)!;
    userSide.once('close', onGone);
    const waitStarted = performance.now();
    const channel = await deps.queue.acquire(
      app.connectorGroup,
      p.state.config.connectors.queueTimeoutMs,
      abort.signal,
    );
    deps.metrics?.queued(app.name, (performance.now() - waitStarted) / 1000);
    userSide.off('close', onGone);
    if (abort.signal.aborted) return undefined;
    if (!channel) {
      throw new ProxyctlError(
        'ERR_NO_CONNECTOR',
        `No connector is available for ${app.name} (connector group "${app.connectorGroup}"). Try again shortly; if this persists, tell your administrator.`,
        { status: 503, details: { app: app.name } },
      );
    }
    return channel;
  }

  /** Forward: put the request on the channel; the data plane delivers the answer. */
  function forward(p: Pass, route: Route, who: Who, identity: HeaderPairs | undefined, channel: Channel): void {
    const { req, requestId } = p;
    const upgrade = p.socket !== undefined;
    const hasBody = !upgrade && bodyFollows(req);
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
        traceparent: p.trace.traceparent,
        tracestate: p.trace.tracestate,
        upgrade,
        cookie: backendCookieHeader(req.headers.cookie),
        dropAuthorization: who !== ANONYMOUS && who.via === 'bearer',
        identity,
        forwardHeaders: route.app.forwardHeaders,
        teTrailers: route.app.backendProtocol !== 'http1',
      }),
      body: hasBody,
      upgrade,
    };
    checkMessageSize(msg, channel.binary);
    const ex = deps.queue.open({
      id: requestId,
      app: route.app,
      config: p.state.config,
      channel,
      req,
      res: p.res,
      socket: p.socket,
      head: p.head,
      hasBody,
    });
    channel.send(msg);
    ex.armTimeout(route.app.backendTimeoutMs + 5_000);
    const userSide = p.res ?? p.socket!;
    userSide.once('close', () => {
      if (ex.state === 'done') return;
      // The user left: tell the connector so it aborts the backend call.
      channel.send({ type: 'cancel', id: requestId });
      ex.abortUser();
    });
    if (!hasBody && !upgrade) req.resume();
    if (upgrade)
      deps.log.info(
        { request_id: requestId, trace_id: p.trace.traceId, app: route.app.name, method: req.method },
        'upgrade queued',
      );
  }

  function handleRequest(req: IncomingMessage, res: ServerResponse): void {
    // A request pipelined behind a close-refusal on this connection is never read:
    // the framing of everything after that refusal is untrusted.
    if (closing.has(req.socket)) return;
    if (draining) {
      refuseDraining(req, res);
      return;
    }
    const started = performance.now();
    const p: Pass = {
      req,
      res,
      socket: undefined,
      head: undefined,
      requestId: randomUUID(),
      trace: continueTrace(req.headers['traceparent'], req.headers['tracestate']),
      state: deps.state(),
      app: undefined,
    };
    (req as Traced)[TRACE] = p.trace;
    const socket = req.socket;
    const h2 = isHttp2(req);
    inFlight.add(res);
    res.once('close', () => {
      inFlight.delete(res);
      // Draining: an answer whose headers went out before TERM still leaves its connection idle; close it.
      // (An HTTP/2 session got GOAWAY at drain and closes itself once its streams are done.)
      if (draining && !h2) socket.end();
      if (inFlight.size === 0) for (const wake of [...idleWaiters]) wake();
      const ms = performance.now() - started;
      deps.metrics?.request(p.app, res.statusCode, ms / 1000);
      deps.log.info(
        {
          request_id: p.requestId,
          trace_id: p.trace.traceId,
          app: p.app,
          method: req.method,
          http_version: req.httpVersion,
          status: res.statusCode,
          duration_ms: Math.round(ms),
          client: clientAddress(req),
          completed: res.writableFinished,
        },
        'request',
      );
    });
    const refuse = (err: unknown): void => {
      const e = refusalOf(err);
      if (e.status >= 500 && e.code === 'ERR_INTERNAL')
        deps.log.error({ request_id: p.requestId, trace_id: p.trace.traceId, err: e.cause }, 'request failed');
      const close = e.details?.['close'] === true || e.code === 'ERR_BODY_TOO_LARGE';
      if (close && h2) endStreamAfter(req, res);
      else if (close) closing.add(req.socket);
      else req.resume();
      renderError(req, res, e, p.requestId, close ? { headers: { connection: 'close' } } : {});
    };
    try {
      steps(p)?.catch(refuse);
    } catch (err) {
      refuse(err);
    }
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (closing.has(socket) || draining) {
      socket.destroy();
      return;
    }
    socket.on('error', () => socket.destroy());
    const p: Pass = {
      req,
      res: undefined,
      socket,
      head,
      requestId: randomUUID(),
      trace: continueTrace(req.headers['traceparent'], req.headers['tracestate']),
      state: deps.state(),
      app: undefined,
    };
    (req as Traced)[TRACE] = p.trace;
    const refuse = (err: unknown): void => {
      const e = refusalOf(err);
      deps.log.info(
        { request_id: p.requestId, trace_id: p.trace.traceId, app: p.app, status: e.status, code: e.code },
        'upgrade refused',
      );
      renderRaw(socket, e, p.requestId, { req });
    };
    try {
      steps(p)?.catch(refuse);
    } catch (err) {
      refuse(err);
    }
  }

  /** Whether a close-refusal was sent on this connection (the parser's own errors then stay unanswered). */
  const isClosing = (socket: object): boolean => closing.has(socket);

  /**
   * A request that arrives on an open connection while the relay drains is not taken:
   * 503 with Retry-After, and the connection closes (its body is not read), so the
   * client retries on a new connection, to another replica or to the restarted relay.
   */
  function refuseDraining(req: IncomingMessage, res: ServerResponse): void {
    if (isHttp2(req)) endStreamAfter(req, res);
    else closing.add(req.socket);
    const requestId = randomUUID();
    deps.log.info({ request_id: requestId, method: req.method, status: 503 }, 'request refused: relay shutting down');
    renderError(
      req,
      res,
      new ProxyctlError('ERR_SHUTTING_DOWN', 'The relay is restarting or shutting down. Try again in a moment.', {
        status: 503,
      }),
      requestId,
      { headers: { connection: 'close', 'retry-after': '1' } },
    );
  }

  /**
   * Shutdown, step one: no request is taken from here on, answers whose headers are
   * not sent yet carry `Connection: close`, and every connection closes once its
   * answer is complete. Answers in flight go on; `idle()` says when none is left.
   */
  function drain(): void {
    draining = true;
    // HTTP/2 responses carry no Connection header: their sessions get GOAWAY (public-listener.ts).
    for (const res of inFlight) if (!res.headersSent && !isHttp2(res.req)) res.setHeader('connection', 'close');
  }

  /** Resolves when no answer is in flight (requests that got past admit), or after timeoutMs. */
  function idle(timeoutMs: number, clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>): Promise<void> {
    if (inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clock.clearTimeout(timer);
        idleWaiters.delete(wake);
        resolve();
      };
      const timer = clock.setTimeout(wake, timeoutMs);
      idleWaiters.add(wake);
    });
  }

  return { handleRequest, handleUpgrade, isClosing, drain, idle, inFlight: () => inFlight.size };
}

const ALLOW: Verdict = { result: 'allow' };

/**
 * Whether a request body follows the head. HTTP/1.1: a length other than 0, or chunked.
 * HTTP/2: the HEADERS frame did not end the stream (a body may come without a length).
 */
function bodyFollows(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  const stream = http2StreamOf(req);
  if (stream) return !stream.endAfterHeaders && length !== '0';
  return length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
}

/**
 * HTTP/2's close-refusal: the stream, not the connection, ends after the answer. Its
 * unread body is refused with RST_STREAM NO_ERROR (RFC 9113 §8.1), never read.
 */
function endStreamAfter(req: IncomingMessage, res: ServerResponse): void {
  const stream = http2StreamOf(req);
  if (!stream) return;
  res.once('finish', () => {
    if (!req.readableEnded && !stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
  });
}
