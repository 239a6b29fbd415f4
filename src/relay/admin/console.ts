// The web console: a relay-owned app on `admin.consoleHost` of the public listener.
// It signs administrators in through the relay's own OpenID Connect flow (session
// cookie, Conditional Access, the sign-in log), then serves the bundled single-page
// app (built into dist/console at build time) and the REST API with the session as
// the caller. Bearer tokens reach the API on this host too, for the CLI.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AppConfig, RelayConfig } from '../../config/relay-config.js';
import { API_BASE, type Caller } from '../../admin/api-types.js';
import type { Logger } from '../../log.js';
import type { Identity } from '../auth/session.js';
import type { ApiAuth } from './api.js';

/** The console's app name (session cookie, metrics, policies' `apps`). Apps may not take it. */
export const CONSOLE_APP = 'proxyctl-console';
/** Never a connector group's name (groups are lower-case letters, digits and dashes): no connector serves it. */
const IN_PROCESS_GROUP = '(relay)';

/** The configuration with the console's app added, when `admin.consoleHost` is set. */
export function withConsole(cfg: RelayConfig): RelayConfig {
  const host = cfg.admin?.consoleHost;
  if (!host || cfg.apps.some((a) => a.name === CONSOLE_APP)) return cfg;
  const app: AppConfig = {
    name: CONSOLE_APP,
    externalUrl: new URL(`https://${host}/`),
    internalUrl: new URL('http://127.0.0.1/'),
    host,
    pathPrefix: '/',
    preauth: 'oidc',
    connectorGroup: IN_PROCESS_GROUP,
    backendTimeoutMs: 85_000,
    passHostHeader: false,
    backendProtocol: 'http1',
    clientId: cfg.identity.clientId,
    clientSecret: cfg.identity.clientSecret,
    // Anyone may sign in; only the administration roles get past the console's own check.
    assignment: 'any',
    assignedUsers: [],
    assignedGroups: [],
    identityHeaders: false,
    caseInsensitivePaths: false,
    forwardHeaders: [],
    sessionLifetimeMs: 8 * 3_600_000,
    // Lax, not Strict: the cookie must come with the redirect back from the provider. Writes
    // are guarded by the anti-CSRF token and the Origin check instead.
    cookie: { sameSite: 'Lax', persistent: false, httpOnly: true },
    translateHeaders: false,
    translateLinks: false,
    maxBodyBytes: 256 * 1024,
    tls: undefined,
  };
  return Object.freeze({ ...cfg, apps: Object.freeze([...cfg.apps, Object.freeze(app)]) });
}

interface Asset {
  body: Buffer;
  type: string;
  immutable: boolean;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
};

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Where the build put the bundle: dist/console beside dist/relay (also when run from src/ by tsx). */
function bundleDir(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const candidate of [path.resolve(here, '../../console'), path.resolve(here, '../../../dist/console')]) {
    try {
      if (statSync(path.join(candidate, 'index.html')).isFile()) return candidate;
    } catch {
      // next
    }
  }
  return undefined;
}

function loadAssets(dir: string): Map<string, Asset> {
  const out = new Map<string, Asset>();
  const walk = (d: string, prefix: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, entry.name);
      if (entry.isDirectory()) walk(full, `${prefix}${entry.name}/`);
      else {
        const ext = path.extname(entry.name);
        out.set(`/${prefix}${entry.name}`, {
          body: readFileSync(full),
          type: TYPES[ext] ?? 'application/octet-stream',
          // Hashed names (app-3f2a9c1b.js) never change content.
          immutable: /-[0-9a-z]{8,}\.[a-z]+$/i.test(entry.name),
        });
      }
    }
  };
  walk(dir, '');
  return out;
}

export interface ConsoleDeps {
  /** The API handler (api.ts). */
  api: (req: IncomingMessage, res: ServerResponse, auth: ApiAuth, requestId?: string) => Promise<void>;
  /** The identity settings in force (admin and reader values). */
  identity: () => RelayConfig['identity'];
  log: Logger;
}

/** The caller a console session is, from the roles its sign-in carried; undefined without either role. */
export function consoleCaller(identity: Identity, cfg: RelayConfig['identity']): Caller | undefined {
  const roles = identity.roles ?? [];
  const role = roles.some((r) => cfg.adminValues.includes(r))
    ? 'admin'
    : roles.some((r) => cfg.readerValues.includes(r))
      ? 'reader'
      : undefined;
  if (!role) return undefined;
  return { subject: identity.sub, name: identity.name ?? identity.email ?? null, role, via: 'session' };
}

export class ConsoleHost {
  #assets: Map<string, Asset> | undefined;
  #missingLogged = false;

  constructor(private readonly deps: ConsoleDeps) {}

  /** Whether the request is for the API with a bearer token (it skips the session sign-in). */
  static isTokenApiRequest(req: IncomingMessage): boolean {
    const url = req.url ?? '/';
    return (url === API_BASE || url.startsWith(`${API_BASE}/`)) && /^bearer\s/i.test(req.headers.authorization ?? '');
  }

  #bundle(): Map<string, Asset> | undefined {
    if (this.#assets) return this.#assets;
    const dir = bundleDir();
    if (!dir) {
      if (!this.#missingLogged)
        this.deps.log.error('the console bundle (dist/console) is missing: run `npm run build`; the API still answers');
      this.#missingLogged = true;
      return undefined;
    }
    this.#assets = loadAssets(dir);
    return this.#assets;
  }

  /** A signed-in request on the console's host: the API with the session, or the bundle. */
  async handle(
    req: IncomingMessage,
    res: ServerResponse,
    identity: Identity,
    sid: string,
    origin: string,
    requestId: string,
  ): Promise<void> {
    const url = req.url ?? '/';
    const caller = consoleCaller(identity, this.deps.identity());
    if (url === API_BASE || url.startsWith(`${API_BASE}/`) || url.startsWith(`${API_BASE}?`)) {
      if (!caller) {
        req.resume();
        return this.#json(res, 403, {
          error: {
            code: 'ERR_FORBIDDEN',
            message: `${identity.email ?? identity.sub} has neither the administrator nor the reader role`,
          },
        });
      }
      return this.deps.api(req, res, { kind: 'session', caller, sid, origin }, requestId);
    }
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    if (!caller) {
      return this.#page(
        res,
        403,
        'No access',
        `You are signed in as ${identity.email ?? identity.sub}, which has neither the administrator nor the reader role of this relay.`,
      );
    }
    const pathname = url.split('?')[0]!;
    const assets = this.#bundle();
    const asset = assets?.get(pathname === '/' ? '/index.html' : pathname);
    if (!asset) {
      if (!assets)
        return this.#page(
          res,
          503,
          'Console not built',
          'The console bundle is missing on this relay: run npm run build.',
        );
      return this.#page(res, 404, 'Not found', 'There is no such page in the console.');
    }
    res.writeHead(200, {
      'content-type': asset.type,
      'content-length': String(asset.body.length),
      'cache-control': asset.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'same-origin',
    });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  }

  #json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    res.end(text);
  }

  #page(res: ServerResponse, status: number, title: string, message: string): void {
    const esc = (s: string) =>
      s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
    const body = `<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)} · proxyctl</title><h1>${esc(title)}</h1><p>${esc(message)}</p><form method="post" action="/.proxyctl/logout"><button>Sign out</button></form></html>`;
    res.writeHead(status, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': String(Buffer.byteLength(body)),
      'cache-control': 'no-store',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
    });
    res.end(body);
  }
}
