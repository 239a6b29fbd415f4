// Where the relay may send a browser after sign-in: an absolute https URL on
// the very app (host, port and path prefix) that started the sign-in. Anything
// else — other hosts, other apps, scheme tricks, backslashes, encoded slashes,
// control characters — is replaced by the app's root.
import type { AppConfig } from '../../config/relay-config.js';

/** origin: scheme://host[:port] the user reached the app on (wildcard apps have many). */
export function safeReturnTo(app: AppConfig, origin: string, candidate: string | undefined): string {
  const root = `${origin}${app.pathPrefix}`;
  if (!candidate || candidate.length > 4096) return root;
  let decoded: string;
  try {
    decoded = decodeURIComponent(candidate);
  } catch {
    return root;
  }
  // Browsers treat "\" like "/" and strip tabs/newlines: refuse both, raw or encoded.
  // eslint-disable-next-line no-control-regex
  if (/[\\\u0000-\u001f\u007f]/.test(decoded) || /[\\\u0000-\u001f\u007f]/.test(candidate)) return root;
  let url: URL;
  if (candidate.startsWith('/')) {
    // Origin-form only: "//host" and "/%2f%2fhost" are network paths in disguise.
    if (candidate.startsWith('//') || decoded.startsWith('//')) return root;
    url = new URL(candidate, origin);
  } else {
    try {
      url = new URL(candidate);
    } catch {
      return root;
    }
    // Only exactly "https://host" spellings; "https:evil.com" parses but is not that.
    if (
      !candidate.toLowerCase().startsWith(`${origin.toLowerCase()}/`) &&
      candidate.toLowerCase() !== origin.toLowerCase()
    )
      return root;
  }
  if (url.origin !== origin || url.protocol !== 'https:' || url.username || url.password) return root;
  const path = url.pathname;
  if (!(path.startsWith(app.pathPrefix) || `${path}/` === app.pathPrefix)) return root;
  return url.href;
}
