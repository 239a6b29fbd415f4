// `proxyctl connector register`: make a key pair and CSR locally, present them
// with an administrator token, store the issued identity, then prove it works by
// pulling configuration with the new certificate. The key, CSR and a random
// idempotency key are saved before the request is sent: when its answer is lost
// (relay gone, connection cut), running the command again sends the same request,
// and the relay gives the identity it issued then instead of a second connector.
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { createKeyAndCsr } from '../crypto/csr.js';
import { ProxyctlError, isProxyctlError } from '../errors.js';
import { FATAL_REMOTE, RelayClient } from '../connector/relay-client.js';
import {
  clearPending,
  defaultStateDir,
  keyMatchesCert,
  loadPending,
  loadState,
  markConfirmed,
  savePending,
  writeRegistration,
  type ConnectorState,
  type PendingRegistration,
} from '../connector/state.js';
import type { ConnectorConfig } from '../protocol/connector-api.js';
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
  const stateDir = path.resolve(opts.stateDir ?? defaultStateDir());
  // Run again after a registration whose confirmation failed: finish it, never issue a second one.
  if (holdsIdentity(stateDir)) return confirmSaved(stateDir, relayUrl.href, opts, out, warn);
  const token = resolveToken(opts, process.env, () => storedToken(relayUrl.href));
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
  const earlier = loadPending(stateDir);
  const madeDir = !existsSync(stateDir);
  const attempt = earlier
    ? resumable(earlier, stateDir, relayUrl.href, opts)
    : await newAttempt(stateDir, relayUrl, opts);
  const { name, group, keyPem } = attempt;
  if (earlier) {
    out(
      `resuming the registration of ${name} started at ${earlier.startedAt} and saved in ${stateDir}: sending it again; ` +
        `if the relay issued its identity before, it gives that one again`,
    );
  }
  const client = new RelayClient(relayUrl.href, { caPem: pinnedCa });
  let issued;
  try {
    issued = await client.register(token, {
      csr: attempt.csrPem,
      name,
      group,
      version: VERSION,
      idempotencyKey: attempt.idempotencyKey,
    });
  } catch (err) {
    throw unanswered(err, attempt, stateDir, earlier ? 'retry' : madeDir ? 'made-dir' : 'fresh');
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
  clearPending(stateDir);

  // Saved before this pull: if the relay dies now, running the command again confirms this identity.
  const authed = new RelayClient(relayUrl.href, { caPem: issued.caCertificate, certPem: issued.certificate, keyPem });
  try {
    const cfg = await authed.fetchConfig();
    markConfirmed(loadState(stateDir));
    out(`registered connector ${issued.connectorId} (name ${name}, group ${cfg.group}, ${cfg.apps.length} app(s))`);
  } catch (err) {
    throw notConfirmed(err, issued.connectorId, stateDir, relayUrl.href);
  } finally {
    await authed.close();
  }
  out(`certificate serial ${issued.serial}, valid until ${issued.notAfter}`);
  out(`state saved in ${stateDir}; start it with: proxyctl connector run --state-dir ${stateDir}`);
}

/** A fresh attempt: key, CSR and idempotency key, saved before anything is sent. */
async function newAttempt(stateDir: string, relayUrl: URL, opts: RegisterOptions): Promise<PendingRegistration> {
  const name =
    opts.name ??
    hostname()
      .split('.')[0]!
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 64);
  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const attempt: PendingRegistration = {
    relayUrl: relayUrl.href,
    name,
    group: opts.group ?? 'default',
    idempotencyKey: randomBytes(32).toString('base64url'),
    csrPem,
    keyPem,
    startedAt: new Date().toISOString(),
  };
  savePending(stateDir, attempt);
  return attempt;
}

/** The attempt saved earlier, when this command asks for the same registration. */
function resumable(
  saved: PendingRegistration,
  stateDir: string,
  relayUrl: string,
  opts: RegisterOptions,
): PendingRegistration {
  const other = (what: string) =>
    new ProxyctlError(
      'ERR_USAGE',
      `${stateDir} holds an unfinished registration of ${saved.name} (group ${saved.group}, relay ${saved.relayUrl}, ` +
        `started at ${saved.startedAt}) ${what}; run the command that started it again to finish it, or use another --state-dir`,
      { details: { pending: stateDir } },
    );
  if (new URL(saved.relayUrl).origin !== new URL(relayUrl).origin) throw other('with another relay');
  if (opts.name !== undefined && opts.name !== saved.name) throw other('under another name');
  if (opts.group !== undefined && opts.group !== 'default' && opts.group !== saved.group)
    throw other('in another group');
  return saved;
}

/**
 * The registration request got no usable answer. A refusal of a fresh attempt means
 * nothing was issued: the attempt is dropped. Otherwise (no answer, or a refusal of a
 * retry, whose first sending may have been recorded) it stays saved, and the message
 * says what was saved and how to go on.
 */
function unanswered(
  err: unknown,
  attempt: PendingRegistration,
  stateDir: string,
  kind: 'fresh' | 'made-dir' | 'retry',
): ProxyctlError {
  const e = isProxyctlError(err) ? err : new ProxyctlError('ERR_RELAY_UNREACHABLE', (err as Error).message);
  const refused = e.code === 'ERR_RELAY_UNTRUSTED' || (e.status !== undefined && e.status >= 400 && e.status < 500);
  if (refused && kind !== 'retry') {
    clearPending(stateDir, kind === 'made-dir');
    return e;
  }
  const details = { pending: stateDir, remoteCode: e.details?.['remoteCode'] };
  if (e.code === 'ERR_CERT_REVOKED') {
    // The connector this attempt made was revoked: it is over, a new registration is a new attempt.
    clearPending(stateDir);
    return new ProxyctlError(
      e.code,
      `${e.message}. That registration is over and its saved attempt was removed; run the command again to register anew`,
      { cause: err, status: e.status, details },
    );
  }
  if (refused) {
    return new ProxyctlError(
      e.code,
      `the relay refused to resume the registration of ${attempt.name} saved in ${stateDir} (started at ${attempt.startedAt}): ${e.message}. ` +
        `It can be resumed only with the administrator token it was started with, while that token is valid. ` +
        `If that is not possible: revoke the connector it may have made ("proxyctl connector revoke ${attempt.name}" ` +
        `if the relay lists one by that name), remove pending.json and pending-key.pem from ${stateDir}, and register again`,
      { cause: err, status: e.status, details },
    );
  }
  return new ProxyctlError(
    e.code,
    `${e.message}. The registration was saved in ${stateDir} before it was sent (private key, certificate request and ` +
      `attempt key in pending-key.pem and pending.json): run the same command again to resume it. If the relay issued ` +
      `the identity before the answer was lost, it gives that one again, not a second connector. Do not remove ${stateDir}`,
    { cause: err, status: e.status, details },
  );
}

/** Whether the directory holds (part of) an identity; an unlistable directory is loadState's to explain. */
function holdsIdentity(dir: string): boolean {
  try {
    const names = readdirSync(dir);
    return names.includes('cert.pem') || names.includes('key.pem');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/**
 * The directory already holds an identity: confirm it with the relay it was issued by
 * (what a registration cut short before its confirmation lacks) and say so. Nothing is
 * issued, so no token is needed and no orphan is made.
 */
async function confirmSaved(
  stateDir: string,
  relayUrl: string,
  opts: RegisterOptions,
  out: (line: string) => void,
  warn: (line: string) => void,
): Promise<void> {
  const saved = loadState(stateDir, (_fields, message) => warn(`proxyctl: warning: ${message}`));
  // Left by a run that saved its identity and stopped before removing its attempt.
  clearPending(stateDir);
  const other = (what: string) =>
    new ProxyctlError(
      'ERR_USAGE',
      `${stateDir} already holds connector ${saved.connectorId} (name ${saved.name}, group ${saved.group}, relay ${saved.relayUrl}) ${what}; use another --state-dir to register another connector`,
      { details: { connectorId: saved.connectorId } },
    );
  if (new URL(saved.relayUrl).origin !== new URL(relayUrl).origin) throw other('registered with another relay');
  if (opts.name !== undefined && opts.name !== saved.name) throw other(`under another name`);
  if (opts.group !== undefined && opts.group !== 'default' && opts.group !== saved.group)
    throw other('in another group');
  let cfg: ConnectorConfig;
  const client = new RelayClient(saved.relayUrl, {
    caPem: saved.caPem,
    certPem: saved.certPem,
    keyPem: saved.keyPem,
  });
  try {
    cfg = await client.fetchConfig();
  } catch (err) {
    if (isProxyctlError(err) && FATAL_REMOTE.has(err.code)) {
      throw new ProxyctlError(
        err.code,
        `the identity saved in ${stateDir} (connector ${saved.connectorId}) is no longer accepted by the relay: ${err.message}; remove ${stateDir} and register again`,
        { cause: err, details: { connectorId: saved.connectorId } },
      );
    }
    if (saved.confirmedAt) throw complete(saved);
    throw notConfirmed(err, saved.connectorId, stateDir, saved.relayUrl);
  } finally {
    await client.close();
  }
  // A finished registration run again: nothing to do, said as the refusal it always was.
  if (saved.confirmedAt) throw complete(saved);
  markConfirmed(saved);
  out(
    `registered connector ${saved.connectorId} (name ${saved.name}, group ${cfg.group}, ${cfg.apps.length} app(s)): the registration saved earlier is now confirmed, nothing new was issued`,
  );
  out(`state in ${stateDir}; start it with: proxyctl connector run --state-dir ${stateDir}`);
}

function complete(saved: ConnectorState): ProxyctlError {
  return new ProxyctlError(
    'ERR_USAGE',
    `${saved.dir} already holds connector ${saved.connectorId} (name ${saved.name}, group ${saved.group}), registered and confirmed at ${saved.confirmedAt}; ` +
      `start it with: proxyctl connector run --state-dir ${saved.dir}, or use another --state-dir to register another connector`,
    { details: { connectorId: saved.connectorId, confirmed: true } },
  );
}

/** The identity is saved but the relay did not confirm it: say exactly that, and what to do. */
function notConfirmed(err: unknown, connectorId: string, stateDir: string, relayUrl: string): ProxyctlError {
  const e = isProxyctlError(err) ? err : new ProxyctlError('ERR_RELAY_UNREACHABLE', (err as Error).message);
  return new ProxyctlError(
    e.code,
    `connector ${connectorId} was registered and its identity saved in ${stateDir}, but the relay at ${relayUrl} did not confirm it (${e.message}). ` +
      `Do not delete ${stateDir}: run the same command again to confirm it (nothing new is issued), or start it with: proxyctl connector run --state-dir ${stateDir}`,
    { cause: err, status: e.status, details: { connectorId, saved: stateDir } },
  );
}
