// The connector's half of the data plane: take a queued request, pull its body
// from the relay (outbound), call the internal app with a keep-alive pool, and
// push status, headers and body back to the relay (outbound). Streams end to
// end; a failure mid-body aborts the upload so the user never sees a clean end.
// Every data connection of a request goes to the replica that queued it (its Route).
import { request as httpRequest, type IncomingMessage, type ClientRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { Readable, pipeline } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { ProxyctlError, causeCode } from '../errors.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import {
  INLINE_MAX,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  RESPONSE_HEADERS_HEADER,
  RESPONSE_STATUS_HEADER,
  TUNNEL_PROTOCOL,
  encodeHeaderPairs,
  requestPath,
  type BackendFailure,
  type FailureReport,
  type ConnectorAppConfig,
  type ConnectorConfig,
  type HeaderPairs,
  type InlineResponseHead,
  type QueuedRequest,
} from '../protocol/connector-api.js';
import type { RelayClient } from './relay-client.js';
import { Coalesce } from './coalesce.js';
import { H2Backend, type H2Handler } from './h2-backend.js';
import { pairsOf } from '../net/header-fields.js';

/** Data-plane calls name the protocol too (the relay checks every connector-API request). */
const PROTOCOL = { [PROTOCOL_HEADER]: String(PROTOCOL_VERSION) };
import type { ConnectorMetrics } from './metrics.js';

export interface ProxyDeps {
  config: () => ConnectorConfig | undefined;
  log: Logger;
  /** Bounds the drain. */
  clock: Clock;
  /** Backend calls by app and status class, and their latency. */
  metrics?: ConnectorMetrics | undefined;
  /**
   * A CA (PEM) trusted for https backends besides Node's own store, by HTTP/1.1 and HTTP/2
   * alike (tests; a deployment extends the store with NODE_EXTRA_CA_CERTS).
   */
  backendCa?: string | undefined;
}

const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
]);

/**
 * The control channel a request arrived on. Only the relay replica that queued a request
 * knows it, so its body pull, response push, failure report and tunnel all go there.
 */
export interface Route {
  /** The client of that replica (read at each call: a renewal replaces it). */
  relay(): RelayClient;
  /** Sends a small complete response on the channel (framed as it speaks); false when it has closed. */
  reply?(head: InlineResponseHead, body: Buffer): boolean;
}

/** An app as the connector calls it: its config, parsed internal URL and path prefix (ending in "/"). */
interface Target {
  app: ConnectorAppConfig;
  base: URL;
  prefix: string;
}

export class BackendProxy {
  private readonly inflight = new Map<string, BackendCall>();
  /** Calls in flight per route, for draining one channel. */
  private readonly perRoute = new Map<Route, number>();
  private readonly backend: Agent;
  /** HTTP/2 sessions for apps with backendProtocol h2c or h2. */
  private readonly h2: H2Backend;
  /** Response pushes to the relay (keyed by the TLS options, so a renewed certificate gets its own sockets). */
  private readonly push = new HttpsAgent({ keepAlive: true, maxSockets: 512 });
  private idle: { route: Route | undefined; done: () => void }[] = [];

  constructor(private readonly deps: ProxyDeps) {
    // One trust setting for https backends whatever the HTTP version.
    const tls = deps.backendCa ? { ca: [...rootCertificates, deps.backendCa] } : {};
    this.h2 = new H2Backend(tls);
    this.backend = new Agent({
      connect: tls,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 120_000,
      connections: 512,
      pipelining: 1,
    });
  }

  get active(): number {
    return this.inflight.size;
  }

  cancel(id: string): void {
    this.inflight.get(id)?.cancel(new Error('cancelled by the relay: the user went away'));
  }

  /** Apps by name with their parsed internal URL, rebuilt when the pulled config changes. */
  private targets: { config: ConnectorConfig | undefined; byName: Map<string, Target> } = {
    config: undefined,
    byName: new Map(),
  };

  private targetOf(name: string): Target | undefined {
    const config = this.deps.config();
    if (this.targets.config !== config) {
      const byName = new Map<string, Target>();
      for (const app of config?.apps ?? []) {
        const base = new URL(app.internalUrl);
        byName.set(app.name, { app, base, prefix: base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/` });
      }
      this.targets = { config, byName };
    }
    return this.targets.byName.get(name);
  }

  /** For /metrics: the backend answered `status` (0: it failed without an answer) for a call started at `started`. */
  answered(app: string, status: number, started: number): void {
    this.deps.metrics?.backendCall(app, status, (performance.now() - started) / 1000);
  }

  /** Requests in flight that arrived on `route`. */
  activeOn(route: Route): number {
    return this.perRoute.get(route) ?? 0;
  }

  handle(msg: QueuedRequest, route: Route): void {
    const call = new BackendCall(this, msg, route);
    this.inflight.set(msg.id, call);
    this.perRoute.set(route, this.activeOn(route) + 1);
    try {
      this.start(call);
    } catch (err) {
      call.end(asError(err));
    }
  }

  /** Called by a BackendCall, exactly once, however it ended. */
  ended(call: BackendCall, err: Error | undefined): void {
    if (err && !call.aborted)
      this.deps.log.warn({ request_id: call.msg.id, app: call.msg.app, err: err.message }, 'request failed');
    this.inflight.delete(call.msg.id);
    const left = this.activeOn(call.route) - 1;
    if (left > 0) this.perRoute.set(call.route, left);
    else this.perRoute.delete(call.route);
    if (this.idle.length === 0) return;
    const still = [];
    for (const w of this.idle) {
      if ((w.route ? this.activeOn(w.route) : this.inflight.size) === 0) w.done();
      else still.push(w);
    }
    this.idle = still;
  }

  /** Resolves when nothing is in flight (only what arrived on `route`, when given), or after timeoutMs. */
  drain(timeoutMs: number, route?: Route): Promise<void> {
    if ((route ? this.activeOn(route) : this.inflight.size) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = this.deps.clock.setTimeout(resolve, timeoutMs).unref();
      this.idle.push({
        route,
        done: () => {
          this.deps.clock.clearTimeout(t);
          resolve();
        },
      });
    });
  }

  async close(): Promise<void> {
    for (const call of this.inflight.values()) call.cancel(new Error('connector shutting down'));
    await this.backend.close().catch(() => undefined);
    this.h2.close();
    this.push.destroy();
  }

  /**
   * Starts the backend call. A request without a body is dispatched at once, with
   * no promise of its own (small requests are most of the traffic); a body is
   * pulled from the relay first.
   */
  private start(call: BackendCall): void {
    const msg = call.msg;
    const target = this.targetOf(msg.app);
    if (!target)
      return endWhen(
        call,
        this.report(
          call.route.relay(),
          msg.id,
          'ERR_APP_UNKNOWN',
          `this connector has no app named ${msg.app}; it may not have pulled the latest configuration`,
        ),
      );
    const { app, base, prefix } = target;
    const path = `${prefix}${msg.target}`;
    const headers = backendHeaders(msg.headers, app, base);
    if (msg.upgrade) return endWhen(call, this.upgrade(call, app, base, path, headers));
    if (!msg.body) return this.dispatch(call, app, base, path, headers, undefined);
    this.fetchBody(call.route.relay(), msg.id, call.signal).then(
      (body) => this.dispatch(call, app, base, path, headers, body),
      (err: unknown) => call.end(asError(err)),
    );
  }

  private dispatch(
    call: BackendCall,
    app: ConnectorAppConfig,
    base: URL,
    path: string,
    headers: string[],
    body: Readable | undefined,
  ): void {
    if (call.aborted) {
      // Cancelled while the body was being pulled: the call has ended already.
      body?.destroy();
      return;
    }
    call.app = app;
    call.requestBody = body;
    call.started = performance.now();
    const protocol = app.backendProtocol;
    if (protocol === 'h2c' || protocol === 'h2') {
      this.h2.dispatch(
        {
          origin: base,
          protocol,
          method: call.msg.method,
          path,
          headers,
          body,
          timeoutMs: app.backendTimeoutMs,
        },
        call,
      );
      return;
    }
    this.backend.dispatch(
      {
        origin: base.origin,
        path,
        method: call.msg.method,
        headers,
        body: body ?? null,
        headersTimeout: app.backendTimeoutMs,
        bodyTimeout: app.backendTimeoutMs,
      },
      call,
    );
  }

  /** Called by a BackendCall: the backend's answer is too big or too open-ended for one frame. */
  streamResponse(call: BackendCall, status: number, headers: HeaderPairs, body: Readable): Promise<void> {
    return this.sendResponse(call.route.relay(), call.msg.id, status, headers, body, call.signal, () => call.trailers);
  }

  private async fetchBody(relay: RelayClient, id: string, signal: AbortSignal): Promise<Readable> {
    const res = await relay.dispatcher.request({
      origin: relay.origin,
      path: requestPath(id, 'body'),
      method: 'GET',
      headers: PROTOCOL,
      signal,
    });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new Error(`relay refused the request body (${res.statusCode})`);
    }
    // The relay's TLS records arrive 16 KiB at a time: joined, they reach the backend in big writes.
    // A body that breaks destroys the joined stream with the error, so the backend never sees a clean end.
    return pipeline(res.body, new Coalesce(), () => undefined);
  }

  /**
   * Pushes status, headers and body to the relay. node:https rather than undici:
   * undici sends a streamed request's head only with its first body byte, and the
   * user must get the backend's headers as soon as the backend sends them (SSE,
   * long polls, a slow first byte), not when the body starts. The backend's trailers
   * (gRPC's status) follow the body as the push's own chunked trailers.
   */
  private sendResponse(
    relay: RelayClient,
    id: string,
    status: number,
    headers: HeaderPairs,
    body: Readable | null,
    signal: AbortSignal,
    trailers?: () => HeaderPairs | undefined,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const url = new URL(requestPath(id, 'response'), relay.origin);
      const req = httpsRequest({
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent: this.push,
        ...relay.tls,
        signal,
        headers: {
          ...PROTOCOL,
          [RESPONSE_STATUS_HEADER]: String(status),
          [RESPONSE_HEADERS_HEADER]: encodeHeaderPairs(headers),
          'content-type': 'application/octet-stream',
        },
      });
      req.on('error', reject);
      // Status and headers are flushed before the body: Nagle must not hold the body back.
      req.on('socket', (socket) => socket.setNoDelay(true));
      req.on('response', (res) => {
        // Refused (the user left meanwhile): stop reading the backend.
        if (res.statusCode !== 204) body?.destroy();
        res.resume();
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.flushHeaders();
      if (!body) return void req.end();
      if (trailers) {
        // Registered before pipeline()'s own 'end' listener, which ends the push: the
        // trailers are known by then (they arrive before the backend's body ends).
        body.once('end', () => {
          const t = trailers();
          if (t?.length) req.addTrailers(t);
        });
      }
      // A backend body that breaks destroys the push, so the relay never sees a clean end.
      pipeline(body, req, (err) => {
        if (err) reject(err);
      });
    });
  }

  reportBackendError(call: BackendCall, app: ConnectorAppConfig, err: unknown): Promise<void> {
    const relay = call.route.relay();
    const id = call.msg.id;
    const code = causeCode(err);
    // undici's headers timeout, or the node:http backend call's own (below).
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'ERR_BACKEND_TIMEOUT') {
      return this.report(
        relay,
        id,
        'ERR_BACKEND_TIMEOUT',
        `${app.name} did not answer within ${Math.round(app.backendTimeoutMs / 1000)} s`,
      );
    }
    if (code && UNREACHABLE.has(code))
      return this.report(relay, id, 'ERR_BACKEND_UNREACHABLE', `the connector cannot reach ${app.name} (${code})`);
    return this.report(relay, id, 'ERR_BACKEND_FAILED', `${app.name} failed to answer (${code ?? 'error'})`);
  }

  private async report(relay: RelayClient, id: string, code: BackendFailure, message: string): Promise<void> {
    const report: FailureReport = { code, message };
    const res = await relay.dispatcher.request({
      origin: relay.origin,
      path: requestPath(id, 'error'),
      method: 'POST',
      headers: { ...PROTOCOL, 'content-type': 'application/json' },
      body: JSON.stringify(report),
    });
    await res.body.dump();
  }

  /** WebSocket and other upgrades: a backend socket joined to a tunnel the connector opens to the relay. */
  private upgrade(
    call: BackendCall,
    app: ConnectorAppConfig,
    base: URL,
    path: string,
    headers: string[],
  ): Promise<void> {
    const { msg, signal } = call;
    const started = performance.now();
    return new Promise((resolve) => {
      const send = base.protocol === 'https:' ? httpsRequest : httpRequest;
      const req: ClientRequest = send({
        host: base.hostname,
        port: base.port || undefined,
        path,
        method: msg.method,
        headers,
        signal,
        timeout: app.backendTimeoutMs,
      });
      req.on('timeout', () =>
        req.destroy(
          new ProxyctlError('ERR_BACKEND_TIMEOUT', `${app.name} did not answer within ${app.backendTimeoutMs} ms`),
        ),
      );
      req.on('error', (err) => {
        if (!signal.aborted) {
          this.answered(app.name, 0, started);
          void this.reportBackendError(call, app, err).catch(() => undefined);
        }
        resolve();
      });
      req.on('response', (res: IncomingMessage) => {
        // The backend declined the upgrade: relay its answer as a normal response.
        this.answered(app.name, res.statusCode ?? 502, started);
        const relay = call.route.relay();
        void this.sendResponse(relay, msg.id, res.statusCode ?? 502, pairsOf(res.rawHeaders), res, signal)
          .catch(() => undefined)
          .finally(resolve);
      });
      req.on('upgrade', (res: IncomingMessage, backendSocket: Socket, head: Buffer) => {
        this.answered(app.name, 101, started);
        this.openTunnel(call.route.relay(), msg.id, pairsOf(res.rawHeaders), (err, relaySocket, relayHead) => {
          if (err || !relaySocket) {
            backendSocket.destroy();
            resolve();
            return;
          }
          if (head.length) relaySocket.write(head);
          if (relayHead?.length) backendSocket.write(relayHead);
          const done = () => {
            backendSocket.destroy();
            relaySocket.destroy();
            resolve();
          };
          for (const s of [backendSocket, relaySocket]) {
            s.on('error', done);
            s.on('close', done);
          }
          backendSocket.pipe(relaySocket);
          relaySocket.pipe(backendSocket);
        });
      });
      req.end();
    });
  }

  private openTunnel(
    relay: RelayClient,
    id: string,
    headers: HeaderPairs,
    cb: (err: Error | undefined, socket?: Socket, head?: Buffer) => void,
  ): void {
    const url = new URL(requestPath(id, 'upgrade'), relay.origin);
    const req = httpsRequest({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: 'GET',
      ...relay.tls,
      headers: {
        ...PROTOCOL,
        connection: 'upgrade',
        upgrade: TUNNEL_PROTOCOL,
        [RESPONSE_STATUS_HEADER]: '101',
        [RESPONSE_HEADERS_HEADER]: encodeHeaderPairs(headers),
      },
    });
    req.on('upgrade', (_res, socket: Socket, head: Buffer) => cb(undefined, socket, head));
    req.on('response', (res) => {
      res.resume();
      cb(new Error(`relay refused the tunnel (${res.statusCode})`));
    });
    req.on('error', (err) => cb(err));
    req.end();
  }
}

/**
 * One request to the backend, driven by undici's dispatch handler interface:
 * a small complete answer is collected and sent back in one control-channel
 * frame with no stream or promise per response; anything else streams to the
 * relay with back-pressure (the backend is paused while the relay is full).
 */
class BackendCall implements H2Handler {
  app: ConnectorAppConfig | undefined;
  /** HTTP/2: the response ended with its headers (see H2Handler). */
  endsWithHeaders = false;
  /** The backend's trailers, once its body has ended (none: undefined). */
  trailers: HeaderPairs | undefined;
  /** The user's body as pulled from the relay; destroyed when the call fails, so the pull stops too. */
  requestBody: Readable | undefined;
  /** When the backend was called (performance.now()). */
  started = 0;
  private controller: Dispatcher.DispatchController | undefined;
  private reason: Error | undefined;
  private ac: AbortController | undefined;
  private inline = false;
  private status = 0;
  private headers: HeaderPairs = [];
  private chunks: Buffer[] = [];
  private size = 0;
  private stream: Readable | undefined;
  /** The backend's response is complete or failed. */
  private responseEnded = false;
  /** end() has run: the proxy knows the call is over. */
  private callEnded = false;

  constructor(
    private readonly proxy: BackendProxy,
    readonly msg: QueuedRequest,
    readonly route: Route,
  ) {}

  /** The call is over (err: it failed): reported to the proxy once, later calls ignored. */
  end(err?: Error): void {
    if (this.callEnded) return;
    this.callEnded = true;
    this.proxy.ended(this, err);
  }

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  /** For the calls that need one (body pull, streamed push, upgrade); made on first use. */
  get signal(): AbortSignal {
    if (!this.ac) {
      this.ac = new AbortController();
      if (this.reason) this.ac.abort(this.reason);
    }
    return this.ac.signal;
  }

  cancel(reason: Error): void {
    if (this.reason) return;
    this.reason = reason;
    this.controller?.abort(reason);
    this.ac?.abort(reason);
    this.stream?.destroy(reason);
    this.dropRequestBody(reason);
    // Nothing more will come from the backend: the call is over.
    if (!this.stream) this.end();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.reason) controller.abort(this.reason);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    // Informational answers (102, 103 Early Hints) come before the real one: not forwarded.
    if (status < 200) return;
    this.status = status;
    this.proxy.answered(this.msg.app, status, this.started);
    this.headers = toPairs(headers);
    const declared = headers['content-length'];
    const bodyless = this.msg.method === 'HEAD' || status === 204 || status === 304 || this.endsWithHeaders;
    this.inline =
      this.route.reply !== undefined && (bodyless || (typeof declared === 'string' && Number(declared) <= INLINE_MAX));
    if (this.inline) return;
    const stream = new Readable({
      read: () => controller.resume(),
      // The push was refused or broke (the user left): stop reading the backend.
      destroy: (err, cb) => {
        if (!this.responseEnded) controller.abort(err ?? new Error('the response stream was closed'));
        cb(err);
      },
    });
    this.stream = stream;
    endWhen(this, this.proxy.streamResponse(this, status, this.headers, stream));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.stream) {
      if (!this.stream.push(chunk)) controller.pause();
      return;
    }
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  onResponseEnd(
    _controller: Dispatcher.DispatchController,
    trailers?: Record<string, string | string[] | undefined>,
  ): void {
    this.responseEnded = true;
    const t = trailers ? toPairs(trailers) : [];
    if (t.length) this.trailers = t;
    if (this.stream) {
      this.stream.push(null);
      return;
    }
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    // Sent, or the channel went away meanwhile and the relay has failed the request already.
    const head: InlineResponseHead = { type: 'response', id: this.msg.id, status: this.status, headers: this.headers };
    if (this.trailers) head.trailers = this.trailers;
    this.route.reply!(head, body);
    this.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.responseEnded = true;
    this.dropRequestBody(err);
    if (this.stream) {
      // Mid-body: the push to the relay is destroyed, so the user never sees a clean end.
      this.stream.destroy(err);
      return;
    }
    if (this.reason) return this.end();
    if (this.status === 0) this.proxy.answered(this.msg.app, 0, this.started);
    endWhen(this, this.proxy.reportBackendError(this, this.app!, err));
  }

  private dropRequestBody(err: Error): void {
    const body = this.requestBody;
    this.requestBody = undefined;
    if (body && !body.destroyed) body.on('error', () => undefined).destroy(err);
  }
}

/** The call ends when `work` settles (failed if it rejects). */
function endWhen(call: BackendCall, work: Promise<unknown>): void {
  work.then(
    () => call.end(),
    (err: unknown) => call.end(asError(err)),
  );
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function toPairs(headers: Record<string, string | string[] | undefined>): HeaderPairs {
  const out: HeaderPairs = [];
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push([k, x]);
    else out.push([k, v]);
  }
  return out;
}

/**
 * The relay's header list for the backend with Host first (the internal host, or the
 * external one the relay forwarded when the app asks for it), flat as undici and
 * node:http both take it: [name, value, …], duplicates kept.
 */
function backendHeaders(pairs: HeaderPairs, app: ConnectorAppConfig, base: URL): string[] {
  const forwardedHost = app.passHostHeader
    ? pairs.find(([k]) => k.toLowerCase() === 'x-forwarded-host')?.[1]
    : undefined;
  const out = new Array<string>(2 + pairs.length * 2);
  out[0] = 'host';
  out[1] = forwardedHost || base.host;
  for (let i = 0; i < pairs.length; i++) {
    out[2 + 2 * i] = pairs[i]![0];
    out[3 + 2 * i] = pairs[i]![1];
  }
  return out;
}
