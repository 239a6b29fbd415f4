// What kind of client made a sign-in attempt: browser and OS from the user agent
// (bowser), and whether it is a browser, a script, or a native client holding a
// bearer token. A user agent is whatever a stranger sends: it is cut to a fixed
// length and stripped of control and non-ASCII characters before it is parsed
// or stored.
import Bowser from 'bowser';
import type { ClientType } from '../store/types.js';

export interface ClientResult {
  /** The user agent as stored: at most MAX_USER_AGENT printable ASCII characters; null when absent. */
  userAgent: string | null;
  /** Browser name and major version ("Chrome 126"), null when not a known browser. */
  browser: string | null;
  /** Operating system name ("Windows", "macOS", "iOS"), null when unknown. */
  os: string | null;
  clientType: ClientType;
}

/** Request headers as node:http gives them (lower-case names). */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

export interface ClientInput {
  userAgent?: string | null | undefined;
  headers?: HeaderBag | undefined;
  /** The attempt presented a bearer token (a native client or an API caller). */
  bearer?: boolean | undefined;
}

/** Longest user agent kept; real ones stay under 300 characters. */
export const MAX_USER_AGENT = 512;
const MAX_NAME = 40;

/** Printable ASCII only, runs of anything else as one "?"; cut to MAX_USER_AGENT. */
export function cleanUserAgent(raw: string | null | undefined): string | null {
  if (typeof raw !== 'string') return null;
  const clean = raw
    .slice(0, MAX_USER_AGENT * 2)
    .replace(/[^\x20-\x7e]+/g, '?')
    .trim()
    .slice(0, MAX_USER_AGENT);
  return clean || null;
}

function header(headers: HeaderBag | undefined, name: string): string {
  const v = headers?.[name];
  return (Array.isArray(v) ? v.join(',') : typeof v === 'string' ? v : '').slice(0, 1024);
}

/** Headers only browsers send on a navigation: Fetch Metadata, or asking for HTML. */
function hasBrowserHeaders(headers: HeaderBag | undefined): boolean {
  return (
    header(headers, 'sec-fetch-mode') !== '' ||
    header(headers, 'sec-fetch-dest') !== '' ||
    /(^|[\s,])text\/html\b/i.test(header(headers, 'accept'))
  );
}

interface Parsed {
  browser: string | null;
  os: string | null;
  knownBrowser: boolean;
}

/** Parsed user agents; sign-ins repeat a few, and an attacker's variety only evicts. */
const cache = new Map<string, Parsed>();
const CACHE_MAX = 1000;

/** User agents in the parse cache (tests: it stays bounded). */
export const parsedUserAgents = (): number => cache.size;

function parse(ua: string): Parsed {
  const hit = cache.get(ua);
  if (hit) return hit;
  let parsed: Parsed = { browser: null, os: null, knownBrowser: false };
  try {
    const r = Bowser.parse(ua);
    const name = r.browser.name?.slice(0, MAX_NAME) || null;
    const major = /^\d{1,6}/.exec(r.browser.version ?? '')?.[0];
    const bot = r.platform.type === 'bot';
    parsed = {
      browser: name && !bot ? (major ? `${name} ${major}` : name) : null,
      os: r.os.name?.slice(0, MAX_NAME) || null,
      knownBrowser: name !== null && !bot,
    };
  } catch {
    // bowser throws on input it cannot read: an unknown client.
  }
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(ua, parsed);
  return parsed;
}

export function clientOf(input: ClientInput): ClientResult {
  const userAgent = cleanUserAgent(input.userAgent ?? header(input.headers, 'user-agent'));
  const p = userAgent ? parse(userAgent) : { browser: null, os: null, knownBrowser: false };
  const clientType: ClientType = input.bearer
    ? 'bearer'
    : p.knownBrowser && hasBrowserHeaders(input.headers)
      ? 'browser'
      : 'script';
  return { userAgent, browser: p.browser, os: p.os, clientType };
}

/** The browser family and OS a user signs in with, versions left out so an update is not a new client. */
export function clientKey(browser: string | null, os: string | null): string | null {
  if (browser === null && os === null) return null;
  return `${browser?.replace(/ \d+$/, '') ?? '?'}/${os ?? '?'}`;
}
