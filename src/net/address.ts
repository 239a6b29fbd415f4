// Address and CIDR rules, one definition for every room: the edge's limits and
// trusted proxies, Conditional Access locations, the embedded provider's
// throttle, the config loader and the connector's loopback checks. Spellings are
// canonicalised by the platform's URL parser (RFC 5952 for IPv6), never by hand.
import { BlockList, isIP } from 'node:net';

export type AddressFamily = 'ipv4' | 'ipv6';

export interface Cidr {
  addr: string;
  bits: number;
  family: AddressFamily;
}

const MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * The one spelling of an address, so two spellings never count apart: IPv4 as
 * is, IPv6 compressed and lower case (RFC 5952), IPv4-mapped IPv6 (in dotted or
 * hex form) as the IPv4 address it carries. A zone id (`fe80::1%eth0`) is
 * dropped: it names an interface of the host that saw the address, not a
 * different client. Anything that is not an address is returned trimmed.
 */
export function canonicalAddress(address: string): string {
  const a = address.trim();
  const v = isIP(a);
  if (v !== 6) return a;
  const zoneAt = a.indexOf('%');
  const bare = zoneAt === -1 ? a : a.slice(0, zoneAt);
  const host = new URL(`http://[${bare}]`).hostname.slice(1, -1);
  const m = MAPPED.exec(host);
  if (m) {
    const hi = parseInt(m[1]!, 16);
    const lo = parseInt(m[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return host;
}

export function familyOf(address: string): AddressFamily | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

/**
 * "10.0.0.0/8", "2001:db8::/32", or a single address ("10.0.0.5" = /32,
 * "::1" = /128). An IPv4-mapped range (::ffff:10.0.0.0/104) is the IPv4 range
 * it carries. Undefined when malformed: a zone id, a prefix with leading zeros
 * or longer than the family allows, a mapped prefix shorter than /96.
 */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return undefined;
  if (m[2] !== undefined && m[2].length > 1 && m[2].startsWith('0')) return undefined;
  if (isIP(m[1]!) === 0) return undefined;
  let bits = m[2] === undefined ? undefined : Number(m[2]);
  const addr = canonicalAddress(m[1]!);
  const family = familyOf(addr)!;
  if (family === 'ipv4' && isIP(m[1]!) === 6) {
    if (bits !== undefined && bits < 96) return undefined;
    if (bits !== undefined) bits -= 96;
  }
  const max = family === 'ipv4' ? 32 : 128;
  bits ??= max;
  if (bits > max) return undefined;
  return { addr, bits, family };
}

/** A set of CIDR ranges; membership of any spelling of an address. */
export class AddressSet {
  private readonly list = new BlockList();
  readonly size: number;

  /** Throws a RangeError naming the first entry that is not a range or an address. */
  constructor(cidrs: readonly string[]) {
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) throw new RangeError(`not a CIDR range or address: ${JSON.stringify(text)}`);
      this.list.addSubnet(c.addr, c.bits, c.family);
    }
    this.size = cidrs.length;
  }

  has(address: string): boolean {
    if (this.size === 0) return false;
    const a = canonicalAddress(address);
    const family = familyOf(a);
    return family !== undefined && this.list.check(a, family);
  }
}

/** Two ranges overlap exactly when one contains the other's first address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const inA = new BlockList();
  inA.addSubnet(a.addr, a.bits, a.family);
  const inB = new BlockList();
  inB.addSubnet(b.addr, b.bits, b.family);
  return inA.check(b.addr, b.family) || inB.check(a.addr, a.family);
}

/** An address as a proxy writes it in X-Forwarded-For: bare, "1.2.3.4:port" or "[v6]" / "[v6]:port". */
export function parseForwardedAddress(entry: string): string | undefined {
  let a = entry.trim();
  const withPort =
    /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(a) ?? /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}):(\d{1,5})$/.exec(a);
  if (withPort) {
    if (withPort[2] !== undefined && Number(withPort[2]) > 65535) return undefined;
    a = withPort[1]!;
  }
  // isIP accepts zone ids (fe80::1%eth0); they mean nothing off the proxy's own host.
  if (a.includes('%') || isIP(a) === 0) return undefined;
  return canonicalAddress(a);
}

/** localhost, *.localhost, 127.0.0.0/8 and ::1 (with or without brackets, any spelling). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 0) return false;
  const a = canonicalAddress(h);
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** The network an address belongs to for throttling: its IPv4 /24 or IPv6 /64. */
export function networkOf(address: string): string {
  const a = canonicalAddress(address);
  const family = familyOf(a);
  if (family === 'ipv4') return `${a.split('.').slice(0, 3).join('.')}.0/24`;
  if (family === 'ipv6') {
    const [head = '', tail] = a.split('::');
    const h = head ? head.split(':') : [];
    const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
    const groups = [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
    return `${canonicalAddress(`${groups.slice(0, 4).join(':')}::`)}/64`;
  }
  return a;
}
