// A raw HTTP/2 client for abuse tests: TLS with ALPN h2, frames written by hand (RFC 9113 §4, §6)
// and a tiny HPACK encoder (literals only, RFC 7541 §6.2, plus indexed references for a
// decompression bomb). It reads what the server sends as frames and keeps what tests assert
// on: GOAWAY (code, last stream), RST_STREAM codes, response statuses and DATA bytes per
// stream, SETTINGS. It answers nothing on its own unless asked (SETTINGS ACK, PING ACK).
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export const FRAME = {
  DATA: 0,
  HEADERS: 1,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ERR = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;
export const SETTING = { INITIAL_WINDOW_SIZE: 4, MAX_CONCURRENT_STREAMS: 3, MAX_HEADER_LIST_SIZE: 6 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` carries the bits above the prefix. */
export function hpackInt(value: number, prefixBits: number, first = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(b.length, 7), b]);
}

/** Literal header fields without indexing, new names (RFC 7541 §6.2.2). */
export function hpackLiterals(headers: [string, string][]): Buffer {
  return Buffer.concat(headers.map(([n, v]) => Buffer.concat([Buffer.from([0]), hpackString(n), hpackString(v)])));
}

/** A literal header field with incremental indexing (enters the dynamic table at index 62). */
export function hpackIndexed(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** `count` references to dynamic-table entry 62: one byte each, each decoding to the whole entry. */
export function hpackRefs(count: number): Buffer {
  return Buffer.alloc(count, 0x80 | 62);
}

/** The request pseudo-headers and headers of a GET (or another method) as a literal block. */
export function requestBlock(authority: string, path: string, method = 'GET', extra: [string, string][] = []): Buffer {
  return hpackLiterals([
    [':method', method],
    [':scheme', 'https'],
    [':authority', authority],
    [':path', path],
    ...extra,
  ]);
}

// Huffman codes of the digits (RFC 7541 Appendix B): a :status value Node sends Huffman-coded.
const DIGIT_CODES: [number, number][] = [
  [0x0, 5],
  [0x1, 5],
  [0x2, 5],
  [0x19, 6],
  [0x1a, 6],
  [0x1b, 6],
  [0x1c, 6],
  [0x1d, 6],
  [0x1e, 6],
  [0x1f, 6],
];
/** Static-table indexes 8–14 are :status 200, 204, 206, 304, 400, 404, 500. */
const STATIC_STATUS = [200, 204, 206, 304, 400, 404, 500];

function huffmanDigits(b: Buffer): string {
  let bits = '';
  for (const x of b) bits += x.toString(2).padStart(8, '0');
  let out = '';
  for (let at = 0; at < bits.length;) {
    const hit = DIGIT_CODES.findIndex(
      ([code, len]) => bits.slice(at, at + len) === code.toString(2).padStart(len, '0'),
    );
    if (hit < 0) break; // the EOS padding (all ones) or a non-digit
    out += String(hit);
    at += DIGIT_CODES[hit]![1];
  }
  return out;
}

/** The :status of a response header block, when it comes first (as Node sends it); 0 when unreadable. */
export function statusOf(block: Buffer): number {
  const b0 = block[0] ?? 0;
  if (b0 >= 0x88 && b0 <= 0x8e) return STATIC_STATUS[b0 - 0x88]!;
  // A literal (with or without indexing, or never indexed) whose name is static entry 8 (:status).
  const nameIndex = (b0 & 0xc0) === 0x40 ? b0 & 0x3f : b0 & 0x0f;
  if (nameIndex < 8 || nameIndex > 14) return 0;
  const len = block[1]! & 0x7f;
  const value = block.subarray(2, 2 + len);
  return Number((block[1]! & 0x80) !== 0 ? huffmanDigits(value) : value.toString('latin1')) || 0;
}

export interface GoAway {
  lastStreamId: number;
  code: number;
}

export interface StreamSeen {
  status?: number;
  dataBytes: number;
  ended: boolean;
  rst?: number;
}

export class RawH2 {
  readonly socket: TLSSocket;
  goaway: GoAway | undefined;
  readonly streams = new Map<number, StreamSeen>();
  readonly serverSettings = new Map<number, number>();
  /** Bytes this client has written (frames and preface). */
  sent = 0;
  closed = false;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();
  /** Answer SETTINGS with ACK (a well-behaved peer); off for tests that must not. */
  ackSettings = true;
  /** DATA bytes received on the connection and not yet given back with WINDOW_UPDATE. */
  unacked = 0;

  private constructor(socket: TLSSocket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.read(d));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(o: {
    port: number;
    host: string;
    ca: string;
    settings?: [number, number][];
    ackSettings?: boolean;
  }): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: o.port,
        servername: o.host,
        ca: o.ca,
        ALPNProtocols: ['h2'],
      });
      socket.once('error', reject);
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        if (socket.alpnProtocol !== 'h2') return reject(new Error(`ALPN chose ${String(socket.alpnProtocol)}`));
        const c = new RawH2(socket);
        if (o.ackSettings === false) c.ackSettings = false;
        const settings = Buffer.alloc(6 * (o.settings?.length ?? 0));
        (o.settings ?? []).forEach(([id, v], i) => {
          settings.writeUInt16BE(id, i * 6);
          settings.writeUInt32BE(v, i * 6 + 2);
        });
        c.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, settings)]));
        resolve(c);
      });
    });
  }

  /** Writes raw bytes; false when the socket is gone or its buffer is full. */
  write(b: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    this.sent += b.length;
    return this.socket.write(b);
  }

  headers(streamId: number, block: Buffer, opts: { endStream?: boolean; endHeaders?: boolean } = {}): Buffer {
    const flags = (opts.endStream !== false ? FLAG.END_STREAM : 0) | (opts.endHeaders !== false ? FLAG.END_HEADERS : 0);
    return frame(FRAME.HEADERS, flags, streamId, block);
  }

  static rst(streamId: number, code: number): Buffer {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code);
    return frame(FRAME.RST_STREAM, 0, streamId, p);
  }

  static windowUpdate(streamId: number, increment: number): Buffer {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(increment);
    return frame(FRAME.WINDOW_UPDATE, 0, streamId, p);
  }

  /** Resolves when `cond` holds (checked after every frame read and at close), or rejects after timeoutMs. */
  until<T>(cond: () => T | undefined | false, timeoutMs = 10_000, what = 'a condition'): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = cond();
        if (v) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`raw h2: timed out waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** The connection is over: GOAWAY read and the socket closed, or just closed. */
  ended(timeoutMs = 10_000): Promise<true> {
    return this.until(() => this.closed || undefined, timeoutMs, 'the connection to close');
  }

  close(): void {
    this.socket.destroy();
  }

  private stream(id: number): StreamSeen {
    let s = this.streams.get(id);
    if (!s) this.streams.set(id, (s = { dataBytes: 0, ended: false }));
    return s;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private read(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : Buffer.from(d);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const type = this.buf[3]!;
      const flags = this.buf[4]!;
      const id = this.buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buf.subarray(9, 9 + len);
      this.buf = this.buf.subarray(9 + len);
      this.onFrame(type, flags, id, payload);
    }
    this.wake();
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    switch (type) {
      case FRAME.SETTINGS:
        if (flags & FLAG.ACK) return;
        for (let i = 0; i + 6 <= payload.length; i += 6)
          this.serverSettings.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
        if (this.ackSettings) this.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
        return;
      case FRAME.PING:
        if (!(flags & FLAG.ACK)) this.write(frame(FRAME.PING, FLAG.ACK, 0, payload));
        return;
      case FRAME.GOAWAY:
        // The first GOAWAY carries the reason; a server may send another as it closes.
        this.goaway ??= { lastStreamId: payload.readUInt32BE(0) & 0x7fffffff, code: payload.readUInt32BE(4) };
        return;
      case FRAME.RST_STREAM:
        this.stream(id).rst = payload.readUInt32BE(0);
        return;
      case FRAME.HEADERS: {
        const s = this.stream(id);
        s.status ??= statusOf(payload);
        if (flags & FLAG.END_STREAM) s.ended = true;
        return;
      }
      case FRAME.DATA: {
        const s = this.stream(id);
        s.dataBytes += payload.length;
        this.unacked += payload.length;
        if (flags & FLAG.END_STREAM) s.ended = true;
        return;
      }
      default:
    }
  }
}
