// A real HTTP backend for request-path tests: plain node:http on 127.0.0.1:0.
// Routes are chosen by the last path segment, so an app's internal URL may carry
// any path prefix (/app-a/, /b/…) and requests still reach the same handlers;
// anything unknown is echoed. Large bodies are generated and hashed chunk by chunk.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { WebSocketServer } from 'ws';
import { frameText } from '../../src/net/frames.js';

/** Bytes per generated chunk; every chunk carries its index, so reordering or duplication changes the hash. */
export const PATTERN_CHUNK = 64 * 1024;

const BASE = (() => {
  const out = Buffer.allocUnsafe(PATTERN_CHUNK);
  for (let i = 0; i < PATTERN_CHUNK / 32; i++)
    createHash('sha256')
      .update(`proxyctl-pattern-${i}`)
      .digest()
      .copy(out, i * 32);
  return out;
})();

/** The deterministic bytes [index * PATTERN_CHUNK, index * PATTERN_CHUNK + length). */
export function patternChunk(index: number, length = PATTERN_CHUNK): Buffer {
  const b = Buffer.allocUnsafe(length);
  BASE.copy(b, 0, 0, length);
  if (length >= 4) b.writeUInt32BE(index >>> 0, 0);
  return b;
}

/** The pattern of n bytes, one chunk at a time. */
export function* patternChunks(n: number): Generator<Buffer> {
  for (let i = 0, left = n; left > 0; i++, left -= PATTERN_CHUNK) yield patternChunk(i, Math.min(PATTERN_CHUNK, left));
}

/** A pull-based stream of the pattern (nothing is generated before it is read). */
export function patternStream(n: number, onChunk?: (chunk: Buffer) => void): Readable {
  const it = patternChunks(n);
  return new Readable({
    highWaterMark: PATTERN_CHUNK * 4,
    read() {
      const next = it.next();
      if (next.done) {
        this.push(null);
        return;
      }
      onChunk?.(next.value);
      this.push(next.value);
    },
  });
}

const hashes = new Map<number, string>();
/** sha256 (hex) of the first n pattern bytes, computed chunk by chunk and memoized. */
/** Reads a body to the end; `error` is set when the stream broke instead of ending. */
export async function drain(body: Readable): Promise<{ bytes: number; sha256: string; error: Error | undefined }> {
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    return { bytes, sha256: hash.digest('hex'), error: undefined };
  } catch (err) {
    return { bytes, sha256: '', error: err as Error };
  }
}

export function patternSha256(n: number): string {
  let h = hashes.get(n);
  if (!h) {
    const hash = createHash('sha256');
    for (const c of patternChunks(n)) hash.update(c);
    h = hash.digest('hex');
    hashes.set(n, h);
  }
  return h;
}

/** How one tracked response ended, as the backend saw it. */
export interface Ended {
  tag: string;
  route: string;
  /** The whole response was handed to the socket before it closed. */
  finished: boolean;
  bytes: number;
  sha256: string;
}

export interface EchoBody {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaderNames: string[];
  bodyLength: number;
  bodySha256: string;
}

export interface Backend {
  port: number;
  /** http://127.0.0.1:<port> */
  origin: string;
  /** Requests seen per route ("echo", "bytes", …). */
  hits(route: string): number;
  /** Every request line and header set the backend received, in order. */
  readonly seen: { method: string; url: string; headers: Record<string, string | string[] | undefined> }[];
  /** Resolves when the tracked response with this tag (?tag=) has closed. */
  ended(tag: string, timeoutMs?: number): Promise<Ended>;
  /** SSE events written so far for this tag. */
  sseSent(tag: string): number;
  /** Body bytes handed to the socket so far for the tracked response with this tag (0 before it starts). */
  written(tag: string): number;
  close(): Promise<void>;
  /** Upgrade requests to a /ws-hang path whose sockets are still open. */
  hangingUpgrades(): number;
}

/**
 * A backend that answers every request with the headers it received, as JSON
 * ({ headers }), on 127.0.0.1; closed at the test's teardown. Resolves with its port.
 */
export async function startHeaderEcho(t: { teardown(fn: () => unknown): void }): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ headers: req.headers }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  return (server.address() as AddressInfo).port;
}

export const SET_COOKIES = ['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/; Secure'];
/** The resource /range serves. */
export const RANGE_SIZE = 10_000;

export async function startBackend(): Promise<Backend> {
  const counts = new Map<string, number>();
  const seen: Backend['seen'] = [];
  const endedTags = new Map<string, Ended>();
  const events = new EventEmitter();
  events.setMaxListeners(0);
  const sse = new Map<string, number>();

  const writtenTags = new Map<string, number>();
  const track = (route: string, res: ServerResponse, tag: string | null) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const write = (chunk: Buffer): boolean => {
      hash.update(chunk);
      bytes += chunk.length;
      if (tag) writtenTags.set(tag, bytes);
      return res.write(chunk);
    };
    res.once('close', () => {
      if (!tag) return;
      const e: Ended = { tag, route, finished: res.writableFinished, bytes, sha256: hash.digest('hex') };
      endedTags.set(tag, e);
      events.emit(tag, e);
    });
    return write;
  };

  const server: Server = createServer({ maxHeaderSize: 64 * 1024, keepAliveTimeout: 60_000 }, (req, res) => {
    const url = new URL(req.url ?? '/', 'http://backend.invalid');
    const name = url.pathname.split('/').pop() ?? '';
    const route = [
      'reject-upload',
      'bytes',
      'upload',
      'slow',
      'sse',
      'cookies',
      'range',
      'fail-mid',
      'hang-body',
      'big-header',
      'early-hints',
    ].includes(name)
      ? name
      : 'echo';
    counts.set(route, (counts.get(route) ?? 0) + 1);
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    const tag = url.searchParams.get('tag');
    const write = track(route, res, tag);
    const num = (k: string, d: number) => Number(url.searchParams.get(k) ?? d);

    switch (route) {
      case 'bytes': {
        req.resume();
        const n = num('n', 1024);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
        if (req.method === 'HEAD') return void res.end();
        const it = patternChunks(n);
        const pump = () => {
          for (;;) {
            if (res.destroyed) return;
            const next = it.next();
            if (next.done) return void res.end();
            if (!write(next.value)) return void res.once('drain', pump);
          }
        };
        pump();
        return;
      }
      case 'reject-upload': {
        // Refuses a body it will not read, as a size limit would.
        const text = '{"error":"too large"}';
        res.writeHead(413, { 'content-type': 'application/json', 'content-length': text.length });
        res.end(text);
        return;
      }
      case 'upload': {
        const hash = createHash('sha256');
        let length = 0;
        const read = () => {
          req.on('data', (c: Buffer) => {
            hash.update(c);
            length += c.length;
          });
          req.on('end', () =>
            json(res, 200, {
              sha256: hash.digest('hex'),
              length,
              contentLength: req.headers['content-length'] ?? null,
              transferEncoding: req.headers['transfer-encoding'] ?? null,
            }),
          );
        };
        // ?stallMs=N: a slow backend that reads nothing of the body for N ms.
        const stall = num('stallMs', 0);
        if (stall > 0) setTimeout(read, stall);
        else read();
        return;
      }
      case 'early-hints':
        req.resume();
        // A 103 before the answer: the proxy must pass on the final response only.
        res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
        return void setTimeout(() => json(res, 200, { hinted: true }), 20);
      case 'slow': {
        req.resume();
        // `location`: answer with that Location header (an internal URL the relay may translate).
        const location = url.searchParams.get('location');
        if (location) res.setHeader('location', location);
        const timer = setTimeout(() => json(res, 200, { slept: num('ms', 0) }), num('ms', 0));
        res.once('close', () => clearTimeout(timer));
        return;
      }
      case 'sse': {
        req.resume();
        const n = url.searchParams.has('n') ? num('n', 0) : Infinity;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let i = 0;
        const send = () => {
          if (res.destroyed) return;
          if (i >= n) return void res.end();
          write(Buffer.from(`id: ${i}\ndata: event-${i}\n\n`));
          i++;
          if (tag) sse.set(tag, i);
          timer = setTimeout(send, 100);
        };
        let timer = setTimeout(send, 0);
        res.once('close', () => clearTimeout(timer));
        return;
      }
      case 'cookies':
        req.resume();
        res.setHeader('set-cookie', SET_COOKIES);
        return void json(res, 200, { ok: true });
      case 'range':
        req.resume();
        return void serveRange(req, res);
      case 'fail-mid': {
        req.resume();
        const chunked = url.searchParams.has('chunked');
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          ...(chunked ? {} : { 'content-length': 1024 * 1024 }),
        });
        write(patternChunk(0));
        // Let the first bytes leave, then break the connection mid-body.
        setTimeout(() => res.socket?.destroy(), 150);
        return;
      }
      case 'hang-body':
        req.resume();
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': num('n', 1000) });
        res.flushHeaders();
        return;
      case 'big-header':
        req.resume();
        res.setHeader('x-big', 'b'.repeat(num('n', 12_000)));
        return void json(res, 200, { ok: true });
      default: {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          length += c.length;
        });
        req.on('end', () => {
          const names: string[] = [];
          for (let i = 0; i < req.rawHeaders.length; i += 2) names.push(req.rawHeaders[i]!);
          const body: EchoBody = {
            method: req.method ?? '',
            url: req.url ?? '',
            headers: req.headers,
            rawHeaderNames: names,
            bodyLength: length,
            bodySha256: hash.digest('hex'),
          };
          json(res, 200, body);
        });
      }
    }
  });

  const wss = new WebSocketServer({ noServer: true });
  const hanging = new Set<import('node:stream').Duplex>();
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      if (!isBinary && frameText(data) === 'close') ws.close(4001, 'asked to close');
      else ws.send(data, { binary: isBinary });
    });
  });
  server.on('upgrade', (req, socket, head) => {
    counts.set('ws', (counts.get('ws') ?? 0) + 1);
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } });
    const pathname = new URL(req.url ?? '/', 'http://backend.invalid').pathname;
    // Takes the upgrade request and never answers it (closed with the socket's other end).
    if (pathname.endsWith('/ws-hang')) {
      hanging.add(socket);
      socket.on('error', () => undefined);
      socket.once('close', () => hanging.delete(socket));
      // Read (and drop) what arrives, so the other end's close is seen (the HTTP server's
      // sockets are half-open: the end of the connector's side does not close this one).
      socket.resume();
      socket.once('end', () => socket.destroy());
      return;
    }
    if (!pathname.endsWith('/ws')) {
      // Declines the upgrade with an ordinary response (as an app refusing a socket would).
      socket.end(
        'HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nx-declined: yes\r\ncontent-length: 9\r\nconnection: close\r\n\r\nforbidden',
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    hits: (route) => counts.get(route) ?? 0,
    seen,
    sseSent: (tag) => sse.get(tag) ?? 0,
    written: (tag) => writtenTags.get(tag) ?? 0,
    ended(tag, timeoutMs = 10_000) {
      const known = endedTags.get(tag);
      if (known) return Promise.resolve(known);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          events.off(tag, onEnd);
          reject(new Error(`backend response ${tag} did not close within ${timeoutMs} ms`));
        }, timeoutMs);
        const onEnd = (e: Ended) => {
          clearTimeout(timer);
          resolve(e);
        };
        events.once(tag, onEnd);
      });
    },
    hangingUpgrades: () => hanging.size,
    async close() {
      for (const ws of wss.clients) ws.terminate();
      for (const socket of hanging) socket.destroy();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** One byte range (bytes=a-b, a-, -n) of a RANGE_SIZE resource made of the pattern. */
function serveRange(req: IncomingMessage, res: ServerResponse): void {
  const whole = Buffer.concat([...patternChunks(RANGE_SIZE)]);
  const range = req.headers.range;
  const m = range ? /^bytes=(\d*)-(\d*)$/.exec(range) : null;
  if (!range || !m || (m[1] === '' && m[2] === '')) {
    res.writeHead(200, {
      'accept-ranges': 'bytes',
      'content-length': RANGE_SIZE,
      'content-type': 'application/octet-stream',
    });
    return void res.end(whole);
  }
  let start = m[1] === '' ? RANGE_SIZE - Number(m[2]) : Number(m[1]);
  let end = m[1] === '' || m[2] === '' ? RANGE_SIZE - 1 : Number(m[2]);
  start = Math.max(0, start);
  end = Math.min(end, RANGE_SIZE - 1);
  if (start > end || start >= RANGE_SIZE) {
    res.writeHead(416, { 'content-range': `bytes */${RANGE_SIZE}`, 'content-length': 0 });
    return void res.end();
  }
  res.writeHead(206, {
    'accept-ranges': 'bytes',
    'content-range': `bytes ${start}-${end}/${RANGE_SIZE}`,
    'content-length': end - start + 1,
    'content-type': 'application/octet-stream',
  });
  res.end(whole.subarray(start, end + 1));
}
