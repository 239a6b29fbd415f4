// The per-request control frames of protocol version 2: a queued request (relay →
// connector) and a small complete response (connector → relay), each one binary
// WebSocket message with a fixed layout and length-prefixed UTF-8 strings. Version 1
// sent the request as JSON text and the response head as JSON inside its binary
// frame; serialising, parsing and validating that JSON was the largest per-request
// cost of the channel after TLS (bench/results/2026-12-07-profile.md). Strings keep
// UTF-8 so any JS string survives the trip exactly, as it did through JSON.
//
// Request  (kind 0x01): u8 kind, u8 flags (0x01 body follows, 0x02 upgrade),
//   u8-length id, u8-length app, u8-length method, u32-length target,
//   u32 header count, then per header a u32-length name and a u32-length value.
// Response (kind 0x02): u8 kind, u8 flags (0), u16 status, u8-length id,
//   u32 header count and pairs, u32 trailer count and pairs, then the body (the rest).
// All integers big-endian. A frame that does not follow the layout exactly (unknown
// kind or flag, a length past the end, bytes left over, invalid UTF-8, a field over
// MESSAGE_LIMITS) is refused whole; the receiver closes the channel (CLOSE.protocol).
import { isUtf8 } from 'node:buffer';
import {
  MAX_CONTROL_MESSAGE,
  MESSAGE_LIMITS,
  type HeaderPairs,
  type InlineResponseHead,
  type Parsed,
  type QueuedRequest,
} from './connector-api.js';

export const FRAME_KIND = { request: 0x01, response: 0x02 } as const;

const FLAG_BODY = 0x01;
const FLAG_UPGRADE = 0x02;

/** The most bytes UTF-8 takes for a JS string of `n` UTF-16 units (a surrogate pair: 4 for 2). */
const utf8Max = (n: number): number => n * 3;

function pairsMax(pairs: HeaderPairs): number {
  let n = 4;
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    n += 8 + utf8Max(p[0].length) + utf8Max(p[1].length);
  }
  return n;
}

/** Writes `s` after a length field of `width` bytes at `pos`; returns the position after it. */
function putString(buf: Buffer, pos: number, s: string, width: 1 | 4): number {
  const n = s.length === 0 ? 0 : buf.write(s, pos + width, 'utf8');
  if (width === 4) buf.writeUInt32BE(n, pos);
  else if (n > 0xff) throw new RangeError(`a short field of ${n} bytes (at most 255)`);
  else buf[pos] = n;
  return pos + width + n;
}

function putPairs(buf: Buffer, pos: number, pairs: HeaderPairs): number {
  buf.writeUInt32BE(pairs.length, pos);
  pos += 4;
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    pos = putString(buf, pos, p[0], 4);
    pos = putString(buf, pos, p[1], 4);
  }
  return pos;
}

/**
 * A request as one frame. The caller keeps id, app and method within MESSAGE_LIMITS (the
 * relay makes them: a UUID, a configured name, a token); the frame's size is checked by
 * the caller against MAX_CONTROL_MESSAGE (requestFrameFits).
 */
export function encodeRequestFrame(msg: QueuedRequest): Buffer {
  const max = 2 + 3 + utf8Max(msg.id.length + msg.app.length + msg.method.length) + 4 + utf8Max(msg.target.length);
  // One allocation at the upper bound (small requests come from Node's pool), no byteLength pass.
  const buf = Buffer.allocUnsafe(max + pairsMax(msg.headers));
  buf[0] = FRAME_KIND.request;
  buf[1] = (msg.body ? FLAG_BODY : 0) | (msg.upgrade ? FLAG_UPGRADE : 0);
  let pos = putString(buf, 2, msg.id, 1);
  pos = putString(buf, pos, msg.app, 1);
  pos = putString(buf, pos, msg.method, 1);
  pos = putString(buf, pos, msg.target, 4);
  pos = putPairs(buf, pos, msg.headers);
  return buf.subarray(0, pos);
}

/** A small complete response as one frame: head and body in a single allocation. */
export function encodeResponseFrame(head: InlineResponseHead, body: Buffer): Buffer {
  const max = 5 + utf8Max(head.id.length) + pairsMax(head.headers) + pairsMax(head.trailers ?? []);
  const buf = Buffer.allocUnsafe(max + body.length);
  buf[0] = FRAME_KIND.response;
  buf[1] = 0;
  buf.writeUInt16BE(head.status, 2);
  let pos = putString(buf, 4, head.id, 1);
  pos = putPairs(buf, pos, head.headers);
  pos = putPairs(buf, pos, head.trailers ?? []);
  pos += body.copy(buf, pos);
  return buf.subarray(0, pos);
}

/** Thrown inside a decode only; the decode answers `{ ok: false }` with its message. */
class FrameError extends Error {}

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  get left(): number {
    return this.buf.length - this.pos;
  }

  u8(): number {
    if (this.left < 1) throw new FrameError('frame truncated');
    return this.buf[this.pos++]!;
  }

  u16(): number {
    if (this.left < 2) throw new FrameError('frame truncated');
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    if (this.left < 4) throw new FrameError('frame truncated');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A string of `n` bytes of valid UTF-8, at most `limit` characters once decoded. */
  string(n: number, what: string, limit: number): string {
    if (n > this.left) throw new FrameError(`${what}: length past the end of the frame`);
    const start = this.pos;
    this.pos += n;
    if (n === 0) return '';
    const s = this.buf.toString('utf8', start, this.pos);
    // Invalid UTF-8 decodes to U+FFFD; a real U+FFFD is valid UTF-8. Only then is the slice checked.
    if (s.includes('\ufffd') && !isUtf8(this.buf.subarray(start, this.pos)))
      throw new FrameError(`${what}: not valid UTF-8`);
    if (s.length > limit) throw new FrameError(`${what}: longer than ${limit}`);
    return s;
  }

  pairs(what: string): HeaderPairs {
    const count = this.u32();
    // Each pair takes at least its two length fields: a count the frame cannot hold is refused
    // before anything is allocated for it.
    if (count > this.left / 8) throw new FrameError(`${what}: ${count} pairs cannot fit in the frame`);
    const out = new Array<[string, string]>(count);
    for (let i = 0; i < count; i++) {
      const name = this.string(this.u32(), `${what} name`, MAX_CONTROL_MESSAGE);
      out[i] = [name, this.string(this.u32(), `${what} value`, MAX_CONTROL_MESSAGE)];
    }
    return out;
  }
}

function decode<T>(frame: Buffer, kind: number, read: (r: Reader) => T): Parsed<T> {
  if (frame.length > MAX_CONTROL_MESSAGE) return { ok: false, error: 'frame too large' };
  const r = new Reader(frame);
  try {
    const k = r.u8();
    if (k !== kind) return { ok: false, error: `frame kind 0x${k.toString(16).padStart(2, '0')} not expected here` };
    return { ok: true, message: read(r) };
  } catch (err) {
    if (err instanceof FrameError) return { ok: false, error: err.message };
    throw err;
  }
}

const nonEmpty = (s: string, what: string): string => {
  if (s.length === 0) throw new FrameError(`${what} is empty`);
  return s;
};

/** Validates a binary frame from the relay as a request (the only binary frame it sends). */
export function decodeRequestFrame(frame: Buffer): Parsed<QueuedRequest> {
  const L = MESSAGE_LIMITS;
  return decode(frame, FRAME_KIND.request, (r) => {
    const flags = r.u8();
    if (flags & ~(FLAG_BODY | FLAG_UPGRADE)) throw new FrameError(`request: unknown flags 0x${flags.toString(16)}`);
    const id = nonEmpty(r.string(r.u8(), 'request: id', L.id), 'request: id');
    const app = nonEmpty(r.string(r.u8(), 'request: app', L.name), 'request: app');
    const method = nonEmpty(r.string(r.u8(), 'request: method', L.method), 'request: method');
    const target = r.string(r.u32(), 'request: target', L.target);
    const headers = r.pairs('request: header');
    if (r.left !== 0) throw new FrameError(`request: ${r.left} bytes after the headers`);
    return {
      type: 'request',
      id,
      app,
      method,
      target,
      headers,
      body: (flags & FLAG_BODY) !== 0,
      upgrade: (flags & FLAG_UPGRADE) !== 0,
    };
  });
}

/** Validates a binary frame from a connector as a small complete response. */
export function decodeResponseFrame(frame: Buffer): Parsed<{ head: InlineResponseHead; body: Buffer }> {
  return decode(frame, FRAME_KIND.response, (r) => {
    const flags = r.u8();
    if (flags !== 0) throw new FrameError(`response: unknown flags 0x${flags.toString(16)}`);
    const status = r.u16();
    const id = nonEmpty(r.string(r.u8(), 'response: id', MESSAGE_LIMITS.id), 'response: id');
    const headers = r.pairs('response: header');
    const trailers = r.pairs('response: trailer');
    const head: InlineResponseHead = { type: 'response', id, status, headers };
    if (trailers.length) head.trailers = trailers;
    return { head, body: frame.subarray(r.pos) };
  });
}

/**
 * Whether a request's frame stays within MAX_CONTROL_MESSAGE. Typical requests are far
 * below it and are judged by their string lengths alone; only near the bound are the
 * UTF-8 bytes counted.
 */
export function requestFrameFits(msg: QueuedRequest): boolean {
  let chars = msg.id.length + msg.app.length + msg.method.length + msg.target.length;
  for (const [name, value] of msg.headers) chars += name.length + value.length;
  const fixed = 2 + 3 + 4 + 4 + msg.headers.length * 8;
  if (fixed + utf8Max(chars) <= MAX_CONTROL_MESSAGE) return true;
  let bytes = fixed + Buffer.byteLength(msg.id) + Buffer.byteLength(msg.app) + Buffer.byteLength(msg.method);
  bytes += Buffer.byteLength(msg.target);
  for (const [name, value] of msg.headers) bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  return bytes <= MAX_CONTROL_MESSAGE;
}
