// The per-request control frames of protocol version 2: a queued request (relay →
// connector) and a small complete response (connector → relay), each one binary
// WebSocket message. Version 1 sent the request as JSON text and the response head as
// JSON inside its binary frame. Strings are UTF-8, so any JS string survives the trip
// exactly, as it did through JSON.
//
// All lengths come first, in one table, and the strings follow back to back: a frame
// whose strings are all ASCII (nearly every one: header names and values from Node's
// parser, UUIDs, app names) is written with one string write and read with one string
// read plus substrings, instead of a native call per field, which cost more than JSON.
//
// Request  (kind 0x01): u8 kind, u8 flags (0x01 body follows, 0x02 upgrade), u32 header
//   count n, u32 byte lengths of [id, app, method, target, name1, value1, … name n,
//   value n], then those strings.
// Response (kind 0x02): u8 kind, u8 flags (0), u16 status, u32 header count h, u32
//   trailer count r, u32 byte lengths of [id, h names and values, r names and values],
//   then those strings, then the body (the rest of the frame).
// Integers are big-endian. A frame that does not follow the layout exactly (unknown kind
// or flag, lengths past the end, bytes left over after a request, invalid UTF-8, a field
// over MESSAGE_LIMITS) is refused whole; the receiver closes the channel (CLOSE.protocol).
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
const REQUEST_FIXED = 6;
const RESPONSE_FIXED = 12;

/** Every character below U+0080. */
const ASCII = /^[^\u0080-\uffff]*$/;

/**
 * Writes the length table at `table` and the strings after it; returns the end. ASCII (one
 * test over all of them joined) is written in one call, where a byte is a character; any
 * other text string by string as UTF-8.
 */
function putStrings(buf: Buffer, table: number, strings: readonly string[], joined: string, ascii: boolean): number {
  let pos = table + strings.length * 4;
  if (ascii) {
    for (let i = 0; i < strings.length; i++) buf.writeUInt32BE(strings[i]!.length, table + i * 4);
    return pos + buf.write(joined, pos, 'latin1');
  }
  for (let i = 0; i < strings.length; i++) {
    const n = buf.write(strings[i]!, pos, 'utf8');
    buf.writeUInt32BE(n, table + i * 4);
    pos += n;
  }
  return pos;
}

/** The strings' UTF-8 size: their length when ASCII, else counted. */
function stringBytes(strings: readonly string[], joined: string, ascii: boolean): number {
  if (ascii) return joined.length;
  let n = 0;
  for (const s of strings) n += Buffer.byteLength(s, 'utf8');
  return n;
}

function collect(strings: string[], pairs: HeaderPairs): string {
  let joined = '';
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i]!;
    strings.push(p[0], p[1]);
    joined += p[0] + p[1];
  }
  return joined;
}

/** A request as one frame (the caller checks its size with requestFrameFits). */
export function encodeRequestFrame(msg: QueuedRequest): Buffer {
  const strings = [msg.id, msg.app, msg.method, msg.target];
  const joined = msg.id + msg.app + msg.method + msg.target + collect(strings, msg.headers);
  const ascii = ASCII.test(joined);
  const buf = Buffer.allocUnsafe(REQUEST_FIXED + strings.length * 4 + stringBytes(strings, joined, ascii));
  buf[0] = FRAME_KIND.request;
  buf[1] = (msg.body ? FLAG_BODY : 0) | (msg.upgrade ? FLAG_UPGRADE : 0);
  buf.writeUInt32BE(msg.headers.length, 2);
  putStrings(buf, REQUEST_FIXED, strings, joined, ascii);
  return buf;
}

/** A small complete response as one frame: head and body in a single allocation. */
export function encodeResponseFrame(head: InlineResponseHead, body: Buffer): Buffer {
  const trailers = head.trailers ?? [];
  const strings = [head.id];
  const joined = head.id + collect(strings, head.headers) + collect(strings, trailers);
  const ascii = ASCII.test(joined);
  const size = RESPONSE_FIXED + strings.length * 4 + stringBytes(strings, joined, ascii);
  const buf = Buffer.allocUnsafe(size + body.length);
  buf[0] = FRAME_KIND.response;
  buf[1] = 0;
  buf.writeUInt16BE(head.status, 2);
  buf.writeUInt32BE(head.headers.length, 4);
  buf.writeUInt32BE(trailers.length, 8);
  const pos = putStrings(buf, RESPONSE_FIXED, strings, joined, ascii);
  body.copy(buf, pos);
  return buf;
}

/** Thrown inside a decode only; the decode answers `{ ok: false }` with its message. */
class FrameError extends Error {}

/**
 * Reads `count` strings whose lengths start at `table` and whose bytes follow the table.
 * Returns the strings and where they end. One Latin-1 read covers them all; when it is
 * ASCII, a byte is a character and each string is a substring of it.
 */
function readStrings(frame: Buffer, table: number, count: number): { strings: string[]; end: number } {
  const start = table + count * 4;
  if (count > (frame.length - table) / 4) throw new FrameError('length table past the end of the frame');
  let total = 0;
  for (let i = 0; i < count; i++) total += frame.readUInt32BE(table + i * 4);
  if (total > frame.length - start) throw new FrameError('strings past the end of the frame');
  const strings = new Array<string>(count);
  const text = frame.toString('latin1', start, start + total);
  let at = 0;
  if (ASCII.test(text)) {
    for (let i = 0; i < count; i++) {
      const n = frame.readUInt32BE(table + i * 4);
      strings[i] = text.slice(at, at + n);
      at += n;
    }
  } else {
    for (let i = 0; i < count; i++) {
      const n = frame.readUInt32BE(table + i * 4);
      const from = start + at;
      const s = frame.toString('utf8', from, from + n);
      // Invalid UTF-8 decodes to U+FFFD; a real U+FFFD is valid UTF-8. Only then is the slice checked.
      if (s.includes('\ufffd') && !isUtf8(frame.subarray(from, from + n)))
        throw new FrameError(`string ${i + 1} is not valid UTF-8`);
      strings[i] = s;
      at += n;
    }
  }
  return { strings, end: start + total };
}

function field(s: string, what: string, limit: number): string {
  if (s.length === 0) throw new FrameError(`${what} is empty`);
  if (s.length > limit) throw new FrameError(`${what} is longer than ${limit}`);
  return s;
}

function pairsOf(strings: string[], from: number, count: number): HeaderPairs {
  const out = new Array<[string, string]>(count);
  for (let i = 0; i < count; i++) out[i] = [strings[from + 2 * i]!, strings[from + 2 * i + 1]!];
  return out;
}

function refusal(err: unknown): { ok: false; error: string } {
  if (err instanceof FrameError) return { ok: false, error: err.message };
  throw err;
}

function kindError(frame: Buffer, kind: number): string | undefined {
  if (frame.length > MAX_CONTROL_MESSAGE) return 'frame too large';
  if (frame.length === 0) return 'empty frame';
  const k = frame[0]!;
  return k === kind ? undefined : `frame kind 0x${k.toString(16).padStart(2, '0')} not expected here`;
}

/** Validates a binary frame from the relay as a request (the only binary frame it sends). */
export function decodeRequestFrame(frame: Buffer): Parsed<QueuedRequest> {
  const wrong = kindError(frame, FRAME_KIND.request);
  if (wrong) return { ok: false, error: wrong };
  try {
    if (frame.length < REQUEST_FIXED) throw new FrameError('request: frame truncated');
    const flags = frame[1]!;
    if (flags & ~(FLAG_BODY | FLAG_UPGRADE)) throw new FrameError(`request: unknown flags 0x${flags.toString(16)}`);
    const n = frame.readUInt32BE(2);
    if (n > MAX_CONTROL_MESSAGE / 8) throw new FrameError(`request: ${n} headers cannot fit in a frame`);
    const { strings, end } = readStrings(frame, REQUEST_FIXED, 4 + 2 * n);
    if (end !== frame.length) throw new FrameError(`request: ${frame.length - end} bytes after the headers`);
    const L = MESSAGE_LIMITS;
    const target = strings[3]!;
    if (target.length > L.target) throw new FrameError(`request: target is longer than ${L.target}`);
    return {
      ok: true,
      message: {
        type: 'request',
        id: field(strings[0]!, 'request: id', L.id),
        app: field(strings[1]!, 'request: app', L.name),
        method: field(strings[2]!, 'request: method', L.method),
        target,
        headers: pairsOf(strings, 4, n),
        body: (flags & FLAG_BODY) !== 0,
        upgrade: (flags & FLAG_UPGRADE) !== 0,
      },
    };
  } catch (err) {
    return refusal(err);
  }
}

/** Validates a binary frame from a connector as a small complete response. */
export function decodeResponseFrame(frame: Buffer): Parsed<{ head: InlineResponseHead; body: Buffer }> {
  const wrong = kindError(frame, FRAME_KIND.response);
  if (wrong) return { ok: false, error: wrong };
  try {
    if (frame.length < RESPONSE_FIXED) throw new FrameError('response: frame truncated');
    if (frame[1] !== 0) throw new FrameError(`response: unknown flags 0x${frame[1]!.toString(16)}`);
    const h = frame.readUInt32BE(4);
    const r = frame.readUInt32BE(8);
    if (h + r > MAX_CONTROL_MESSAGE / 8) throw new FrameError(`response: ${h + r} fields cannot fit in a frame`);
    const { strings, end } = readStrings(frame, RESPONSE_FIXED, 1 + 2 * (h + r));
    const head: InlineResponseHead = {
      type: 'response',
      id: field(strings[0]!, 'response: id', MESSAGE_LIMITS.id),
      status: frame.readUInt16BE(2),
      headers: pairsOf(strings, 1, h),
    };
    if (r > 0) head.trailers = pairsOf(strings, 1 + 2 * h, r);
    return { ok: true, message: { head, body: frame.subarray(end) } };
  } catch (err) {
    return refusal(err);
  }
}

/**
 * Whether a request's frame stays within MAX_CONTROL_MESSAGE. Typical requests are far
 * below it and are judged by their string lengths alone (UTF-8 takes at most 3 bytes per
 * UTF-16 unit); only near the bound are the bytes counted.
 */
export function requestFrameFits(msg: QueuedRequest): boolean {
  let chars = msg.id.length + msg.app.length + msg.method.length + msg.target.length;
  for (const [name, value] of msg.headers) chars += name.length + value.length;
  const fixed = REQUEST_FIXED + (4 + 2 * msg.headers.length) * 4;
  if (fixed + chars * 3 <= MAX_CONTROL_MESSAGE) return true;
  let bytes = fixed + Buffer.byteLength(msg.id) + Buffer.byteLength(msg.app) + Buffer.byteLength(msg.method);
  bytes += Buffer.byteLength(msg.target);
  for (const [name, value] of msg.headers) bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  return bytes <= MAX_CONTROL_MESSAGE;
}

/**
 * Whether a request fits in one control message on a channel of either kind: a binary
 * frame (protocol 2) or JSON text (protocol 1), whose escaping can make it larger.
 */
export function requestFits(msg: QueuedRequest, binary: boolean): boolean {
  if (binary) return requestFrameFits(msg);
  let chars = msg.target.length + 1024;
  for (const [name, value] of msg.headers) chars += name.length + value.length + 8;
  // JSON escaping at most sextuples a character (\u00XX); UTF-8 at most triples one.
  if (chars * 6 <= MAX_CONTROL_MESSAGE) return true;
  return Buffer.byteLength(JSON.stringify(msg)) <= MAX_CONTROL_MESSAGE;
}
