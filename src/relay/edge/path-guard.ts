// The relay and the backend must agree on which app a path belongs to. The relay
// routes on the path as sent; a backend may read it differently (decode %XX,
// %2F included, merge slashes, drop ;parameters, resolve dot segments, fold case
// on Windows). A path whose backend reading falls under another app, leaves the
// app's internal prefix, or names a relay endpoint in disguise is refused, so a
// sign-in can never be skipped by spelling one app's path through another.
import type { AppConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';

/** Percent-decoding is repeated (double-decoding servers) at most this often. */
const DECODE_ROUNDS = 4;

/** Paths the relay answers itself on every app (relative to the app's prefix). */
const RESERVED = ['.proxyctl/', '.well-known/proxyctl/'];

/** Decodes every %XX into its octet (as one latin1 character); malformed escapes stay. */
function decodeOctets(p: string): string {
  return p.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** RFC 3986 section 5.2.4 on an absolute path. */
function removeDotSegments(p: string): string {
  const segs = p.split('/');
  const out: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 1) out.pop();
      if (i === segs.length - 1) out.push('');
      continue;
    }
    out.push(s);
  }
  return out.length <= 1 ? '/' : out.join('/');
}

/**
 * The path as the most lenient backend could read it, or undefined when no
 * reading is safe (a NUL byte, or escapes nested deeper than any server decodes).
 */
export function backendView(path: string, caseInsensitive: boolean): string | undefined {
  let p = path;
  for (let round = 0; p.includes('%'); round++) {
    const next = decodeOctets(p);
    if (next === p) break;
    if (round === DECODE_ROUNDS) return undefined;
    p = next;
  }
  if (p.includes('\0')) return undefined;
  // Backslashes are separators on Windows servers; ;params are dropped by servlet containers.
  p = p.replace(/\\/g, '/').replace(/;[^/]*/g, '');
  if (caseInsensitive) {
    // Windows also ignores trailing dots and spaces of a name ("admin." is "admin").
    p = p
      .toLowerCase()
      .split('/')
      .map((s) => (s === '.' || s === '..' ? s : s.replace(/[. ]+$/, '')))
      .join('/');
  }
  p = p.replace(/\/{2,}/g, '/');
  return removeDotSegments(p.startsWith('/') ? p : `/${p}`);
}

/** Whether a view falls under a prefix (which always ends in "/"), the bare prefix included. */
function under(view: string, prefix: string): boolean {
  return view.startsWith(prefix) || `${view}/` === prefix;
}

const prefixViews = new WeakMap<AppConfig, { exact: string; folded: string; internal: string }>();

function viewsOf(app: AppConfig): { exact: string; folded: string; internal: string } {
  let v = prefixViews.get(app);
  if (!v) {
    const internal = app.internalUrl.pathname.endsWith('/') ? app.internalUrl.pathname : `${app.internalUrl.pathname}/`;
    v = {
      exact: backendView(app.pathPrefix, false) ?? app.pathPrefix,
      folded: backendView(app.pathPrefix, true) ?? app.pathPrefix,
      internal: backendView(internal, app.caseInsensitivePaths) ?? internal,
    };
    prefixViews.set(app, v);
  }
  return v;
}

/** Characters that let a backend read a path differently from the relay. */
const NEEDS_VIEW = /[%;]|\/\/|\/\.|\.\//;

function ambiguous(why: string): ProxyctlError {
  return new ProxyctlError('ERR_PATH_AMBIGUOUS', `This path is refused: ${why}.`, { status: 400 });
}

/**
 * Checks the app the router matched against the backend's reading of the path.
 * `candidates` are the apps published on the request's host, most specific first;
 * `rest` is the target after the matched prefix, exactly as it goes to the connector.
 */
export function checkBackendView(path: string, rest: string, app: AppConfig, candidates: readonly AppConfig[]): void {
  const ci = app.caseInsensitivePaths;
  if (!ci && !NEEDS_VIEW.test(path)) return;
  const view = backendView(path, ci);
  if (view === undefined) throw ambiguous('it holds a NUL byte or nested percent-escapes');
  const owner = candidates.find((a) => under(view, ci ? viewsOf(a).folded : viewsOf(a).exact));
  if (owner !== app) {
    throw ambiguous(
      owner
        ? `the application's server could read it as a path of ${owner.name}`
        : "the application's server could read it as a path outside every published application",
    );
  }
  const restPath = rest.split('?', 1)[0]!;
  const inner = backendView(`${viewsOf(app).internal}${restPath}`, ci);
  if (inner === undefined || !under(inner, viewsOf(app).internal))
    throw ambiguous("the application's server could read it as a path outside the application");
  const innerRest = inner.slice(viewsOf(app).internal.length);
  for (const r of RESERVED) {
    if (innerRest.startsWith(r) && !restPath.startsWith(r))
      throw ambiguous('it is another spelling of a relay endpoint');
  }
}
