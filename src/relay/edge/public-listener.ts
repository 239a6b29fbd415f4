// The public listener's server: one TLS port that negotiates HTTP/2 (ALPN `h2`) and
// HTTP/1.1 (node:http2 with allowHTTP1), handing both to the same request path.
// Node's http2 server does not take the HTTP/1.1 parser options from its options
// object (Node 20: headersTimeout, keepAliveTimeout, maxHeaderSize… stay at their
// defaults), so they are set on the server here. HTTP/2 sessions get the same limits
// in HTTP/2 terms (header list size, header count, streams per session, idle time) and
// the defences against HTTP/2 abuse: bounded invalid frames and refused streams
// (Node), a rate limit on streams the client resets (rapid reset, CVE-2023-44487), and
// streams reset in the read that opened them never reaching the request path.
// WebSocket stays HTTP/1.1: no extended CONNECT (RFC 8441) is offered.
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type SecureServerOptions,
  type ServerHttp2Session,
} from 'node:http2';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Clock, Timer } from '../../clock.js';
import type { Logger } from '../../log.js';
import { ConnectionCap } from './limits.js';
import { isHttp2 } from '../../http/http2-compat.js';

export interface PublicListenerLimits {
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly bodyIdleTimeoutMs: number;
  readonly maxHeaderBytes: number;
  readonly maxHeaders: number;
  readonly connectionsPerIp: number;
}

/** Streams one HTTP/2 session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const HTTP2_MAX_CONCURRENT_STREAMS = 100;
/**
 * Streams a client may reset before their answer is complete: a burst, then a steady
 * rate. A browser cancels a few (navigation, aborted fetches); a rapid-reset attack
 * cancels thousands a second. Beyond it the session ends with GOAWAY ENHANCE_YOUR_CALM.
 */
export const HTTP2_RESET_BURST = 200;
export const HTTP2_RESETS_PER_SEC = 50;
/** Frames nghttp2 finds invalid, and streams the relay refused, before a session is ended (Node's defaults: 1000, 100). */
export const HTTP2_MAX_INVALID_FRAMES = 100;
export const HTTP2_MAX_REJECTED_STREAMS = 100;

export interface PublicListenerOptions {
  /** Key, certificate, SNI and client-certificate options (the ALPN choice is made here). */
  tls: SecureServerOptions;
  limits: PublicListenerLimits;
  /** `acme-tls/1` when a TLS-ALPN-01 challenge is answered in this handshake (acme/manager.ts), else undefined. */
  acmeAlpn?: (servername: string, protocols: readonly string[]) => string | undefined;
  onRequest(req: IncomingMessage, res: ServerResponse): void;
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  log: Logger;
  clock: Pick<Clock, 'setTimeout' | 'clearTimeout' | 'now'>;
  /** Each TLS connection, by the protocol it settled on (metrics). */
  onConnection?: (protocol: 'h2' | 'http/1.1') => void;
}

/** The protocol for a handshake: HTTP/2 when the client offers it, else HTTP/1.1; undefined refuses the handshake. */
export function selectAlpn(protocols: readonly string[]): string | undefined {
  if (protocols.includes('h2')) return 'h2';
  return protocols.includes('http/1.1') ? 'http/1.1' : undefined;
}

/** HTTP/1.1 server settings node:http reads from the server object (see the header comment). */
interface Http1Settings {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  maxHeaderSize: number;
  connectionsCheckingInterval: number;
  requireHostHeader: boolean;
}

interface SessionState {
  /** Streams open now; the session counts as idle while there are none. */
  open: number;
  /** When its last stream closed (clock ms), or when it opened. */
  idleSince: number;
  /** Tokens for client resets (rapid-reset limit). */
  resets: number;
  refilledAt: number;
}

export class PublicListener {
  readonly server: Http2SecureServer;
  private readonly sockets = new Set<TLSSocket>();
  private readonly sessions = new Map<ServerHttp2Session, SessionState>();
  private goingAway = false;
  /**
   * One timer for every session's idle limit, not one per session: 10,000 idle HTTP/2
   * sessions then cost no more memory than a bare Node HTTP/2 server's (bench idle test).
   * Runs while there are sessions, every quarter of limits.idleTimeout (at most 1 s).
   */
  private sweeper: Timer | undefined;

  constructor(private readonly opts: PublicListenerOptions) {
    const l = opts.limits;
    const acme = opts.acmeAlpn;
    this.server = createSecureServer({
      ...opts.tls,
      allowHTTP1: true,
      ALPNCallback: ({ servername, protocols }) =>
        (acme ? acme(servername, protocols) : undefined) ?? selectAlpn(protocols),
      noDelay: true,
      settings: {
        maxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS,
        maxHeaderListSize: l.maxHeaderBytes,
        enablePush: false,
        enableConnectProtocol: false,
      },
      // Pseudo-headers (:method, :path, :scheme, :authority) count as header pairs in Node.
      maxHeaderListPairs: l.maxHeaders + 4,
      maxSessionInvalidFrames: HTTP2_MAX_INVALID_FRAMES,
      maxSessionRejectedStreams: HTTP2_MAX_REJECTED_STREAMS,
    });
    const settings: Http1Settings = {
      headersTimeout: l.headersTimeoutMs,
      requestTimeout: l.requestTimeoutMs, // 0 by default: long transfers are legitimate; idle ones are cut below
      keepAliveTimeout: l.idleTimeoutMs,
      maxHeaderSize: l.maxHeaderBytes,
      // Node checks header/request timeouts on this interval (default 30 s: too coarse for slowloris).
      connectionsCheckingInterval: Math.max(250, Math.min(1000, Math.floor(l.headersTimeoutMs / 2))),
      requireHostHeader: true,
    };
    Object.assign(this.server as Http2SecureServer & Http1Settings, settings);
    // A connection (HTTP/1.1 socket or HTTP/2 session) silent for this long is cut.
    // The callback gets the HTTP/1.1 socket or the HTTP/2 session (@types/node declares no argument).
    this.server.setTimeout(Math.max(l.idleTimeoutMs, l.bodyIdleTimeoutMs) + 5_000, ((s: { destroy(): void }) =>
      s.destroy()) as () => void);
    new ConnectionCap(l.connectionsPerIp, (address) =>
      opts.log.warn({ client: address }, 'too many connections from one address; refused'),
    ).attach(this.server);
    // A TLS-ALPN-01 validation only completes the handshake: nothing is read from it.
    this.server.prependListener('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'acme-tls/1') return void socket.destroy();
      opts.onConnection?.(socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1');
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    this.server.on('session', (session) => this.admitSession(session));
    this.server.on('sessionError', (err: Error) =>
      opts.log.debug({ err: err.message }, 'HTTP/2 session error on the public listener'),
    );
    this.server.on('request', (req: IncomingMessage | Http2ServerRequest, res) => {
      const r = req as IncomingMessage;
      // The compat request and response of node:http2 stand in for node:http's: the request
      // path reads only what both have (headers, url, method, socket address, writeHead…).
      const s = res as unknown as ServerResponse;
      if (!isHttp2(r)) return opts.onRequest(r, s);
      // A stream the client reset in the same read that opened it (rapid reset) is gone by
      // the next turn of the event loop: it never reaches the request path, nor a connector.
      setImmediate(() => {
        const stream = (req as Http2ServerRequest).stream;
        if (stream.destroyed || stream.closed) return;
        opts.onRequest(r, s);
      });
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      opts.onUpgrade(req, socket, head),
    );
  }

  private admitSession(session: ServerHttp2Session): void {
    if ((session.socket as TLSSocket | undefined)?.alpnProtocol === 'acme-tls/1') return;
    if (this.goingAway) return void session.close();
    const st: SessionState = {
      open: 0,
      idleSince: this.opts.clock.now(),
      resets: HTTP2_RESET_BURST,
      refilledAt: performance.now(),
    };
    this.sessions.set(session, st);
    this.armSweeper();
    session.on('stream', (stream) => {
      st.open++;
      stream.once('aborted', () => this.clientReset(session, st));
      stream.once('close', () => {
        if (--st.open === 0) st.idleSince = this.opts.clock.now();
      });
    });
    session.once('close', () => {
      this.sessions.delete(session);
      if (this.sessions.size === 0) this.stopSweeper();
    });
  }

  private armSweeper(): void {
    if (this.sweeper) return;
    const every = Math.max(50, Math.min(1000, Math.floor(this.opts.limits.idleTimeoutMs / 4)));
    this.sweeper = this.opts.clock.setTimeout(this.sweep, every);
    this.sweeper.unref();
  }

  private stopSweeper(): void {
    this.opts.clock.clearTimeout(this.sweeper);
    this.sweeper = undefined;
  }

  /** Sessions with no stream open for limits.idleTimeout are closed (GOAWAY), like idle keep-alive connections. */
  private readonly sweep = (): void => {
    this.sweeper = undefined;
    const due = this.opts.clock.now() - this.opts.limits.idleTimeoutMs;
    for (const [session, st] of this.sessions)
      if (st.open === 0 && st.idleSince <= due && !session.closed) session.close();
    if (this.sessions.size > 0) this.armSweeper();
  };

  /** A stream the client reset before its answer was complete: rate-limited per session. */
  private clientReset(session: ServerHttp2Session, st: SessionState): void {
    const now = performance.now();
    st.resets = Math.min(HTTP2_RESET_BURST, st.resets + ((now - st.refilledAt) / 1000) * HTTP2_RESETS_PER_SEC);
    st.refilledAt = now;
    if (--st.resets >= 0 || session.destroyed) return;
    this.opts.log.warn(
      { client: session.socket?.remoteAddress, burst: HTTP2_RESET_BURST, per_sec: HTTP2_RESETS_PER_SEC },
      'HTTP/2 client reset too many streams; session ended',
    );
    // GOAWAY first: destroy(err, code) alone loses the frame when streams are still open.
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy(new Error('HTTP/2 rapid reset'), constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /**
   * Shutdown: HTTP/2 sessions get GOAWAY (streams in flight finish, no new ones are
   * taken), new sessions are closed at once, idle HTTP/1.1 connections are closed.
   */
  goAway(): void {
    this.goingAway = true;
    for (const session of this.sessions.keys()) if (!session.closed) session.close();
    this.closeIdleConnections();
  }

  /** Idle HTTP/1.1 keep-alive connections and HTTP/2 sessions without open streams. */
  closeIdleConnections(): void {
    (this.server as Http2SecureServer & { closeIdleConnections(): void }).closeIdleConnections();
    for (const [session, st] of this.sessions) if (st.open === 0 && !session.closed) session.close();
  }

  /** Every connection, whatever it is doing. */
  closeAllConnections(): void {
    for (const session of this.sessions.keys()) session.destroy();
    for (const socket of this.sockets) socket.destroy();
  }

  /** HTTP/2 sessions open now. */
  openSessions(): number {
    return this.sessions.size;
  }
}
