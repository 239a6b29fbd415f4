// The relay's half of the data plane, on the connector API (mutual TLS): the
// connector pulls a request body, pushes the response (status and headers in
// x-proxyctl-* headers, body streamed), reports a backend failure, or opens a
// tunnel for an upgraded (WebSocket) connection. Only the connector the request
// is queued to (after a failover, the one it moved to) may touch it.
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { finished, pipeline } from 'node:stream';
import type { Duplex } from 'node:stream';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import {
  RESPONSE_HEADERS_HEADER,
  RESPONSE_STATUS_HEADER,
  TUNNEL_PROTOCOL,
  decodeHeaderPairs,
  decodeInlineResponse,
  parseFailureReport,
  type BackendFailure,
  type DataAction,
  type HeaderPairs,
  type InlineResponseHead,
} from '../../protocol/connector-api.js';
import { decodeResponseFrame } from '../../protocol/binary-frames.js';
import type { ConnectorIdentity } from './client-auth.js';
import { responseHeadersForClient, trailersForClient } from '../edge/headers.js';
import { http2StreamOf } from '../../http/http2-compat.js';
import { addField, pairsOf } from '../../net/header-fields.js';
import type { Exchange, RequestQueue } from './queue.js';
import { readJsonBody } from './respond.js';
import { translateResponse } from '../translate/apply.js';

const ID = /^[0-9a-f-]{36}$/;

export function parseDataPath(pathname: string, prefix: string): { id: string; action: DataAction } | undefined {
  if (!pathname.startsWith(prefix)) return undefined;
  const [id, action, extra] = pathname.slice(prefix.length).split('/');
  if (!id || !ID.test(id) || extra !== undefined) return undefined;
  if (action !== 'body' && action !== 'response' && action !== 'error' && action !== 'upgrade') return undefined;
  return { id, action };
}

const FAILURE_STATUS: Record<BackendFailure, number> = {
  ERR_BACKEND_UNREACHABLE: 502,
  ERR_BACKEND_TIMEOUT: 504,
  ERR_APP_UNKNOWN: 502,
  ERR_BACKEND_FAILED: 502,
};

export class DataPlane {
  constructor(
    private readonly queue: RequestQueue,
    private readonly log: Logger,
  ) {}

  private exchangeFor(id: string, who: ConnectorIdentity): Exchange {
    const ex = this.queue.get(id);
    // The same answer for "gone" and "not yours": ids of other connectors are not revealed.
    // A request moved off a dead channel belongs to the connector it moved to (to none while
    // it waits): a connector that was only cut off can neither pull its body nor answer it.
    if (!ex || ex.connectorId !== who.connector.id || ex.state === 'done') {
      throw new ProxyctlError('ERR_REQUEST_NOT_FOUND', `no request ${id} is waiting for this connector`, {
        status: 404,
      });
    }
    return ex;
  }

  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    who: ConnectorIdentity,
    id: string,
    action: DataAction,
  ): Promise<void> {
    const ex = this.exchangeFor(id, who);
    switch (action) {
      case 'body':
        if (req.method !== 'GET')
          throw new ProxyctlError('ERR_METHOD_NOT_ALLOWED', 'use GET for a request body', { status: 405 });
        return this.sendBody(ex, res);
      case 'response':
        if (req.method !== 'POST')
          throw new ProxyctlError('ERR_METHOD_NOT_ALLOWED', 'use POST for a response', { status: 405 });
        return this.receiveResponse(ex, req, res);
      case 'error':
        if (req.method !== 'POST')
          throw new ProxyctlError('ERR_METHOD_NOT_ALLOWED', 'use POST for an error report', { status: 405 });
        return this.receiveFailure(ex, req, res);
      default:
        throw new ProxyctlError('ERR_BAD_REQUEST', 'tunnels are opened with an HTTP upgrade', { status: 400 });
    }
  }

  /** Streams the user's request body to the connector; back-pressure flows both ways. */
  private sendBody(ex: Exchange, res: ServerResponse): void {
    if (!ex.hasBody || ex.bodyTaken)
      throw new ProxyctlError('ERR_REQUEST_NOT_FOUND', 'this request has no body to take', { status: 404 });
    ex.bodyTaken = true;
    // A declared length travels on, so the body is not re-framed in chunks.
    const declared = ex.req.headers['content-length'];
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'cache-control': 'no-store',
      ...(declared !== undefined && ex.req.headers['transfer-encoding'] === undefined
        ? { 'content-length': declared }
        : {}),
    });
    // A body of unknown length may be a stream the user feeds as the answer comes (gRPC
    // bidirectional calls): the connector must be able to call the backend before its first byte.
    if (declared === undefined) res.flushHeaders();
    ex.link(res);
    const upload = ex.req;
    const max = ex.app.maxBodyBytes;
    if (max !== undefined) {
      // Chunked bodies have no declared length: count, and stop at the app's limit.
      let seen = 0;
      const count = (chunk: Buffer) => {
        seen += chunk.length;
        if (seen <= max) return;
        upload.off('data', count);
        upload.unpipe(res);
        res.destroy();
        ex.fail(
          new ProxyctlError('ERR_BODY_TOO_LARGE', `The request body exceeds the ${max} bytes ${ex.app.name} accepts.`, {
            status: 413,
            details: { app: ex.app.name },
          }),
        );
      };
      upload.on('data', count);
    }
    // Slow-body defence: a user who stops sending mid-body is cut after bodyIdleTimeout.
    // A pause caused by back-pressure from the connector is not the user's fault.
    const idleMs = ex.config.limits.bodyIdleTimeoutMs;
    const idle = setTimeout(
      function check(this: DataPlane) {
        if (ex.state === 'done' || upload.readableEnded) return;
        if (res.writableNeedDrain) {
          idle.refresh();
          return;
        }
        this.log.info({ request_id: ex.id, app: ex.app.name, idle_ms: idleMs }, 'request body stalled; refused');
        upload.unpipe(res);
        res.destroy();
        ex.fail(
          new ProxyctlError('ERR_REQUEST_TIMEOUT', `The request body stalled for ${Math.round(idleMs / 1000)} s.`, {
            status: 408,
            details: { app: ex.app.name },
          }),
        );
        // What is left of the body must never be read as another request.
        setTimeout(() => upload.socket?.destroy(), 500).unref();
      }.bind(this),
      idleMs,
    );
    idle.unref();
    upload.on('data', () => idle.refresh());
    // Not pipeline(): when the connector stops reading it would destroy the user's request
    // (detaching its socket), and the user must still get the answer the connector reports.
    upload.pipe(res);
    finished(upload, () => clearTimeout(idle));
    finished(upload, (err) => {
      if (!err || ex.state === 'done') return;
      // The user's upload broke: the backend must not see a "complete" body.
      this.log.info({ request_id: ex.id, app: ex.app.name, err: err.message }, 'request body aborted');
      res.destroy();
      ex.abortUser();
    });
    finished(res, (err) => {
      ex.unlink(res);
      if (!err) return;
      // The connector stopped reading (the backend failed or answered early): drain the rest
      // of the upload so its answer or error page can still be delivered.
      upload.unpipe(res);
      upload.resume();
    });
  }

  private receiveResponse(ex: Exchange, req: IncomingMessage, res: ServerResponse): void {
    const status = Number(req.headers[RESPONSE_STATUS_HEADER]);
    const pairs = decodeHeaderPairs(String(req.headers[RESPONSE_HEADERS_HEADER] ?? ''));
    if (!Number.isInteger(status) || status < 200 || status > 599 || !pairs) {
      req.resume();
      ex.fail(
        new ProxyctlError('ERR_BACKEND_FAILED', `the connector sent an unusable response for ${ex.app.name}`, {
          status: 502,
          details: { app: ex.app.name },
        }),
      );
      throw new ProxyctlError('ERR_BAD_REQUEST', 'response status or headers missing or malformed', { status: 400 });
    }
    const user = ex.res;
    if (!user && ex.socket) return this.declinedUpgrade(ex, req, res, status, pairs);
    if (!user || !ex.startResponding()) {
      req.resume();
      throw new ProxyctlError('ERR_REQUEST_NOT_FOUND', 'this request is no longer waiting for a response', {
        status: 409,
      });
    }
    const translated = translateResponse(ex.config, ex.app, pairs, ex.req.method, status);
    try {
      user.writeHead(status, responseHeadersForClient(translated.headers));
    } catch (err) {
      // Headers Node refuses to send (invalid characters): the backend's fault.
      req.resume();
      ex.state = 'queued';
      ex.fail(
        new ProxyctlError('ERR_BACKEND_FAILED', `${ex.app.name} sent response headers that cannot be forwarded`, {
          status: 502,
          details: { app: ex.app.name },
        }),
      );
      throw new ProxyctlError('ERR_BAD_REQUEST', `invalid response headers: ${(err as Error).message}`, {
        status: 400,
      });
    }
    user.flushHeaders();
    ex.link(req);
    // The backend's trailers are the push's own, known at its end: they go to the user before
    // pipeline() ends the response (this listener is registered first, so it runs first).
    req.once('end', () => {
      if (req.rawTrailers.length) this.addTrailers(ex, user, pairsOf(req.rawTrailers));
    });
    // Done once the user has the whole response: the response's 'close' follows on the
    // next tick and must not read as the user leaving (that would cancel on the connector).
    user.once('finish', () => {
      ex.unlink(req);
      ex.finish();
    });
    const done = (err: Error | null) => {
      ex.unlink(req);
      if (err) {
        // Truncated by the backend or the connector, or the user left: never a clean end.
        this.log.info({ request_id: ex.id, app: ex.app.name, err: err.message }, 'response stream aborted');
        ex.abortUser();
        if (!res.headersSent && !res.destroyed) res.destroy();
        return;
      }
      ex.finish();
      if (!res.headersSent) res.writeHead(204).end();
    };
    if (translated.body) pipeline(req, translated.body, user, done);
    else pipeline(req, user, done);
  }

  /** The backend answered an upgrade with an ordinary response (401, 403, 404…): the user gets it, then the socket closes. */
  private declinedUpgrade(
    ex: Exchange,
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    pairs: HeaderPairs,
  ): void {
    if (!ex.startResponding()) {
      req.resume();
      throw new ProxyctlError('ERR_REQUEST_NOT_FOUND', 'this request is no longer waiting for a response', {
        status: 409,
      });
    }
    const socket = ex.socket!;
    socket.write(
      `${rawHead(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`, responseHeadersForClient(pairs))}connection: close\r\n\r\n`,
    );
    ex.link(req);
    pipeline(req, socket, (err) => {
      ex.unlink(req);
      if (err) {
        ex.abortUser();
        if (!res.headersSent && !res.destroyed) res.destroy();
        return;
      }
      ex.finish();
      if (!res.headersSent) res.writeHead(204).end();
    });
  }

  private async receiveFailure(ex: Exchange, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const report = parseFailureReport(await readJsonBody(req, 16 * 1024));
    if (!report) throw new ProxyctlError('ERR_BAD_REQUEST', 'unknown failure code', { status: 400 });
    ex.fail(
      new ProxyctlError(report.code, report.message, {
        status: FAILURE_STATUS[report.code],
        details: { app: ex.app.name },
      }),
    );
    res.writeHead(204).end();
  }

  /** A small, complete response that came back on the control channel; a malformed frame is reported, for the channel to close. */
  inlineResponse(connectorId: string, frame: Buffer, binary = false): string | undefined {
    // A channel of protocol 2 carries binary response frames; one of protocol 1, a JSON head.
    if (binary) {
      const parsed = decodeResponseFrame(frame);
      if (!parsed.ok) return `malformed response frame: ${parsed.error}`;
      this.inlineDecoded(connectorId, parsed.message);
      return undefined;
    }
    const decoded = decodeInlineResponse(frame);
    if (!decoded) return 'malformed inline response';
    this.inlineDecoded(connectorId, decoded);
    return undefined;
  }

  private inlineDecoded(connectorId: string, decoded: { head: InlineResponseHead; body: Buffer }): void {
    const { head, body } = decoded;
    const ex = this.queue.get(head.id);
    // Only the connector the request is queued to now may answer it.
    if (!ex || ex.connectorId !== connectorId || ex.state === 'done') return;
    const user = ex.res;
    if (head.status < 200 || head.status > 599) {
      ex.fail(
        new ProxyctlError('ERR_BACKEND_FAILED', `the connector sent an unusable response for ${ex.app.name}`, {
          status: 502,
          details: { app: ex.app.name },
        }),
      );
      return;
    }
    if (!user) {
      // A declined upgrade answered inline: write it raw and close.
      if (ex.socket && ex.startResponding()) {
        ex.socket.end(
          Buffer.concat([
            Buffer.from(
              `${rawHead(`HTTP/1.1 ${head.status} ${STATUS_CODES[head.status] ?? 'Unknown'}`, responseHeadersForClient(head.headers))}connection: close\r\n\r\n`,
            ),
            body,
          ]),
        );
        ex.finish();
      }
      return;
    }
    if (!ex.startResponding()) return;
    const translated = translateResponse(ex.config, ex.app, head.headers, ex.req.method, head.status);
    try {
      const flat = responseHeadersForClient(translated.headers);
      // Nothing follows the headers: over HTTP/2 they end the stream (gRPC's trailers-only answer).
      if (body.length === 0 && !head.trailers?.length && endWithHeaders(user, head.status, flat)) {
        ex.finish();
        return;
      }
      user.writeHead(head.status, flat);
    } catch {
      ex.state = 'queued';
      ex.fail(
        new ProxyctlError('ERR_BACKEND_FAILED', `${ex.app.name} sent response headers that cannot be forwarded`, {
          status: 502,
          details: { app: ex.app.name },
        }),
      );
      return;
    }
    user.once('finish', () => ex.finish());
    if (head.trailers?.length && !this.addTrailers(ex, user, head.trailers)) return;
    if (translated.body) {
      pipeline(translated.body, user, (err) => {
        if (err) ex.abortUser();
      });
      translated.body.end(body);
      return;
    }
    user.end(body.length ? body : undefined);
  }

  /**
   * Adds the backend's trailers to the user's response (HTTP/2: a trailing HEADERS frame;
   * HTTP/1.1: chunked trailers). Trailers over the header limits or that Node refuses cut the
   * response instead: a gRPC client must see a failure, not a clean end without its status.
   */
  private addTrailers(ex: Exchange, user: ServerResponse, pairs: HeaderPairs): boolean {
    const { limits } = ex.config;
    const trailers = trailersForClient(pairs, { maxBytes: limits.maxHeaderBytes, maxFields: limits.maxHeaders });
    let problem: string | undefined;
    if (trailers === 'too-large') problem = 'response trailers over the header limits';
    else {
      try {
        user.addTrailers(trailers);
      } catch (err) {
        problem = `invalid response trailers: ${(err as Error).message}`;
      }
    }
    if (problem === undefined) return true;
    this.log.info({ request_id: ex.id, app: ex.app.name, err: problem }, 'response stream aborted');
    ex.abortUser();
    return false;
  }

  /** An upgraded connection: the connector's socket and the user's are joined byte for byte. */
  tunnel(req: IncomingMessage, connectorSocket: Duplex, head: Buffer, who: ConnectorIdentity, id: string): void {
    const ex = this.exchangeFor(id, who);
    const userSocket = ex.socket;
    const status = Number(req.headers[RESPONSE_STATUS_HEADER]);
    const pairs = decodeHeaderPairs(String(req.headers[RESPONSE_HEADERS_HEADER] ?? ''));
    if (!userSocket || status !== 101 || !pairs)
      throw new ProxyctlError('ERR_BAD_REQUEST', 'not an upgrade request, or a malformed tunnel', { status: 400 });
    if (!ex.startResponding())
      throw new ProxyctlError('ERR_REQUEST_NOT_FOUND', 'this request is no longer waiting', { status: 409 });
    connectorSocket.write(
      `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${TUNNEL_PROTOCOL}\r\n\r\n`,
    );
    userSocket.write(`${rawHead('HTTP/1.1 101 Switching Protocols', responseHeadersForClient(pairs, true))}\r\n`);
    if (head.length) userSocket.write(head);
    if (ex.head?.length) connectorSocket.write(ex.head);
    ex.link(connectorSocket);
    const done = () => {
      userSocket.destroy();
      connectorSocket.destroy();
      ex.finish();
    };
    userSocket.on('error', done);
    connectorSocket.on('error', done);
    userSocket.on('close', done);
    connectorSocket.on('close', done);
    userSocket.pipe(connectorSocket);
    connectorSocket.pipe(userSocket);
    this.log.info(
      { request_id: ex.id, app: ex.app.name, connector_id: who.connector.id },
      'upgraded connection established',
    );
  }
}

/** A status line and header lines for a raw socket; lines that could split the head are left out. */
function rawHead(statusLine: string, flat: string[]): string {
  let head = `${statusLine}\r\n`;
  for (let i = 0; i < flat.length; i += 2) {
    if (/[\r\n]/.test(flat[i]!) || /[\r\n]/.test(flat[i + 1]!)) continue;
    head += `${flat[i]}: ${flat[i + 1]}\r\n`;
  }
  return head;
}

/**
 * An HTTP/2 user's response sent as one HEADERS frame with END_STREAM, which the compat API
 * cannot do (it always follows with a DATA or trailers frame). gRPC's trailers-only answer
 * (an error status with no message) must arrive like that or the client reads no status.
 * false: not an HTTP/2 response; the caller answers the usual way.
 */
function endWithHeaders(user: ServerResponse, status: number, flat: string[]): boolean {
  const stream = http2StreamOf(user);
  if (!stream) return false;
  const headers: OutgoingHttpHeaders = {};
  for (let i = 0; i + 1 < flat.length; i += 2) addField(headers, flat[i]!.toLowerCase(), flat[i + 1]!);
  headers[':status'] = status;
  // For the request log, which reads the compat response's status.
  user.statusCode = status;
  stream.respond(headers, { endStream: true });
  return true;
}
