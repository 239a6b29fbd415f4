// Hash routing (#/apps/NAME?x=y): the relay serves one index.html whatever the path,
// and links, back and forward work without the server knowing the pages.
import { useEffect, useState } from 'preact/hooks';

export interface Route {
  /** Decoded path segments: #/apps/web → ['apps', 'web']. */
  path: string[];
  query: URLSearchParams;
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment; // a malformed escape names nothing; the page says not found
  }
}

export function parseHash(hash: string): Route {
  const text = hash.replace(/^#\/?/, '');
  const at = text.indexOf('?');
  const pathText = at < 0 ? text : text.slice(0, at);
  return {
    path: pathText
      .split('/')
      .filter((s) => s !== '')
      .map(decode),
    query: new URLSearchParams(at < 0 ? '' : text.slice(at + 1)),
  };
}

/** A link target: href(['apps', name]) → "#/apps/<name encoded>". */
export function href(path: (string | number)[], query?: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
  const qs = q.toString();
  return `#/${path.map((s) => encodeURIComponent(String(s))).join('/')}${qs ? `?${qs}` : ''}`;
}

export function navigate(path: (string | number)[], query?: Record<string, string | undefined>): void {
  location.hash = href(path, query);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
