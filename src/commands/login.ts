// `proxyctl login`: an administrator token by the OAuth device authorization
// grant (RFC 8628, via openid-client), stored per relay so that
// `proxyctl connector register` can use it when no token is given.
import { readFileSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { lookup as dnsLookup } from 'node:dns';
import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';
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
  const t = readStore()[new URL(relayUrl).origin];
  return t && t.expiresAt > now + 30_000 ? t.accessToken : undefined;
}

function saveToken(relayUrl: string, t: StoredToken): void {
  const file = tokenStoreFile();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const all = readStore();
  all[new URL(relayUrl).origin] = t;
  writeFileAtomic(file, `${JSON.stringify(all, null, 2)}\n`, 0o600);
}

/** System roots plus the pinned relay CA (the embedded provider uses the relay's certificates). */
function dispatcherFor(relayCa: string | undefined): Agent {
  return new Agent({
    connect: {
      ...(relayCa ? { ca: [...rootCertificates, relayCa] } : {}),
      // RFC 6761: *.localhost is loopback, whatever the system resolver thinks.
      lookup: (host, opts, cb) =>
        host === 'localhost' || host.endsWith('.localhost')
          ? cb(null, [{ address: '127.0.0.1', family: 4 }])
          : dnsLookup(host, { ...opts, all: true }, cb as never),
    },
  });
}

export async function login(opts: LoginOptions, out: (line: string) => void): Promise<void> {
  const relayCa = opts.relayCa ? readFileSync(opts.relayCa, 'utf8') : undefined;
  const dispatcher = dispatcherFor(relayCa);
  const fetchFn = ((url: string, init: object) => undiciFetch(url, { ...init, dispatcher })) as never;
  try {
    let info: IdentityInfo;
    try {
      const res = await undiciFetch(new URL(API.identity, opts.relay), { dispatcher });
      info = (await res.json()) as IdentityInfo;
    } catch (err) {
      throw classifyNetworkError(err, opts.relay);
    }
    const clientId = opts.clientId ?? info.cliClientId;
    if (!clientId)
      throw new ProxyctlError(
        'ERR_USAGE',
        'this relay uses an external identity provider: pass --client-id with a public client that allows the device flow',
      );
    const config = await oidc.discovery(
      new URL(info.issuer),
      clientId,
      { token_endpoint_auth_method: 'none' },
      oidc.None(),
      { [oidc.customFetch]: fetchFn },
    );
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
