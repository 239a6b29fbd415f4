// URL translation: an absolute (or scheme-relative) URL that points into a
// published app's internal URL is rewritten to the same place under the app's
// external URL. Only the leading part (scheme, authority and the internal path
// prefix) is replaced; the rest of the value (path below the prefix, query,
// fragment, surrounding whitespace) is kept byte for byte, so values can be
// translated in their raw form (undecoded text, any ASCII-compatible charset).
// Everything that is not such a URL, relative URLs included, is left alone.

/**
 * One published app: its internal URL and the external URL it is published at. Translators
 * take all published apps (links to other apps are translated too); a list is read once
 * (cached by identity), so pass a new array when the apps change.
 */
export interface UrlMap {
  internal: URL;
  external: URL;
}

/** One replacement inside a string: value.slice(start, end) becomes text. */
export interface UrlEdit {
  start: number;
  end: number;
  /** The text replaced (value.slice(start, end)). */
  original: string;
  /** Its replacement; always ASCII (scheme, host and path serialised by the URL parser). */
  text: string;
}

interface PreparedMap {
  /** 'http:' or 'https:' */
  scheme: string;
  hostname: string;
  /** '' for the scheme's default port. */
  port: string;
  /** Internal path prefix, always ending in "/". */
  prefix: string;
  extScheme: string;
  extHost: string;
  /** External path prefix, always ending in "/". */
  extPrefix: string;
}

const prepared = new WeakMap<readonly UrlMap[], PreparedMap[]>();

/** A path prefix ending in "/". */
export function withSlash(p: string): string {
  return p.endsWith('/') ? p : `${p}/`;
}

function normHost(h: string): string {
  const lower = h.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** The maps usable for translation, most specific (longest internal prefix) first. */
function prepare(maps: readonly UrlMap[]): PreparedMap[] {
  let out = prepared.get(maps);
  if (out) return out;
  out = [];
  for (const m of maps) {
    const scheme = m.internal.protocol;
    if (scheme !== 'http:' && scheme !== 'https:') continue;
    if (m.external.protocol !== 'http:' && m.external.protocol !== 'https:') continue;
    // A wildcard external host (*.apps.example.com) names no single place to translate to.
    if (m.external.hostname.includes('*')) continue;
    out.push({
      scheme,
      hostname: normHost(m.internal.hostname),
      port: m.internal.port,
      prefix: withSlash(m.internal.pathname),
      extScheme: m.external.protocol,
      extHost: m.external.host,
      extPrefix: withSlash(m.external.pathname),
    });
  }
  // Stable: equal prefixes keep the order they were given in.
  out.sort((a, b) => b.prefix.length - a.prefix.length);
  prepared.set(maps, out);
  return out;
}

const DEFAULT_PORT: Record<string, string> = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443' };
/** ws/wss URLs address the same server as http/https. */
const HTTP_EQUIV: Record<string, string> = { 'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:' };
const WS_OF: Record<string, string> = { 'http:': 'ws:', 'https:': 'wss:' };

const hosts = new Map<string, { hostname: string; port: string } | null>();

/** Host and explicit port ('' when none) of an authority, as the URL parser reads them (case, IDNA, IPv4 forms); cached. */
function parseHost(hostPort: string): { hostname: string; port: string } | undefined {
  let found = hosts.get(hostPort);
  if (found === undefined) {
    try {
      const u = new URL(`http://${hostPort}/`);
      // Parsed as http: an explicit port 80 reads back as '' (default).
      found = { hostname: normHost(u.hostname), port: u.port === '' && /:\d+$/.test(hostPort) ? '80' : u.port };
      if (!found.hostname) found = null;
    } catch {
      found = null;
    }
    if (hosts.size >= 1024) hosts.clear();
    if (hostPort.length <= 300) hosts.set(hostPort, found);
  }
  return found ?? undefined;
}

// [scheme:]?[two or more slashes][authority][rest]
const SHAPE = /^((?:[a-zA-Z][a-zA-Z0-9+.-]*:)?)([\\/]{2,})([^\\/?#]*)([^]*)$/;
const DOT_SEGMENT = /(?:^|[\\/])(?:\.|%2e){1,2}(?=[\\/]|$)/i;

/**
 * Where in `value` an internal URL of a published app starts and what its leading part
 * (up to the end of the internal path prefix) becomes; undefined if it is not one.
 * Scheme-relative values take their scheme from `base`, or without a base match
 * an app of either scheme on that host and port.
 */
export function findUrlEdit(value: string, maps: readonly UrlMap[], base?: URL): UrlEdit | undefined {
  if (value.length < 3 || (!value.includes('//') && !value.includes('\\'))) return undefined;
  // Browsers strip leading and trailing C0 controls and spaces: kept, but not part of the URL.
  let from = 0;
  let to = value.length;
  while (from < to && value.charCodeAt(from) <= 0x20) from++;
  while (to > from && value.charCodeAt(to - 1) <= 0x20) to--;
  const m = SHAPE.exec(value.slice(from, to));
  if (!m) return undefined;
  const [, schemeText = '', slashes = '', authority = '', rest = ''] = m;
  const scheme = schemeText.toLowerCase();
  let schemes: string[];
  if (scheme) {
    if (!Object.hasOwn(HTTP_EQUIV, scheme)) return undefined;
    schemes = [scheme];
  } else if (base) {
    if (!Object.hasOwn(HTTP_EQUIV, base.protocol)) return undefined;
    schemes = [base.protocol];
  } else {
    schemes = ['http:', 'https:'];
  }
  const at = authority.lastIndexOf('@');
  const userinfo = at >= 0 ? authority.slice(0, at + 1) : '';
  const host = parseHost(authority.slice(at + 1));
  if (!host) return undefined;
  const { hostname, port: explicitPort } = host;
  const pathEnd = rest.search(/[?#]/);
  const rawPath = pathEnd < 0 ? rest : rest.slice(0, pathEnd);
  // Backslashes and dot segments: the path as browsers resolve it replaces the written one.
  const normalise = rawPath.includes('\\') || DOT_SEGMENT.test(rawPath);
  let path = rawPath || '/';
  if (normalise) {
    try {
      path = new URL(rawPath.replace(/\\/g, '/'), 'http://x').pathname;
    } catch {
      return undefined;
    }
  }
  const start = from;
  const pathStart = start + schemeText.length + slashes.length + authority.length;
  for (const p of prepare(maps)) {
    const s = schemes.find((x) => HTTP_EQUIV[x] === p.scheme);
    if (!s || hostname !== p.hostname) continue;
    const port = explicitPort === DEFAULT_PORT[s] ? '' : explicitPort;
    if (port !== p.port) continue;
    // Only the prefix is replaced: the rest of the path stays as written.
    let mapped: string;
    let replaced: number;
    if (path.startsWith(p.prefix)) {
      mapped = normalise ? p.extPrefix + path.slice(p.prefix.length) : p.extPrefix;
      replaced = normalise ? rawPath.length : Math.min(p.prefix.length, rawPath.length);
    } else if (path === p.prefix.slice(0, -1)) {
      mapped = p.extPrefix.length > 1 ? p.extPrefix.slice(0, -1) : '/';
      replaced = rawPath.length;
    } else {
      continue;
    }
    const extScheme = s === 'ws:' || s === 'wss:' ? WS_OF[p.extScheme]! : p.extScheme;
    const end = pathStart + replaced;
    return { start, end, original: value.slice(start, end), text: `${extScheme}//${userinfo}${p.extHost}${mapped}` };
  }
  return undefined;
}

/**
 * The external equivalent of `value` if it is an absolute or scheme-relative URL
 * under a published app's internal URL (most specific app wins); otherwise undefined.
 * `base` (the URL the value came from, e.g. the app's internal URL) supplies the
 * scheme of scheme-relative values.
 */
export function translateUrl(value: string, maps: readonly UrlMap[], base?: URL): string | undefined {
  const e = findUrlEdit(value, maps, base);
  return e ? applyEdits(value, [e]) : undefined;
}

/** Applies non-overlapping edits (in ascending order), each text mapped through `escape`. */
export function applyEdits(value: string, edits: readonly UrlEdit[], escape: (s: string) => string = (s) => s): string {
  let out = '';
  let pos = 0;
  for (const e of edits) {
    out += value.slice(pos, e.start) + escape(e.text);
    pos = e.end;
  }
  return out + value.slice(pos);
}

/** The edits for the one URL a value holds (Location, href…), offset into the value. */
export function urlEdits(value: string, maps: readonly UrlMap[], base?: URL): UrlEdit[] {
  const e = findUrlEdit(value, maps, base);
  return e ? [e] : [];
}

function shift(e: UrlEdit | undefined, by: number): UrlEdit[] {
  return e ? [{ ...e, start: e.start + by, end: e.end + by }] : [];
}

/**
 * The URL of a refresh value ("5; url=https://…", "0;URL='…'", "3, …"), as the HTML
 * standard parses <meta http-equiv=refresh content> and the Refresh header.
 */
export function refreshEdits(value: string, maps: readonly UrlMap[], base?: URL): UrlEdit[] {
  const m = /^[\t\n\f\r ]*[0-9.]*[\t\n\f\r ]*[;,]?[\t\n\f\r ]*(?:url[\t\n\f\r ]*=[\t\n\f\r ]*)?/i.exec(value);
  if (!m || m[0].length === 0) return [];
  let start = m[0].length;
  let end = value.length;
  const q = value[start];
  if (q === '"' || q === "'") {
    start++;
    const close = value.indexOf(q, start);
    if (close >= 0) end = close;
  }
  return shift(findUrlEdit(value.slice(start, end), maps, base), start);
}

/** Each image candidate URL of a srcset value ("a.png 1x, https://… 2x"). */
export function srcsetEdits(value: string, maps: readonly UrlMap[], base?: URL): UrlEdit[] {
  const out: UrlEdit[] = [];
  const ws = /[\t\n\f\r ]/;
  let i = 0;
  const n = value.length;
  while (i < n) {
    // Skip whitespace and separating commas.
    while (i < n && (ws.test(value[i]!) || value[i] === ',')) i++;
    if (i >= n) break;
    const urlStart = i;
    while (i < n && !ws.test(value[i]!)) i++;
    let urlEnd = i;
    // Trailing commas end the candidate (no descriptors).
    let trailingComma = false;
    while (urlEnd > urlStart && value[urlEnd - 1] === ',') {
      urlEnd--;
      trailingComma = true;
    }
    out.push(...shift(findUrlEdit(value.slice(urlStart, urlEnd), maps, base), urlStart));
    if (trailingComma) continue;
    // Descriptors run to the next comma outside parentheses.
    let depth = 0;
    while (i < n) {
      const c = value[i]!;
      if (c === '(') depth++;
      else if (c === ')') depth = Math.max(0, depth - 1);
      else if (c === ',' && depth === 0) break;
      i++;
    }
  }
  return out;
}
