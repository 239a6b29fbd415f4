// W3C Trace Context (https://www.w3.org/TR/trace-context/): the relay continues a
// valid incoming `traceparent` (same trace id, a new parent id for its own hop, the
// flags) or starts a trace, and passes `traceparent` and a vetted `tracestate` to the
// backend. Both headers come from strangers: anything malformed starts a new trace,
// and `tracestate` is kept only beside a valid `traceparent`, within 512 characters.
import { randomFillSync } from 'node:crypto';

export interface TraceContext {
  /** 32 lower-case hex digits, never all zero. */
  readonly traceId: string;
  /** This hop's span id: the parent id the backend sees (16 hex digits). */
  readonly spanId: string;
  /** The incoming parent id, when the trace was continued. */
  readonly parentId: string | undefined;
  /** Two hex digits: the sampled (01) and random-trace-id (02) bits as received; others cleared. */
  readonly flags: string;
  /** The `traceparent` header for the backend (version 00). */
  readonly traceparent: string;
  /** The `tracestate` header for the backend, if one came with a valid traceparent. */
  readonly tracestate: string | undefined;
}

export interface Traceparent {
  version: string;
  traceId: string;
  parentId: string;
  flags: string;
}

/** Longest tracestate passed on (the spec asks vendors to propagate at least 512 characters). */
export const TRACESTATE_MAX = 512;
/** Longer inputs are not even parsed. */
const TRACESTATE_INPUT_MAX = 8192;
/** The spec's limit on list members. */
const TRACESTATE_MEMBERS_MAX = 32;
/** Oversize lists first lose members longer than this (the spec's truncation order). */
const TRACESTATE_MEMBER_LONG = 128;

const ZERO_TRACE = '00000000000000000000000000000000';
const ZERO_PARENT = '0000000000000000';

/** Whether value[from, to) is lower-case hex. */
function isHex(value: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

/** What may follow the four fields of a future version: visible ASCII but the comma. */
const FUTURE_FIELDS = /^-[\x21-\x2b\x2d-\x7e]*$/;

/**
 * Parses a traceparent as the spec says: version 00 is exactly 55 characters; a higher
 * version (ff is invalid) is read for its first four fields, which must be followed by the
 * end or a dash. Upper-case hex, an all-zero trace or parent id, wrong lengths and any
 * other junk are refused (undefined). Repeated headers (an array, or Node's joined value)
 * are refused too.
 */
export function parseTraceparent(value: string | string[] | undefined): Traceparent | undefined {
  // version "-" trace-id "-" parent-id "-" flags: dashes at 2, 35 and 52. Checked by hand: a
  // regular expression here cost more than the rest of the trace handling together.
  if (typeof value !== 'string' || value.length < 55 || value.length > 512) return undefined;
  if (value.charCodeAt(2) !== 0x2d || value.charCodeAt(35) !== 0x2d || value.charCodeAt(52) !== 0x2d) return undefined;
  if (!isHex(value, 0, 2) || !isHex(value, 3, 35) || !isHex(value, 36, 52) || !isHex(value, 53, 55)) return undefined;
  const version = value.slice(0, 2);
  if (version === 'ff') return undefined;
  // Version 00 is exactly 55 characters; a later version may carry more fields after a dash.
  // Commas are never allowed: Node joins repeated headers with ", ", and two traceparents are none.
  if (value.length > 55 && (version === '00' || !FUTURE_FIELDS.test(value.slice(55)))) return undefined;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  if (traceId === ZERO_TRACE || parentId === ZERO_PARENT) return undefined;
  return { version, traceId, parentId, flags: value.slice(53, 55) };
}

// tracestate list members (Level 1 grammar): key "=" value.
const KEY = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * A tracestate worth passing on, or undefined: every list member well-formed, keys
 * unique, at most 32 members (an invalid list is dropped whole, as the spec asks). Above
 * 512 characters, members over 128 characters go first, then members from the end.
 */
export function parseTracestate(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text === undefined || text.length > TRACESTATE_INPUT_MAX) return undefined;
  const members: string[] = [];
  const keys: string[] = [];
  for (const raw of text.split(',')) {
    const member = trimOws(raw);
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq <= 0) return undefined;
    const key = member.slice(0, eq);
    if (!KEY.test(key) || !VALUE.test(member.slice(eq + 1)) || keys.includes(key)) return undefined;
    keys.push(key);
    members.push(member);
    if (members.length > TRACESTATE_MEMBERS_MAX) return undefined;
  }
  let out = members.join(',');
  if (out.length > TRACESTATE_MAX) {
    let kept = members.filter((m) => m.length <= TRACESTATE_MEMBER_LONG);
    while (kept.join(',').length > TRACESTATE_MAX) kept = kept.slice(0, -1);
    out = kept.join(',');
  }
  return out === '' ? undefined : out;
}

/** Space and tab around a list member (the spec's OWS). */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** Random bytes as hex, from a pool refilled 4 KiB at a time (one system call per ~170 requests). */
const pool = Buffer.allocUnsafe(4096);
let poolAt = pool.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  const hex = pool.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return hex;
}

/** A new trace id (never all zero). */
export function newTraceId(): string {
  let id = randomHex(16);
  while (id === ZERO_TRACE) id = randomHex(16);
  return id;
}

/** A new span (parent) id (never all zero). */
export function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_PARENT) id = randomHex(8);
  return id;
}

/** A new trace: its id and the relay's span id, from one random string (strings cost more than bytes). */
function newTrace(): { traceId: string; spanId: string } {
  const hex = randomHex(24);
  const traceId = hex.slice(0, 32);
  const spanId = hex.slice(32);
  if (traceId === ZERO_TRACE || spanId === ZERO_PARENT) return { traceId: newTraceId(), spanId: newSpanId() };
  return { traceId, spanId };
}

/** Flags the relay passes on: sampled (01) and random trace id (02); reserved bits are cleared. */
function keptFlags(flags: string): string {
  const f = parseInt(flags, 16) & 0x03;
  return f === 0 ? '00' : f === 1 ? '01' : f === 2 ? '02' : '03';
}

/**
 * The relay's hop of a request's trace: continues a valid incoming traceparent, else
 * starts a trace (sampled: the relay records no spans itself, so it leaves the choice to
 * the backend's tracer, which a parent marked unsampled would switch off).
 */
export function continueTrace(
  traceparent: string | string[] | undefined,
  tracestate: string | string[] | undefined,
): TraceContext {
  const incoming = traceparent === undefined ? undefined : parseTraceparent(traceparent);
  if (!incoming) {
    const { traceId, spanId } = newTrace();
    return {
      traceId,
      spanId,
      parentId: undefined,
      flags: '01',
      traceparent: `00-${traceId}-${spanId}-01`,
      tracestate: undefined,
    };
  }
  const flags = keptFlags(incoming.flags);
  const spanId = newSpanId();
  return {
    traceId: incoming.traceId,
    spanId,
    parentId: incoming.parentId,
    flags,
    traceparent: `00-${incoming.traceId}-${spanId}-${flags}`,
    tracestate: tracestate === undefined ? undefined : parseTracestate(tracestate),
  };
}
