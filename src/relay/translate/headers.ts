// Response headers that carry URLs of the backend: Location, Content-Location,
// Refresh and Link are translated to the external URLs of the published apps;
// Set-Cookie Domain and Path attributes are moved from the internal host and
// path prefix to the external ones. Names and everything else are kept as given,
// and a value that cannot be understood is passed on unchanged.
import { isIP } from 'node:net';
import type { HeaderPairs } from '../../protocol/connector-api.js';
import { applyEdits, refreshEdits, urlEdits, withSlash, type UrlEdit, type UrlMap } from './urls.js';

type EditsOf = (value: string, maps: readonly UrlMap[], base?: URL) => UrlEdit[];

/** Each <URI-Reference> of a Link header ("<…>; rel=preload, <…>; rel=next"). */
export function linkHeaderEdits(value: string, maps: readonly UrlMap[], base?: URL): UrlEdit[] {
  const out: UrlEdit[] = [];
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') {
      quoted = true;
    } else if (c === '<') {
      const close = value.indexOf('>', i + 1);
      if (close < 0) break;
      for (const e of urlEdits(value.slice(i + 1, close), maps, base))
        out.push({ ...e, start: e.start + i + 1, end: e.end + i + 1 });
      i = close;
    }
  }
  return out;
}

const URL_HEADERS = new Map<string, EditsOf>([
  ['location', urlEdits],
  ['content-location', urlEdits],
  ['refresh', refreshEdits],
  ['link', linkHeaderEdits],
]);

/** A Set-Cookie value with Domain and Path moved from the app's internal URL to its external one. */
export function translateSetCookie(value: string, app: { internal: URL; external: URL }): string {
  const parts = value.split(';');
  if (parts.length < 2) return value;
  const internalHost = app.internal.hostname
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  const internalIsIp = isIP(internalHost) !== 0;
  const externalHost = app.external.hostname.toLowerCase();
  const internalPrefix = withSlash(app.internal.pathname);
  const externalPrefix = withSlash(app.external.pathname);
  const out = [parts[0]!];
  for (const part of parts.slice(1)) {
    const m = /^(\s*)(domain|path)(\s*=\s*)(.*?)(\s*)$/is.exec(part);
    if (!m) {
      out.push(part);
      continue;
    }
    const [, lead, name, eq, v, trail] = m as unknown as [string, string, string, string, string, string];
    if (name.toLowerCase() === 'domain') {
      const domain = v
        .toLowerCase()
        .replace(/^\./, '')
        .replace(/^\[|\]$/g, '')
        .replace(/\.$/, '');
      const covers =
        domain !== '' && (domain === internalHost || (!internalIsIp && internalHost.endsWith(`.${domain}`)));
      if (!covers) out.push(part);
      // An IP address (or a wildcard external host) has no domain to name: a host-only cookie.
      else if (!internalIsIp && !externalHost.includes('*')) out.push(`${lead}${name}${eq}${externalHost}${trail}`);
      continue;
    }
    let path: string | undefined;
    if (v.startsWith(internalPrefix)) path = externalPrefix + v.slice(internalPrefix.length);
    else if (v === internalPrefix.slice(0, -1) && v !== '')
      path = externalPrefix.length > 1 ? externalPrefix.slice(0, -1) : '/';
    out.push(path === undefined ? part : `${lead}${name}${eq}${path}${trail}`);
  }
  return out.join(';');
}

/**
 * The response headers with backend URLs translated: Location, Content-Location,
 * Refresh and Link through all published apps (`maps`; `app` preferred where several
 * publish the same internal URL; scheme-relative values take the scheme of app.internal),
 * Set-Cookie Domain/Path through the responding `app`. Never throws; unknown or malformed
 * values pass unchanged (the same pair).
 */
export function translateResponseHeaders(pairs: HeaderPairs, app: UrlMap, maps: readonly UrlMap[]): HeaderPairs {
  // The responding app first: of apps publishing the same internal URL, its own external URL wins.
  // A list that already starts with it is used as is (translators cache their work per list).
  const ordered: readonly UrlMap[] = maps[0] === app ? maps : [app, ...maps];
  return pairs.map((pair): [string, string] => {
    const [name, value] = pair;
    const lower = name.toLowerCase();
    try {
      if (lower === 'set-cookie') return [name, translateSetCookie(value, app)];
      const edits = URL_HEADERS.get(lower);
      if (!edits) return pair;
      const found = edits(value, ordered, app.internal);
      return found.length ? [name, applyEdits(value, found)] : pair;
    } catch {
      return pair;
    }
  });
}
