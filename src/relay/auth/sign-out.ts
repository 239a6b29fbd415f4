// Sign-out at /.proxyctl/logout: a GET only shows a confirmation page (a link
// anywhere on the web must not sign anyone out); the page's button POSTs, and a
// POST is accepted only from the app's own origin. Signing out also records the
// provider session it ends, so bearer tokens from that session stop working.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppConfig } from '../../config/relay-config.js';
import { ProxyctlError } from '../../errors.js';
import { escapeHtml, sendPage } from '../../http/render.js';
import type { Logger } from '../../log.js';
import type { SessionRepo } from '../../store/index.js';

/**
 * Refuses a cross-site POST (signing a victim out from another site). Browsers send
 * `Sec-Fetch-Site` (Chrome 76+, Firefox 90+, Safari 16.4+) and `Origin` on every POST; a page
 * cannot set either. Sec-Fetch-Site, when present, must be same-origin; Origin, when present,
 * must be the app's origin ("null", sent under a no-referrer policy, only with a same-origin
 * Sec-Fetch-Site). A POST with neither (curl, a script) cannot have been forged by a web page,
 * except by a browser too old to send Origin: for those a Referer from elsewhere is refused.
 * A form token would add nothing these headers do not prove, and would stop apps from
 * offering their own sign-out button.
 */
export function requireSameOrigin(req: IncomingMessage, origin: string): void {
  const site = req.headers['sec-fetch-site'];
  const from = req.headers.origin;
  const referer = req.headers.referer;
  let ok: boolean;
  if (site !== undefined) ok = site === 'same-origin' && (from === undefined || from === 'null' || from === origin);
  else if (from !== undefined) ok = from === origin;
  else ok = referer === undefined || originOf(referer) === origin;
  if (!ok) {
    throw new ProxyctlError(
      'ERR_BAD_REQUEST',
      'Sign-out must be requested from the application itself; a request from another site was refused.',
      {
        status: 403,
        details: { reason: 'cross-origin' },
      },
    );
  }
}

function originOf(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

const STYLE =
  'body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}button{font:inherit;padding:.4rem 1rem}';

/** The confirmation page: one POST form, no script; `endSession` is where the POST will redirect. */
export function signOutPage(
  req: IncomingMessage,
  res: ServerResponse,
  app: AppConfig,
  endSession: URL | undefined,
): void {
  const action = `${app.pathPrefix}.proxyctl/logout`;
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>Sign out</title><style>${STYLE}</style></head>
<body><h1>Sign out of ${escapeHtml(app.name)}?</h1>
<form method="post" action="${escapeHtml(action)}"><button type="submit" id="signout">Sign out</button></form>
<p><a href="${escapeHtml(app.pathPrefix)}">Stay signed in</a></p></body></html>
`;
  // form-action also governs the redirect that answers the POST (Chromium checks it), so the
  // provider's end-session origin is allowed besides this one.
  sendPage(req, res, 200, html, { formAction: `'self'${endSession ? ` ${endSession.origin}` : ''}` });
}

export function signedOutPage(req: IncomingMessage, res: ServerResponse, appRoot: string): void {
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Signed out</title>
<style>${STYLE}</style></head>
<body><h1>You are signed out</h1><p><a href="${escapeHtml(appRoot)}">Sign in again</a></p></body></html>
`;
  sendPage(req, res, 200, html);
}

// ---- provider sessions ended by a sign-out at the relay ----
//
// A relay session remembers the provider's session id (the ID token's `sid`). Signing out
// ends that provider session too (the end-session redirect), and access tokens the provider
// issued in it carry the same `sid` (Keycloak, Entra ID's optional sid claim…): they must stop
// working at the relay though they have not expired. The store keeps the ended sid (every
// relay process on the data directory sees it, and it survives restarts) as long as such a
// token can live. A sign-out done at the provider itself is not seen here: that needs OIDC
// Back-Channel Logout.

/** Longer than any access-token lifetime providers issue by default (Entra ID: 60-90 min). */
export const PROVIDER_TOKEN_MAX_MS = 24 * 3600_000;

export function markProviderSignedOut(
  sessions: SessionRepo,
  log: Logger,
  m: { providerSid: string; app: string; now: number },
): Promise<void> {
  return sessions
    .endProviderSession(m.providerSid, m.now, m.now + PROVIDER_TOKEN_MAX_MS)
    .catch((err: unknown) =>
      log.warn({ app: m.app, err: (err as Error).message }, 'cannot record the signed-out provider session'),
    );
}
