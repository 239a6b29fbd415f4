// Identity and routing headers that other proxies and platforms set for their
// backends (oauth2-proxy, Pomerium, Teleport, Cloudflare Access, IAP, Easy Auth,
// path overrides). A client could send them to make a backend believe another
// proxy vouched for a user or rewrote the path, so the relay drops them unless
// an app opts one back in (apps[].forwardHeaders).

const EXACT = new Set([
  // oauth2-proxy and friends
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-groups',
  'x-forwarded-preferred-username',
  'x-forwarded-access-token',
  'x-auth-request-redirect',
  // Teleport, Google IAP, Cloudflare Access, vouch, Grafana/Apache-style auth proxies
  'teleport-jwt-assertion',
  'x-goog-iap-jwt-assertion',
  'cf-access-jwt-assertion',
  'cf-access-authenticated-user-email',
  'x-remote-user',
  'x-remote-email',
  'x-remote-groups',
  'x-remote-group',
  'remote-user',
  // Path and origin overrides that frameworks honour (IIS/Symfony, nginx, Envoy, Spring)
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-original-method',
  'x-envoy-original-path',
  'x-forwarded-uri',
  'x-forwarded-prefix',
  'x-forwarded-path',
  'x-forwarded-port',
  'x-forwarded-scheme',
  'x-forwarded-ssl',
  'x-forwarded-server',
  'x-forwarded-protocol',
  'x-url-scheme',
  'front-end-https',
]);

const PREFIXES = [
  'x-auth-request-',
  'x-pomerium-',
  'x-goog-authenticated-user-',
  'x-amzn-oidc-',
  'x-ms-client-principal',
  'x-ms-token-',
  'x-vouch-',
  'x-webauth-',
];

/**
 * Whether a header name (any case, `_` for `-`) is another proxy's identity or
 * routing header. Names are compared as a backend that folds `_` into `-` would.
 */
export function isForeignProxyHeader(name: string): boolean {
  const n = foreignHeaderKey(name);
  if (EXACT.has(n)) return true;
  for (const p of PREFIXES) if (n.startsWith(p)) return true;
  return false;
}

/** The same name as isForeignProxyHeader compares it, for opt-in lists. */
export function foreignHeaderKey(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}
