// Where an administration command runs: against a relay's admin API (--relay or
// $PROXYCTL_RELAY, with a bearer token) or in-process against the data directory
// (--config / --data-dir), through the same AdminApi either way.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { AdminApi, Caller } from '../admin/api-types.js';
import { loadMasterKey } from '../crypto/master-key.js';
import { ProxyctlError, isProxyctlError } from '../errors.js';
import { openConfiguredStore } from './open-store.js';
import { loadConfigFromOptions } from './load-config.js';

export interface AdminTargetOptions {
  /** The relay's admin API URL; $PROXYCTL_RELAY when absent (and no --config / --data-dir). */
  relay?: string;
  relayCa?: string;
  token?: string;
  tokenFile?: string;
  config?: string;
  dataDir?: string;
}

export interface AdminHandle {
  api: AdminApi;
  close(): Promise<void>;
  remote: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

const usage = (message: string) => new ProxyctlError('ERR_USAGE', message, { status: 400 });

/** The relay URL a command goes to, or undefined to work on the data directory. */
export function remoteTarget(opts: AdminTargetOptions, env: Env = process.env): string | undefined {
  const local = opts.config !== undefined || opts.dataDir !== undefined;
  if (opts.relay !== undefined && local) throw usage('give --relay, or --config / --data-dir, not both');
  if (opts.relay !== undefined) return opts.relay;
  // An explicit --config or --data-dir wins over the environment's relay.
  if (local) return undefined;
  const fromEnv = env['PROXYCTL_RELAY'];
  return fromEnv ? fromEnv : undefined;
}

export async function openAdmin(opts: AdminTargetOptions, env: Env = process.env): Promise<AdminHandle> {
  const relay = remoteTarget(opts, env);
  if (relay === undefined) {
    if (opts.relayCa !== undefined || opts.tokenFile !== undefined || opts.token !== undefined)
      throw usage('--relay-ca and --token-file go with --relay (or $PROXYCTL_RELAY)');
    return openLocal(opts, env);
  }
  // Loaded when used: a command on the data directory starts without the HTTP client.
  const { RemoteAdminApi, adminBaseUrl } = await import('../admin/remote.js');
  const base = adminBaseUrl(relay);
  const caPem = opts.relayCa === undefined ? undefined : readCa(opts.relayCa);
  const api = new RemoteAdminApi({ url: base.href, token: await tokenFor(base, opts, env), caPem });
  return { api, remote: true, close: () => api.close() };
}

/** Runs `fn` on the administration API the options name, and closes it. */
export async function withAdmin<T>(
  opts: AdminTargetOptions,
  fn: (api: AdminApi, remote: boolean) => Promise<T>,
  env: Env = process.env,
): Promise<T> {
  const admin = await openAdmin(opts, env);
  try {
    return await fn(admin.api, admin.remote);
  } finally {
    await admin.close();
  }
}

async function tokenFor(base: URL, opts: AdminTargetOptions, env: Env): Promise<string> {
  const [{ resolveToken }, { storedTokenState }] = await Promise.all([
    import('./connector-register.js'),
    import('./login.js'),
  ]);
  const stored = storedTokenState(base.href);
  try {
    return resolveToken(opts, env, () => (stored.state === 'valid' ? stored.token : undefined));
  } catch (err) {
    if (!isProxyctlError(err, 'ERR_TOKEN_MISSING')) throw err;
    if (stored.state === 'expired')
      throw new ProxyctlError(
        'ERR_TOKEN_EXPIRED',
        `the token proxyctl login saved for ${base.origin} has expired; run proxyctl login --relay ${base.origin}`,
        { status: 401 },
      );
    throw new ProxyctlError(
      'ERR_TOKEN_MISSING',
      `an administrator token is required: --token-file FILE, the PROXYCTL_TOKEN environment variable, or run proxyctl login --relay ${base.origin}`,
      { status: 401 },
    );
  }
}

function readCa(file: string): string {
  try {
    const pem = readFileSync(file, 'utf8');
    new X509Certificate(pem);
    return pem;
  } catch (err) {
    throw usage(
      `--relay-ca ${file} is not a readable PEM certificate (${(err as NodeJS.ErrnoException).code ?? 'invalid'})`,
    );
  }
}

/** The administrator at this terminal, as the audit log names them. */
export function localCaller(): Caller {
  let user = 'unknown';
  try {
    user = userInfo().username;
  } catch {
    // No passwd entry (a container's arbitrary uid): still audited, as cli:unknown.
  }
  return { subject: `cli:${user}`, name: null, role: 'admin', via: 'local' };
}

async function openLocal(opts: AdminTargetOptions, env: Env): Promise<AdminHandle> {
  const config = loadConfigFromOptions({ config: opts.config, dataDir: opts.dataDir });
  // New keys are sealed as the relay seals them.
  const masterKey = loadMasterKey({ file: config.secrets.masterKeyFile, env });
  const { AdminOperations } = await import('../admin/operations.js');
  const store = await openConfiguredStore(config);
  try {
    const api = new AdminOperations({ store, config, caller: localCaller(), ...(masterKey ? { masterKey } : {}) });
    return { api, remote: false, close: () => store.close() };
  } catch (err) {
    await store.close();
    throw err;
  }
}
