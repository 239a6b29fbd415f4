// `proxyctl login`: an administrator token by the OAuth device authorization
// grant (RFC 8628, via openid-client), stored per relay origin so that
// `proxyctl connector register` and the administration commands (--relay) can use it
// when no token is given. --relay may be the connector API or the admin API.
import { readFileSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import { API_BASE } from '../admin/api-types.js';
import { relayAgent } from '../admin/remote.js';
import { ProxyctlError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { API, type IdentityInfo } from '../protocol/connector-api.js';
import { classifyNetworkError } from '../connector/relay-client.js';

export interface LoginOptions {
  relay: string;
  relayCa?: string;
  clientId?: string;
}

interface StoredToken {
  accessToken: string;
  expiresAt: number;
}

export function tokenStoreFile(): string {
  const dir =
    process.env['PROXYCTL_CONFIG_DIR'] ??
    path.join(process.env['XDG_CONFIG_HOME'] ?? path.join(homedir(), '.config'), 'proxyctl');
  return path.join(dir, 'tokens.json');
}

function readStore(): Record<string, StoredToken> {
  try {
    return JSON.parse(readFileSync(tokenStoreFile(), 'utf8')) as Record<string, StoredToken>;
  } catch {
    return {};
  }
}

/** The stored, unexpired token for a relay, if any. */
export function storedToken(relayUrl: string, now = Date.now()): string | undefined {
  const t = storedTokenState(relayUrl, now);
  return t.state === 'valid' ? t.token : undefined;
}

/** What `proxyctl login` kept for a relay: a usable token, one that expired, or nothing. */
export function storedTokenState(
  relayUrl: string,
  now = Date.now(),
): { state: 'valid'; token: string } | { state: 'expired' | 'absent' } {
  const t = readStore()[new URL(relayUrl).origin];
  if (!t || typeof t.accessToken !== 'string') return { state: 'absent' };
  return t.expiresAt > now + 30_000 ? { state: 'valid', token: t.accessToken } : { state: 'expired' };
}

function saveToken(relayUrl: string, t: StoredToken): void {
  const file = tokenStoreFile();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const all = readStore();
  all[new URL(relayUrl).origin] = t;
  writeFileAtomic(file, `${JSON.stringify(all, null, 2)}\n`, 0o600);
}

/**
 * Where administrators get tokens: the admin API's login-info (when --relay is the admin
 * listener or host), else the connector API's identity document (when it is that).
 */
export async function identityInfo(relay: string, dispatcher: Dispatcher): Promise<IdentityInfo> {
  const tried: string[] = [];
  for (const p of [`${API_BASE}/login-info`, API.identity]) {
    const url = new URL(p, relay);
    let res;
    try {
      res = await undiciFetch(url, { dispatcher, redirect: 'manual', headers: { accept: 'application/json' } });
    } catch (err) {
      throw classifyNetworkError(err, relay);
    }
    const text = await res.text().catch(() => '');
    let info: unknown;
    try {
      info = res.ok ? JSON.parse(text) : undefined;
    } catch {
      info = undefined;
    }
    if (isIdentityInfo(info)) return info;
    tried.push(`${url.pathname} (HTTP ${res.status})`);
  }
  throw new ProxyctlError(
    'ERR_RELAY_REFUSED',
    `${new URL(relay).origin} is neither the relay's admin API nor its connector API: ${tried.join(', ')}`,
  );
}

function isIdentityInfo(v: unknown): v is IdentityInfo {
  const o = v as Partial<IdentityInfo> | null;
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.issuer === 'string' &&
    typeof o.adminAudience === 'string' &&
    (o.cliClientId === undefined || o.cliClientId === null || typeof o.cliClientId === 'string')
  );
}

export async function login(opts: LoginOptions, out: (line: string) => void): Promise<void> {
  const relayCa = opts.relayCa ? readFileSync(opts.relayCa, 'utf8') : undefined;
  const dispatcher = relayAgent(relayCa);
  const fetchFn = ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher })) as never;
  try {
    const info = await identityInfo(opts.relay, dispatcher);
    const clientId = opts.clientId ?? info.cliClientId;
    if (!clientId)
      throw new ProxyctlError(
        'ERR_USAGE',
        'this relay uses an external identity provider: pass --client-id with a public client that allows the device flow',
      );
    const config = await oidc
      .discovery(new URL(info.issuer), clientId, { token_endpoint_auth_method: 'none' }, oidc.None(), {
        [oidc.customFetch]: fetchFn,
      })
      .catch((err: unknown) => {
        // Name the provider (the embedded one has the relay CA's certificate: --relay-ca).
        const e = classifyNetworkError(err, info.issuer);
        throw new ProxyctlError(
          e.code,
          `cannot use the identity provider ${info.issuer}: ${e.message.replace(/^cannot (verify|reach) the relay('s)?/, 'cannot $1 it')}`,
          { cause: err },
        );
      });
    const grant = await oidc.initiateDeviceAuthorization(config, { scope: 'openid', resource: info.adminAudience });
    out(`To sign in, open ${grant.verification_uri_complete ?? grant.verification_uri}`);
    out(`and confirm the code ${grant.user_code} (valid ${Math.round(grant.expires_in / 60)} minutes).`);
    let tokens;
    try {
      tokens = await oidc.pollDeviceAuthorizationGrant(config, grant);
    } catch (err) {
      throw new ProxyctlError(
        'ERR_TOKEN_INVALID',
        `sign-in did not complete: ${(err as { error?: string }).error ?? (err as Error).message}`,
        { cause: err },
      );
    }
    saveToken(opts.relay, {
      accessToken: tokens.access_token,
      expiresAt: Date.now() + (tokens.expires_in ?? 3600) * 1000,
    });
    out(`signed in; token saved for ${new URL(opts.relay).origin} in ${tokenStoreFile()}`);
  } finally {
    await dispatcher.close();
  }
}
