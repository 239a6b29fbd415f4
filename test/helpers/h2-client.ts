// node:http2 client for tests against the public listener: sessions that trust the relay CA,
// dial 127.0.0.1 (or another loopback address) whatever host they name, and one-shot requests
// that collect status, headers, body and how the stream ended.
import { connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import type { Readable } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface H2Options {
  /** The relay CA (PEM). */
  ca: string;
  port: number;
  /** Host named in SNI and :authority. */
  host: string;
  /** Dial from this loopback address (e.g. 127.0.0.2). */
  localAddress?: string;
  /** A client certificate and its key (PEM). */
  cert?: string;
  key?: string;
}

export function h2Session(o: H2Options): ClientHttp2Session {
  const session = connect(`https://${o.host}:${o.port}`, {
    createConnection: () => {
      const raw = netConnect({
        host: '127.0.0.1',
        port: o.port,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      });
      return tlsConnect({
        socket: raw,
        servername: o.host,
        ca: o.ca,
        ALPNProtocols: ['h2'],
        ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}),
      });
    },
  });
  session.on('error', () => undefined);
  return session;
}

export interface H2Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** RST_STREAM code the stream ended with (0: none or NO_ERROR). */
  rstCode: number;
}

/** One request; `body` is sent (a Readable is piped) and the whole answer read. */
export function h2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: Buffer | string | Readable,
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let got: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      got = h;
      status = Number(h[':status']);
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('close', () => {
      if (status === 0) reject(new Error(`stream closed without a response (RST ${stream.rstCode})`));
      else resolve({ status, headers: got, body: Buffer.concat(chunks), rstCode: stream.rstCode ?? 0 });
    });
    stream.on('error', () => undefined);
    if (typeof body === 'string' || Buffer.isBuffer(body)) stream.end(body);
    else if (body) body.pipe(stream);
  });
}

/** The protocol a TLS handshake with these ALPN offers settles on. */
export function negotiated(o: H2Options, protocols: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const s: TLSSocket = tlsConnect({
      host: '127.0.0.1',
      port: o.port,
      servername: o.host,
      ca: o.ca,
      ALPNProtocols: protocols,
    });
    s.once('secureConnect', () => {
      resolve(s.alpnProtocol ?? false);
      s.destroy();
    });
    s.once('error', reject);
  });
}

export function closeSession(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.closed || session.destroyed) return resolve();
    session.close(() => resolve());
    setTimeout(() => {
      session.destroy();
      resolve();
    }, 2000).unref();
  });
}
