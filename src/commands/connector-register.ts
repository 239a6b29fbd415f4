// `proxyctl connector register`: make a key pair and CSR locally, present them
// with an administrator token, store the issued identity, then prove it works by
// pulling configuration with the new certificate.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { createKeyAndCsr } from '../crypto/csr.js';
import { ProxyctlError } from '../errors.js';
import { RelayClient } from '../connector/relay-client.js';
import { defaultStateDir, keyMatchesCert, writeRegistration } from '../connector/state.js';
import { VERSION } from '../version.js';
import { storedToken } from './login.js';

export interface RegisterOptions {
  relay: string;
  token?: string;
  tokenFile?: string;
  relayCa?: string;
  group?: string;
  name?: string;
  stateDir?: string;
}

export function resolveToken(
  opts: { token?: string; tokenFile?: string },
  env = process.env,
  stored?: () => string | undefined,
): string {
  if (opts.token && opts.tokenFile)
    throw new ProxyctlError('ERR_USAGE', 'give either --token or --token-file, not both');
  let token = opts.token;
  if (opts.tokenFile) {
    try {
      token = readFileSync(opts.tokenFile, 'utf8');
    } catch (err) {
      throw new ProxyctlError(
        'ERR_USAGE',
        `cannot read --token-file ${opts.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  token ??= env['PROXYCTL_TOKEN'];
  token ??= stored?.();
  token = token?.trim();
  if (!token) {
    throw new ProxyctlError(
      'ERR_TOKEN_MISSING',
      'an administrator token is required: --token, --token-file FILE, the PROXYCTL_TOKEN environment variable, or run "proxyctl login" first',
    );
  }
  return token;
}

/** Stable tag on the warning line, for scripts that filter stderr. */
export const TOKEN_ARGUMENT_WARNING = 'WARN_TOKEN_ARGUMENT';

const stderrLine = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

export async function registerConnector(
  opts: RegisterOptions,
  out: (line: string) => void,
  warn: (line: string) => void = stderrLine,
): Promise<void> {
  if (opts.token !== undefined) {
    // Kept for scripts, but any local user can read it from ps or /proc/<pid>/cmdline while we run.
    warn(
      `proxyctl: warning: --token puts the administrator token in the process list; use --token-file FILE or the PROXYCTL_TOKEN environment variable [${TOKEN_ARGUMENT_WARNING}]`,
    );
  }
  let relayUrl: URL;
  try {
    relayUrl = new URL(opts.relay);
  } catch {
    throw new ProxyctlError('ERR_USAGE', `--relay must be an https URL (found ${JSON.stringify(opts.relay)})`);
  }
  if (relayUrl.protocol !== 'https:')
    throw new ProxyctlError('ERR_USAGE', `--relay must be an https URL (found ${JSON.stringify(opts.relay)})`);
  const token = resolveToken(opts, process.env, () => storedToken(relayUrl.href));
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir());
  let pinnedCa: string | undefined;
  if (opts.relayCa) {
    try {
      pinnedCa = readFileSync(opts.relayCa, 'utf8');
      new X509Certificate(pinnedCa);
    } catch (err) {
      throw new ProxyctlError(
        'ERR_USAGE',
        `--relay-ca ${opts.relayCa} is not a readable PEM certificate (${(err as NodeJS.ErrnoException).code ?? 'invalid'})`,
      );
    }
  }
  const name =
    opts.name ??
    hostname()
      .split('.')[0]!
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 64);
  const group = opts.group ?? 'default';

  // Refuse before the relay records anything we could not store.
  writeNewStateGuard(stateDir);

  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const client = new RelayClient(relayUrl.href, { caPem: pinnedCa });
  let issued;
  try {
    issued = await client.register(token, { csr: csrPem, name, group, version: VERSION });
  } finally {
    await client.close();
  }
  if (!keyMatchesCert(keyPem, issued.certificate)) {
    throw new ProxyctlError(
      'ERR_RELAY_REFUSED',
      'the relay returned a certificate for a different key; nothing was stored',
    );
  }
  const cert = new X509Certificate(issued.certificate);
  if (!cert.checkIssued(new X509Certificate(issued.caCertificate))) {
    throw new ProxyctlError(
      'ERR_RELAY_REFUSED',
      'the relay returned a certificate not issued by its CA; nothing was stored',
    );
  }
  writeRegistration(stateDir, {
    relayUrl: relayUrl.href,
    name,
    group,
    keyPem,
    issued,
    issuedAt: new Date(Math.max(Date.parse(cert.validFrom), Date.now())).toISOString(),
  });

  const authed = new RelayClient(relayUrl.href, { caPem: issued.caCertificate, certPem: issued.certificate, keyPem });
  try {
    const cfg = await authed.fetchConfig();
    out(`registered connector ${issued.connectorId} (name ${name}, group ${cfg.group}, ${cfg.apps.length} app(s))`);
  } finally {
    await authed.close();
  }
  out(`certificate serial ${issued.serial}, valid until ${issued.notAfter}`);
  out(`state saved in ${stateDir}; start it with: proxyctl connector run --state-dir ${stateDir}`);
}

function writeNewStateGuard(dir: string): void {
  try {
    readFileSync(path.join(dir, 'cert.pem'));
  } catch {
    return;
  }
  throw new ProxyctlError(
    'ERR_USAGE',
    `${dir} already holds a registered connector; use another --state-dir or remove it first`,
  );
}
