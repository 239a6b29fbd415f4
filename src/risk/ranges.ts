// Sorted tables of address ranges with binary search: the ASN database (half a
// million rows) and the IP lists (100k lines). node:net's BlockList, behind
// AddressSet, checks its rules one by one (5 ms per lookup at 100k ranges), so
// large tables are kept here as typed arrays: IPv4 as one 32-bit word, IPv6 as
// four, a few bytes per row instead of an object each.
import { isIP } from 'node:net';
import { canonicalAddress, type Cidr } from '../net/address.js';

/** An address as 32-bit words, most significant first: one for IPv4, four for IPv6. */
export type AddressKey = Uint32Array;

/** The words of an address (any spelling; IPv4-mapped IPv6 counts as IPv4), or undefined. */
export function addressKey(address: string): AddressKey | undefined {
  if (address.length > 64 || isIP(address.trim()) === 0) return undefined;
  const a = canonicalAddress(address);
  if (isIP(a) === 4) return Uint32Array.of(ipv4Word(a));
  return ipv6Words(a);
}

function ipv4Word(a: string): number {
  const p = a.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

/** Words of a canonical (compressed, hex only: canonicalAddress rewrites dotted tails) IPv6 address. */
function ipv6Words(a: string): AddressKey {
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t].map((g) => parseInt(g, 16));
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0;
  return w;
}

/** First and last address of a range from parseCidr. */
export function cidrBounds(c: Cidr): [AddressKey, AddressKey] {
  const start = c.family === 'ipv4' ? Uint32Array.of(ipv4Word(c.addr)) : ipv6Words(c.addr);
  const end = Uint32Array.from(start);
  let hostBits = start.length * 32 - c.bits;
  for (let i = start.length - 1; i >= 0 && hostBits > 0; i--, hostBits -= 32) {
    const mask = hostBits >= 32 ? 0xffffffff : 2 ** hostBits - 1;
    start[i] = (start[i]! & ~mask) >>> 0;
    end[i] = (end[i]! | mask) >>> 0;
  }
  return [start, end];
}

/** A 128-bit unsigned number (the ASN CSV's IPv6 columns) as four words. */
export function bigKey(n: bigint): AddressKey {
  const w = new Uint32Array(4);
  for (let i = 3; i >= 0; i--) {
    w[i] = Number(n & 0xffffffffn);
    n >>= 32n;
  }
  return w;
}

function compare(a: Uint32Array, ai: number, b: Uint32Array, bi: number, words: number): number {
  for (let k = 0; k < words; k++) {
    const x = a[ai + k]!;
    const y = b[bi + k]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/**
 * Ranges of one family with an integer value each, built once and then only read.
 * Lookup finds the range with the greatest start at or below the address; with
 * `merge` (lists, where only membership matters) overlapping ranges become one,
 * so that answer is exact.
 */
export class RangeTable {
  private starts: Uint32Array;
  private ends: Uint32Array;
  private values: Int32Array;
  private count = 0;
  private sorted = true;

  constructor(
    readonly words: 1 | 4,
    capacity = 1024,
  ) {
    this.starts = new Uint32Array(capacity * words);
    this.ends = new Uint32Array(capacity * words);
    this.values = new Int32Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Bytes held by the typed arrays (after build, which trims them). */
  get bytes(): number {
    return this.starts.byteLength + this.ends.byteLength + this.values.byteLength;
  }

  add(start: AddressKey, end: AddressKey, value = 0): void {
    const w = this.words;
    if (start.length !== w || end.length !== w || compare(start, 0, end, 0, w) > 0) return;
    if (this.count === this.values.length) this.grow();
    const at = this.count * w;
    if (this.count > 0 && compare(this.starts, at - w, start, 0, w) > 0) this.sorted = false;
    this.starts.set(start, at);
    this.ends.set(end, at);
    this.values[this.count++] = value;
  }

  private grow(): void {
    const cap = Math.max(16, this.values.length * 2);
    const s = new Uint32Array(cap * this.words);
    s.set(this.starts);
    const e = new Uint32Array(cap * this.words);
    e.set(this.ends);
    const v = new Int32Array(cap);
    v.set(this.values);
    this.starts = s;
    this.ends = e;
    this.values = v;
  }

  /** Sorts (when rows came out of order), merges when asked, and trims the arrays. */
  build(merge = false): this {
    const w = this.words;
    let order: Uint32Array | undefined;
    if (!this.sorted) {
      order = new Uint32Array(this.count).map((_, i) => i);
      order.sort((a, b) => compare(this.starts, a * w, this.starts, b * w, w));
    }
    const s = new Uint32Array(this.count * w);
    const e = new Uint32Array(this.count * w);
    const v = new Int32Array(this.count);
    let n = 0;
    for (let i = 0; i < this.count; i++) {
      const src = order ? order[i]! : i;
      const from = src * w;
      if (merge && n > 0) {
        const last = (n - 1) * w;
        // Overlapping or adjacent to the previous range: extend it.
        if (compare(this.starts, from, e, last, w) <= 0 || isNext(e, last, this.starts, from, w)) {
          if (compare(this.ends, from, e, last, w) > 0) e.set(this.ends.subarray(from, from + w), last);
          continue;
        }
      }
      s.set(this.starts.subarray(from, from + w), n * w);
      e.set(this.ends.subarray(from, from + w), n * w);
      v[n++] = this.values[src]!;
    }
    this.starts = s.slice(0, n * w);
    this.ends = e.slice(0, n * w);
    this.values = v.slice(0, n);
    this.count = n;
    this.sorted = true;
    return this;
  }

  /** The value of the range holding the address key, or undefined. Call build() first. */
  find(key: AddressKey): number | undefined {
    const w = this.words;
    if (key.length !== w) return undefined;
    let lo = 0;
    let hi = this.count - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(this.starts, mid * w, key, 0, w) <= 0) {
        best = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (best < 0 || compare(key, 0, this.ends, best * w, w) > 0) return undefined;
    return this.values[best];
  }
}

/** b == a + 1, word by word (a range starting right after the previous one ends). */
function isNext(a: Uint32Array, ai: number, b: Uint32Array, bi: number, words: number): boolean {
  let carry = 1;
  for (let k = words - 1; k >= 0; k--) {
    const sum = a[ai + k]! + carry;
    const expect = sum >>> 0;
    carry = sum > 0xffffffff ? 1 : 0;
    if (b[bi + k] !== expect) return false;
  }
  return carry === 0;
}
