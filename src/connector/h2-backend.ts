// HTTP/2 to backends (apps with `backendProtocol: h2c` or `h2`), for gRPC and other
// HTTP/2-only services: one session per backend origin, shared by every call and
// replaced once it closes, fails or gets GOAWAY. A call drives the same handler
// interface as undici's dispatch (proxy.ts's BackendCall), so the answer takes the
// same path back to the relay, with the same timeout and failure mapping.
// Full duplex: the response may start, and stream, before the request body ends.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { connect as netConnect, isIP } from 'node:net';
import type { Duplex, Readable } from 'node:stream';
import { connect as tlsConnect, type SecureContextOptions } from 'node:tls';
import type { Dispatcher } from 'undici';
import { ProxyctlError } from '../errors.js';
import { addField } from '../net/header-fields.js';

export type H2Protocol = 'h2c' | 'h2';

/** A call's handler: undici's dispatch callbacks, plus a flag for a response that ended with its headers. */
export interface H2Handler extends Dispatcher.DispatchHandler {
  /**
   * Set before onResponseStart when the backend's HEADERS frame ended the stream (no body, no
   * trailers): gRPC's "trailers-only" answer, whose grpc-status is in those headers.
   */
  endsWithHeaders?: boolean;
}

export interface H2Call {
  origin: URL;
  protocol: H2Protocol;
  method: string;
  /** Path and query. */
  path: string;
  /** [name, value, …] as the HTTP/1.1 path sends them, `host` first; turned into HTTP/2 fields here. */
  headers: readonly string[];
  /** The request body, streamed as it arrives; undefined: none (END_STREAM on the HEADERS frame). */
  body: Readable | undefined;
  /** The stream fails with ERR_BACKEND_TIMEOUT after this long without a frame either way. */
  timeoutMs: number;
}

/** A session left without streams for this long is closed (like the HTTP/1.1 pool's keep-alive). */
const IDLE_MS = 30_000;

/**
 * Header fields HTTP/2 forbids (RFC 9113 §8.2.2) or that become pseudo-headers: never sent as
 * fields. `te` is allowed only as "trailers" and is handled on its own.
 */
const NOT_FIELDS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** A session and the streams open on it (Node keeps no public count). */
interface Session {
  readonly session: ClientHttp2Session;
  streams: number;
}

export class H2Backend {
  private readonly sessions = new Map<string, Session>();
  private closed = false;

  /** tls: the same verification options the HTTP/1.1 pool uses for https backends. */
  constructor(private readonly tls: SecureContextOptions & { rejectUnauthorized?: boolean } = {}) {}

  /** Sessions open now (for tests). */
  get open(): number {
    return this.sessions.size;
  }

  dispatch(call: H2Call, handler: H2Handler): void {
    new H2Exchange(call, handler).start(() => this.session(call.origin, call.protocol));
  }

  /** The session for an origin: the open one, or a new one. */
  private session(origin: URL, protocol: H2Protocol): Session {
    if (this.closed) throw new ProxyctlError('ERR_SHUTTING_DOWN', 'the connector is shutting down');
    const key = `${protocol} ${origin.origin}`;
    const open = this.sessions.get(key);
    if (open && !open.session.closed && !open.session.destroyed) return open;
    const session = connect(origin.origin, {
      // Frames go out as nghttp2 makes them (HEADERS, then DATA): Nagle would hold the second
      // until the backend's delayed ACK, ~40 ms a call. Node's http2 sets no TCP_NODELAY itself.
      createConnection: () => this.dial(origin, protocol),
    });
    const entry: Session = { session, streams: 0 };
    this.sessions.set(key, entry);
    // A session that closes, fails or is told to go away takes no new streams: the next call
    // opens another. Streams already on it finish (GOAWAY) or fail with it.
    const forget = () => {
      if (this.sessions.get(key) === entry) this.sessions.delete(key);
    };
    session.on('error', forget);
    session.on('close', forget);
    session.on('goaway', forget);
    // A session with nothing to do is closed gracefully; one whose streams are only quiet stays.
    session.setTimeout(IDLE_MS, () => {
      if (entry.streams > 0) return;
      forget();
      session.close();
    });
    // Sessions never hold the process open: the connector's own lifecycle does.
    session.unref();
    return entry;
  }

  private dial(origin: URL, protocol: H2Protocol): Duplex {
    const host = origin.hostname.startsWith('[') ? origin.hostname.slice(1, -1) : origin.hostname;
    const port = Number(origin.port) || (protocol === 'h2' ? 443 : 80);
    if (protocol === 'h2c') return netConnect({ host, port, noDelay: true });
    const socket = tlsConnect({
      ...this.tls,
      host,
      port,
      // SNI names a host, never an address (RFC 6066); the certificate is checked either way.
      ...(isIP(host) ? {} : { servername: host }),
      ALPNProtocols: ['h2'],
    });
    socket.setNoDelay(true);
    return socket;
  }

  close(): void {
    this.closed = true;
    for (const s of this.sessions.values()) s.session.destroy();
    this.sessions.clear();
  }
}

/** One request on a session, with the controller the handler pauses, resumes and aborts it through. */
class H2Exchange implements Dispatcher.DispatchController {
  private stream: ClientHttp2Stream | undefined;
  private failure: Error | null = null;
  private isPaused = false;
  /** onResponseEnd or onResponseError has been called. */
  private settled = false;
  private answered = false;
  /** Sent again once already (see refusedBeforeWork). */
  private retried = false;

  constructor(
    private readonly call: H2Call,
    private readonly handler: H2Handler,
  ) {}

  get aborted(): boolean {
    return this.failure !== null;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  get reason(): Error | null {
    return this.failure;
  }

  abort(reason: Error): void {
    this.fail(reason);
  }

  pause(): void {
    this.isPaused = true;
    this.stream?.pause();
  }

  resume(): void {
    this.isPaused = false;
    this.stream?.resume();
  }

  start(session: () => Session): void {
    this.handler.onRequestStart?.(this, undefined);
    this.open(session);
  }

  private open(session: () => Session): void {
    if (this.failure) return;
    const { call } = this;
    let stream: ClientHttp2Stream;
    let s: Session;
    try {
      s = session();
      stream = s.session.request(h2Headers(call), { endStream: call.body === undefined });
    } catch (err) {
      // Headers HTTP/2 refuses (invalid characters), or the connector is closing.
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.stream = stream;
    s.streams++;
    stream.setTimeout(call.timeoutMs, () =>
      this.fail(
        new ProxyctlError('ERR_BACKEND_TIMEOUT', `the backend was silent for ${Math.round(call.timeoutMs / 1000)} s`),
      ),
    );
    stream.on('response', (headers, flags) => {
      const status = Number(headers[':status']);
      if (flags & constants.NGHTTP2_FLAG_END_STREAM) this.handler.endsWithHeaders = true;
      this.answered = true;
      this.handler.onResponseStart?.(this, status, fields(headers));
    });
    stream.on('data', (chunk: Buffer) => this.handler.onResponseData?.(this, chunk));
    let trailers: IncomingHttpHeaders = {};
    stream.on('trailers', (headers: IncomingHttpHeaders) => {
      trailers = fields(headers);
    });
    stream.on('end', () => {
      if (this.settled) return;
      if (!this.answered) return this.fail(new ProxyctlError('ERR_BACKEND_FAILED', 'the backend sent no response'));
      this.settled = true;
      this.handler.onResponseEnd?.(this, trailers);
    });
    stream.on('error', (err: Error & { code?: string; cause?: unknown }) => {
      if (this.stream !== stream || this.sendAgain(stream, session)) return;
      // A stream cancelled because its session failed carries the session's error (ECONNREFUSED,
      // a certificate error…) as its cause: that is what the failure is classified by.
      this.fail(err.code === 'ERR_HTTP2_STREAM_CANCEL' && err.cause instanceof Error ? err.cause : err);
    });
    stream.on('close', () => {
      s.streams--;
      if (this.stream !== stream || this.sendAgain(stream, session)) return;
      this.unpipeBody();
      if (!this.settled) {
        const code = stream.rstCode;
        this.fail(
          new ProxyctlError(
            'ERR_BACKEND_FAILED',
            `the backend reset the stream (${code === undefined ? 'closed' : `RST_STREAM ${code}`})`,
          ),
        );
      }
    });
    if (call.body) {
      const body = call.body;
      body.on('error', (err) => this.fail(err));
      body.pipe(stream);
    }
    if (this.isPaused) stream.pause();
  }

  /**
   * REFUSED_STREAM (RFC 9113 §8.7): the backend did no work on the request, e.g. it was past
   * the last stream of a GOAWAY. A request without a body is sent once more, on a fresh
   * session; one with a body cannot be, its bytes have been read from the relay.
   */
  private sendAgain(stream: ClientHttp2Stream, session: () => Session): boolean {
    if (this.settled || this.answered || this.retried || this.call.body !== undefined) return false;
    if (stream.rstCode !== constants.NGHTTP2_REFUSED_STREAM) return false;
    this.retried = true;
    this.stream = undefined;
    this.open(session);
    return true;
  }

  private unpipeBody(): void {
    const body = this.call.body;
    if (!body || body.readableEnded) return;
    body.unpipe();
    // The backend is done with the request: the rest of the upload is not needed.
    if (!body.destroyed) body.on('error', () => undefined).destroy();
  }

  /** Ends the call with an error, once: the stream is reset, so the backend never sees a clean end. */
  private fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.failure = err;
    const stream = this.stream;
    if (stream && !stream.closed) stream.close(constants.NGHTTP2_CANCEL);
    this.unpipeBody();
    this.handler.onResponseError?.(this, err);
  }
}

/** The HTTP/1.1-style header list as HTTP/2 fields: pseudo-headers first, names in lower case. */
function h2Headers(call: H2Call): OutgoingHttpHeaders {
  const flat = call.headers;
  const out: OutgoingHttpHeaders = {
    [constants.HTTP2_HEADER_METHOD]: call.method,
    [constants.HTTP2_HEADER_SCHEME]: call.protocol === 'h2' ? 'https' : 'http',
    [constants.HTTP2_HEADER_PATH]: call.path,
  };
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    const value = flat[i + 1]!;
    if (name === 'host') {
      out[constants.HTTP2_HEADER_AUTHORITY] ??= value;
      continue;
    }
    if (NOT_FIELDS.has(name) || name.charCodeAt(0) === 0x3a) continue;
    if (name === 'te') {
      // RFC 9113 §8.2.2: "trailers" is the only value HTTP/2 allows (gRPC requires it).
      if (value.split(',').some((t) => t.trim().toLowerCase() === 'trailers')) out['te'] = 'trailers';
      continue;
    }
    addField(out, name, value);
  }
  return out;
}

/** Response headers or trailers without the pseudo-headers (:status). */
function fields(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (k.charCodeAt(0) !== 0x3a && v !== undefined) out[k] = v;
  return out;
}
