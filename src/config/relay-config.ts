// The relay's configuration: parsed from YAML, validated strictly, frozen,
// all before anything listens. Errors name the file, key path, found, expected.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { buildAccess } from './access-config.js';
import type { AccessConfig } from '../policy/model.js';
import { buildLimits, parseBodyLimit, type LimitsConfig } from './limits-config.js';
import { buildGeo, buildRisk, type GeoConfig, type RiskConfig } from './risk-config.js';
import { buildExport, type ExportSinkConfig } from './export-config.js';
import { ProxyctlError } from '../errors.js';
import { buildAcme, type AcmeConfig } from './acme-config.js';
import { parseDuration } from './duration.js';
import { foreignHeaderKey, isForeignProxyHeader } from '../net/foreign-headers.js';
import { isLoopbackHost } from '../net/address.js';
import {
  Validation,
  bool,
  duration,
  int,
  join,
  listen,
  obj,
  oneOf,
  optStr,
  parseYaml,
  str,
  strList,
  uniqueName,
  url,
  type Issue,
} from './schema.js';

export type Preauth = 'oidc' | 'passthrough';

/**
 * How the connector speaks to an app's backend: HTTP/1.1 (either scheme), HTTP/2 with prior
 * knowledge over cleartext (`h2c`, http:// only) or HTTP/2 over TLS (`h2`, https:// only).
 * gRPC backends need one of the HTTP/2 values.
 */
export type BackendProtocol = 'http1' | 'h2c' | 'h2';
export const BACKEND_PROTOCOLS: readonly BackendProtocol[] = ['http1', 'h2c', 'h2'];

export interface AppConfig {
  readonly name: string;
  readonly externalUrl: URL;
  readonly internalUrl: URL;
  /** Lower-case host (no port) the app is published on; may start with "*.". */
  readonly host: string;
  /** Path prefix from externalUrl, always ending in "/". */
  readonly pathPrefix: string;
  readonly preauth: Preauth;
  readonly connectorGroup: string;
  readonly backendTimeoutMs: number;
  /** Send the external Host header to the backend instead of the internal one. */
  readonly passHostHeader: boolean;
  /** HTTP version the connector uses to the backend (h2c and h2 carry gRPC). */
  readonly backendProtocol: BackendProtocol;
  /** OIDC client at the provider (audience of ID tokens and bearer tokens). */
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  /** 'assigned': only assignedUsers / assignedGroups may use the app. */
  readonly assignment: 'assigned' | 'any';
  readonly assignedUsers: readonly string[];
  readonly assignedGroups: readonly string[];
  /** Also send X-Proxyctl-User/-Email/-Groups besides the signed assertion. */
  readonly identityHeaders: boolean;
  /**
   * The backend treats paths case-insensitively (IIS, some Windows servers): the
   * relay then case-folds when checking that a path cannot reach another app.
   */
  readonly caseInsensitivePaths: boolean;
  /**
   * Lower-case names of identity and routing headers of other proxies
   * (X-Forwarded-User, X-Original-URL…) this app's backend may receive from clients.
   */
  readonly forwardHeaders: readonly string[];
  readonly sessionLifetimeMs: number;
  readonly cookie: {
    readonly sameSite: 'Lax' | 'Strict' | 'None';
    readonly persistent: boolean;
    readonly httpOnly: boolean;
  };
  /** Rewrite Location, Content-Location, Refresh, Link and Set-Cookie from internal to external URLs. */
  readonly translateHeaders: boolean;
  /** Rewrite links in HTML and CSS bodies (streamed). */
  readonly translateLinks: boolean;
  /** Request bodies larger than this are refused with 413 (undefined: no limit). */
  readonly maxBodyBytes: number | undefined;
  /** A certificate of the app's own (custom domain); otherwise the relay CA issues one. */
  readonly tls: { readonly certPem: string; readonly keyPem: string; readonly certFile: string } | undefined;
}

export interface EmbeddedIdpConfig {
  /** Host the embedded provider answers on, on the public listener. */
  readonly host: string;
  /** Users file (YAML); users are otherwise kept in the store. */
  readonly usersFile: string | undefined;
  /**
   * The port users reach the provider on, when it is not the public listener's (a load
   * balancer in front of replicas listens on another port): it is part of the issuer.
   */
  readonly port: number | undefined;
}

export interface IdentityConfig {
  /** undefined = the embedded identity provider. */
  readonly issuer: URL | undefined;
  readonly clientId: string;
  readonly clientSecret: string | undefined;
  readonly adminAudience: string;
  readonly adminClaim: string;
  readonly adminValues: readonly string[];
  /** Values of adminClaim that give the read-only administration role (the console and API's reader). */
  readonly readerValues: readonly string[];
  readonly clockSkewMs: number;
  readonly groupsClaim: string;
  /**
   * Take `email` as verified when the provider omits `email_verified` (some
   * providers verify every address and never send the claim). Off by default:
   * an address is used only when `email_verified` is true.
   */
  readonly emailVerifiedWhenAbsent: boolean;
  readonly scopes: readonly string[];
  readonly embedded: EmbeddedIdpConfig;
}

export interface ConnectorPolicy {
  readonly renewAfterMs: number;
  readonly certificateLifetimeMs: number;
  readonly heartbeatIntervalMs: number;
  readonly configRefreshMs: number;
  readonly channels: number;
  /** How long a request waits for a connector of its group to come online. */
  readonly queueTimeoutMs: number;
}

export interface RelayConfig {
  readonly file: string | undefined;
  readonly dataDir: string;
  readonly public: {
    readonly host: string;
    readonly port: number;
    /** The plain-HTTP listener (ACME HTTP-01 and 308 to HTTPS); undefined without `public.httpListen`. */
    readonly http: { readonly host: string; readonly port: number } | undefined;
    /** How long one TLS session-ticket key is used (`public.ticketRotation`); undefined: no tickets (`off`). */
    readonly ticketRotationMs: number | undefined;
  };
  readonly connectorApi: {
    readonly host: string;
    readonly port: number;
    readonly url: URL;
    readonly maxBodyBytes: number;
  };
  readonly identity: IdentityConfig;
  readonly connectors: ConnectorPolicy;
  readonly log: { readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent' };
  readonly apps: readonly AppConfig[];
  /** Conditional Access: named locations and policies. */
  readonly access: AccessConfig;
  /** Device certificates a policy can require: the CA they must chain to. */
  readonly devices: { readonly caFile: string; readonly caPem: string } | undefined;
  /** Abuse limits at the public edge. */
  readonly limits: LimitsConfig;
  /** Shared PostgreSQL store (replicas); undefined = SQLite in dataDir. */
  readonly store: { readonly postgres: { readonly url: string; readonly schema: string } } | undefined;
  /** Secrets kept outside the store. */
  readonly secrets: {
    /** Master key file (resolved); the key may instead be in PROXYCTL_MASTER_KEY. */
    readonly masterKeyFile: string | undefined;
  };
  /**
   * The admin listener (health, readiness, metrics, the REST API; plain HTTP); undefined without
   * `admin:` (or with `admin: false`). `consoleHost`: the public listener also serves the console
   * and the API on this host name (HTTPS, the relay's sign-in).
   */
  readonly admin:
    { readonly host: string; readonly port: number; readonly consoleHost: string | undefined } | undefined;
  /** How long the sign-in log and risk detections (retentionMs) and the audit log (auditRetentionMs) are kept. */
  readonly logs: { readonly retentionMs: number; readonly auditRetentionMs: number };
  /** Risk detections: address lists, learning, travel, decay, attack thresholds. */
  readonly risk: RiskConfig;
  /** Location databases (city, network) for the sign-in log and risk. */
  readonly geo: GeoConfig;
  /** Certificates for app hosts from an ACME certificate authority; undefined without `acme:`. */
  readonly acme: AcmeConfig | undefined;
  /** SIEM sinks the sign-in log, audit log and risk detections are exported to. */
  readonly export: readonly ExportSinkConfig[];
  /** The document this configuration was built from, so the store's API objects can be added to it. */
  readonly source: ConfigSource;
  /** Apps, policies and named locations in force that the administration API published (the store's). */
  readonly managed: readonly ManagedRef[];
}

/** The parsed file (or embedded defaults) a configuration was validated from. */
export interface ConfigSource {
  readonly raw: unknown;
  readonly baseDir: string;
  readonly where: string;
  readonly options: LoadOptions;
}

/** An API object in force: which one, and which version of it. */
export interface ManagedRef {
  readonly kind: 'app' | 'policy' | 'location';
  readonly name: string;
  readonly version: number;
  readonly updatedAt: number;
  readonly updatedBy: string;
}

const TOP = [
  'dataDir',
  'public',
  'connectorApi',
  'identity',
  'connectors',
  'log',
  'apps',
  'groups',
  'namedLocations',
  'policies',
  'devices',
  'limits',
  'store',
  'secrets',
  'admin',
  'logs',
  'risk',
  'geo',
  'export',
  'acme',
] as const;
const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const NAME_TEXT = 'a name of lower-case letters, digits and dashes (at most 63)';

export interface LoadOptions {
  dataDir?: string;
}

/** Reads and validates a relay config file; throws ERR_CONFIG_READ / ERR_CONFIG_INVALID. */
export function loadRelayConfig(file: string, options: LoadOptions = {}): RelayConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ProxyctlError('ERR_CONFIG_READ', `cannot read config file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return parseRelayConfig(text, file, options);
}

export function parseRelayConfig(text: string, file: string | undefined, options: LoadOptions = {}): RelayConfig {
  const where = file ?? '(embedded defaults)';
  const raw = parseYaml(text, where);
  const baseDir = file ? path.dirname(path.resolve(file)) : process.cwd();
  const v = new Validation();
  const source: ConfigSource = { raw: deepFreeze(raw), baseDir, where, options };
  const config = build(v, raw, source, []);
  if (v.issues.length > 0 || !config) throw configError(where, v.issues);
  return deepFreeze(config);
}

/**
 * Validates a document as the loader does (the file's, with the administration API's objects
 * added to it): the issues, and the configuration when there are none. Never throws for bad input.
 */
export function validateRelayDocument(
  raw: unknown,
  source: ConfigSource,
  managed: readonly ManagedRef[],
): { config: RelayConfig | undefined; issues: Issue[] } {
  const v = new Validation();
  const config = build(v, raw, source, managed);
  if (v.issues.length > 0 || !config) return { config: undefined, issues: v.issues };
  return { config: deepFreeze(config), issues: [] };
}

export function configError(where: string, issues: Issue[]): ProxyctlError {
  // One line, so the CLI's single stderr line carries every problem.
  const lines = issues.map((i) => `${i.path}: found ${i.found}, expected ${i.expected}`);
  return new ProxyctlError('ERR_CONFIG_INVALID', `${where}: invalid configuration: ${lines.join('; ')}`, {
    details: { file: where, issues },
  });
}

function build(
  v: Validation,
  raw: unknown,
  source: ConfigSource,
  managed: readonly ManagedRef[],
): RelayConfig | undefined {
  const { baseDir, options } = source;
  const top = obj(v, '', raw, TOP);
  if (!top) return undefined;

  const dataDirText = str(v, 'dataDir', top['dataDir'], './proxyctl-data');
  const dataDir = options.dataDir ? path.resolve(options.dataDir) : path.resolve(baseDir, dataDirText ?? '.');

  const pub = obj(v, 'public', top['public'], ['listen', 'httpListen', 'ticketRotation']) ?? {};
  const publicListen = listen(v, 'public.listen', pub['listen'], '127.0.0.1:8443');
  const httpListen =
    pub['httpListen'] === undefined ? undefined : listen(v, 'public.httpListen', pub['httpListen'], '');
  const ticketRotationMs = ticketRotation(v, pub['ticketRotation']);

  const capi = obj(v, 'connectorApi', top['connectorApi'], ['listen', 'url', 'maxBodyBytes']) ?? {};
  const capiListen = listen(v, 'connectorApi.listen', capi['listen'], '127.0.0.1:8444');
  const capiUrl = url(
    v,
    'connectorApi.url',
    capi['url'],
    ['https'],
    `https://${formatHost(capiListen.host)}:${capiListen.port}`,
  );
  const maxBodyBytes = int(v, 'connectorApi.maxBodyBytes', capi['maxBodyBytes'], 64 * 1024, 1024, 16 * 1024 * 1024);

  const id =
    obj(v, 'identity', top['identity'], [
      'issuer',
      'clientId',
      'clientSecret',
      'clientSecretFile',
      'adminAudience',
      'adminClaim',
      'adminValues',
      'readerValues',
      'clockSkew',
      'groupsClaim',
      'emailVerifiedWhenAbsent',
      'scopes',
      'embedded',
    ]) ?? {};
  const issuer = id['issuer'] === undefined ? undefined : url(v, 'identity.issuer', id['issuer'], ['https', 'http']);
  if (issuer && issuer.protocol === 'http:' && !isLoopbackHost(issuer.hostname)) {
    v.fail('identity.issuer', id['issuer'], 'an https URL (http is accepted only on loopback addresses)');
  }
  const clientSecret = secretOf(v, 'identity', id, baseDir);
  const emb = obj(v, 'identity.embedded', id['embedded'], ['host', 'usersFile', 'port']) ?? {};
  const embHost =
    str(
      v,
      'identity.embedded.host',
      emb['host'],
      'login.localhost',
      /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
      'a host name',
    ) ?? 'login.localhost';
  const usersFile = optStr(v, 'identity.embedded.usersFile', emb['usersFile']);
  const identity: IdentityConfig = {
    issuer,
    clientId: str(v, 'identity.clientId', id['clientId'], 'proxyctl') ?? 'proxyctl',
    clientSecret,
    adminAudience: str(v, 'identity.adminAudience', id['adminAudience'], 'api://proxyctl') ?? '',
    adminClaim: str(v, 'identity.adminClaim', id['adminClaim'], 'roles') ?? '',
    adminValues: strList(v, 'identity.adminValues', id['adminValues'], ['ProxyAdministrator']),
    readerValues: strList(v, 'identity.readerValues', id['readerValues'], ['ProxyReader']),
    clockSkewMs: duration(v, 'identity.clockSkew', id['clockSkew'], '60s', 0),
    groupsClaim: str(v, 'identity.groupsClaim', id['groupsClaim'], 'groups') ?? 'groups',
    emailVerifiedWhenAbsent: bool(v, 'identity.emailVerifiedWhenAbsent', id['emailVerifiedWhenAbsent'], false),
    scopes: strList(v, 'identity.scopes', id['scopes'], ['openid', 'profile', 'email']),
    embedded: {
      host: embHost,
      usersFile: usersFile === undefined ? undefined : path.resolve(baseDir, usersFile),
      port: emb['port'] === undefined ? undefined : int(v, 'identity.embedded.port', emb['port'], 443, 1, 65535),
    },
  };
  if (!identity.scopes.includes('openid')) v.fail('identity.scopes', id['scopes'], 'a list that includes openid');
  if (identity.adminValues.length === 0) v.fail('identity.adminValues', id['adminValues'], 'at least one value');
  const both = identity.readerValues.filter((r) => identity.adminValues.includes(r));
  if (both.length > 0)
    v.fail('identity.readerValues', id['readerValues'], `values that are not also adminValues (${both.join(', ')})`);

  const con =
    obj(v, 'connectors', top['connectors'], [
      'renewAfter',
      'certificateLifetime',
      'heartbeatInterval',
      'configRefresh',
      'channels',
      'queueTimeout',
    ]) ?? {};
  const connectors: ConnectorPolicy = {
    renewAfterMs: duration(v, 'connectors.renewAfter', con['renewAfter'], '180d', 1000),
    certificateLifetimeMs: duration(v, 'connectors.certificateLifetime', con['certificateLifetime'], '365d', 60_000),
    // Short: a channel whose connector went silent (no FIN: a partition, a host gone) is cut
    // within two intervals, and requests stop going to it.
    heartbeatIntervalMs: duration(v, 'connectors.heartbeatInterval', con['heartbeatInterval'], '2s', 100),
    configRefreshMs: duration(v, 'connectors.configRefresh', con['configRefresh'], '5m', 1000),
    channels: int(v, 'connectors.channels', con['channels'], 2, 1, 16),
    queueTimeoutMs: duration(v, 'connectors.queueTimeout', con['queueTimeout'], '10s', 0),
  };
  if (connectors.renewAfterMs >= connectors.certificateLifetimeMs) {
    v.fail(
      'connectors.renewAfter',
      con['renewAfter'] ?? '180d',
      `a duration shorter than connectors.certificateLifetime`,
    );
  }

  const logRaw = obj(v, 'log', top['log'], ['level']) ?? {};
  const level = oneOf(
    v,
    'log.level',
    logRaw['level'],
    ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const,
    'info',
  );

  const apps = buildApps(v, top['apps'], identity, baseDir);
  const access = buildAccess(v, top, { apps: apps.map((a) => a.name), groups: apps.flatMap((a) => a.assignedGroups) });
  const dev = obj(v, 'devices', top['devices'], ['caFile']);
  let devices: RelayConfig['devices'];
  if (dev && dev['caFile'] !== undefined) {
    const caFile = path.resolve(baseDir, str(v, 'devices.caFile', dev['caFile']) ?? '');
    try {
      const caPem = readFileSync(caFile, 'utf8');
      new X509Certificate(caPem);
      devices = { caFile, caPem };
    } catch (err) {
      v.fail(
        'devices.caFile',
        dev['caFile'],
        `a readable PEM CA certificate (${(err as NodeJS.ErrnoException).code ?? 'not a certificate'})`,
      );
    }
  }
  if (access.policies.some((p) => p.grant.requireDeviceCertificate) && !devices) {
    v.fail('devices.caFile', undefined, 'a device CA file, because a policy requires a device certificate');
  }
  const sec = obj(v, 'secrets', top['secrets'], ['masterKeyFile']) ?? {};
  const masterKeyFile = optStr(v, 'secrets.masterKeyFile', sec['masterKeyFile']);
  const admin = adminListener(v, top['admin']);
  if (admin?.consoleHost !== undefined) {
    if (!issuer && admin.consoleHost === embHost)
      v.fail(
        'admin.consoleHost',
        admin.consoleHost,
        'a host of its own (the embedded identity provider answers on it)',
      );
    // An app on the console's host is the app's problem (its path), so an API app that takes
    // it is left out alone, not every API object with it.
    const rawApps = Array.isArray(top['apps']) ? (top['apps'] as unknown[]) : [];
    for (const a of apps.filter((x) => x.host === admin.consoleHost)) {
      const i = rawApps.findIndex((r) => (r as Record<string, unknown> | null)?.['name'] === a.name);
      v.fail(
        join(join('apps', i < 0 ? 0 : i), 'externalUrl'),
        a.externalUrl.href,
        `a host other than admin.consoleHost ${admin.consoleHost} (the console answers there)`,
      );
    }
  }
  const reserved = apps.findIndex((a) => a.name === 'proxyctl-console');
  if (reserved >= 0)
    v.fail(
      join(join('apps', reserved), 'name'),
      'proxyctl-console',
      'a name other than proxyctl-console (the console has it)',
    );
  const acme = buildAcme(v, top['acme'], baseDir, apps);
  if (!capiUrl) return undefined;
  return {
    file: undefined,
    dataDir,
    public: { ...publicListen, http: httpListen, ticketRotationMs },
    connectorApi: { ...capiListen, url: capiUrl, maxBodyBytes },
    identity,
    connectors,
    log: { level },
    apps,
    access,
    devices,
    limits: buildLimits(v, top['limits']),
    store: buildStore(v, top['store'], baseDir),
    secrets: { masterKeyFile: masterKeyFile === undefined ? undefined : path.resolve(baseDir, masterKeyFile) },
    admin,
    logs: buildLogs(v, top['logs']),
    risk: buildRisk(v, top['risk'], baseDir),
    geo: buildGeo(v, top['geo'], baseDir),
    export: buildExport(v, top['export'], baseDir),
    acme,
    source,
    managed,
  };
}

const HOUR = 3_600_000;

/** `logs: { retention, auditRetention }`: pruned in the background by every relay. */
function buildLogs(v: Validation, raw: unknown): RelayConfig['logs'] {
  const o = obj(v, 'logs', raw ?? {}, ['retention', 'auditRetention']) ?? {};
  return {
    retentionMs: duration(v, 'logs.retention', o['retention'], '30d', HOUR),
    auditRetentionMs: duration(v, 'logs.auditRetention', o['auditRetention'], '365d', HOUR),
  };
}

/** `store: { postgres: { url | urlFile } }`: the URL carries the password, so a file may hold it. */
function buildStore(v: Validation, raw: unknown, baseDir: string): RelayConfig['store'] {
  if (raw === undefined) return undefined;
  const st = obj(v, 'store', raw, ['postgres']);
  if (!st) return undefined;
  const pg = obj(v, 'store.postgres', st['postgres'], ['url', 'urlFile', 'schema']);
  if (!pg) {
    if (st['postgres'] === undefined) v.fail('store.postgres', undefined, 'postgres: { url } (omit store for SQLite)');
    return undefined;
  }
  let text = optStr(v, 'store.postgres.url', pg['url']);
  const file = optStr(v, 'store.postgres.urlFile', pg['urlFile']);
  if ((text === undefined) === (file === undefined)) {
    v.fail('store.postgres', pg, 'exactly one of url or urlFile');
    return undefined;
  }
  if (file !== undefined) {
    try {
      text = readFileSync(path.resolve(baseDir, file), 'utf8').trim();
    } catch (err) {
      v.fail(
        'store.postgres.urlFile',
        file,
        `a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
      );
      return undefined;
    }
  }
  const where = file !== undefined ? 'store.postgres.urlFile' : 'store.postgres.url';
  let parsed: URL;
  try {
    parsed = new URL(text ?? '');
  } catch {
    v.fail(where, '(not shown: it may hold a password)', 'a postgres:// URL');
    return undefined;
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    v.fail(where, `${parsed.protocol}//…`, 'a postgres:// URL');
    return undefined;
  }
  const schema =
    str(
      v,
      'store.postgres.schema',
      pg['schema'],
      'proxyctl',
      /^[a-z_][a-z0-9_]{0,62}$/,
      'a schema name (lower-case letters, digits, _)',
    ) ?? 'proxyctl';
  return { postgres: { url: parsed.href, schema } };
}

/**
 * Health and readiness for load balancers and orchestrators, when `admin:` is written
 * (`admin: {}` listens on 127.0.0.1:9443); on loopback unless another address is
 * written out (the admin server warns then). Absent or `false`: no admin listener, so
 * several relays on one machine (tests, the demo) do not contend for one port.
 */
function adminListener(v: Validation, raw: unknown): RelayConfig['admin'] {
  if (raw === undefined || raw === false) return undefined;
  if (raw !== undefined && (raw === null || typeof raw !== 'object' || Array.isArray(raw))) {
    return v.fail('admin', raw, 'a mapping { listen }, or false for no admin listener');
  }
  const o = obj(v, 'admin', raw, ['listen', 'consoleHost']) ?? {};
  const consoleHost =
    o['consoleHost'] === undefined
      ? undefined
      : str(
          v,
          'admin.consoleHost',
          o['consoleHost'],
          undefined,
          /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/,
          'a host name in lower case (admin.example.com)',
        );
  return { ...listen(v, 'admin.listen', o['listen'], '127.0.0.1:9443'), consoleHost };
}

const APP_KEYS = [
  'name',
  'externalUrl',
  'internalUrl',
  'preauth',
  'connectorGroup',
  'backendTimeout',
  'passHostHeader',
  'backendProtocol',
  'clientId',
  'clientSecret',
  'clientSecretFile',
  'assignment',
  'assignedUsers',
  'assignedGroups',
  'identityHeaders',
  'caseInsensitivePaths',
  'forwardHeaders',
  'sessionLifetime',
  'cookie',
  'tls',
  'maxBodyBytes',
  'translateHeaders',
  'translateLinks',
] as const;

function secretOf(v: Validation, base: string, rec: Record<string, unknown>, baseDir: string): string | undefined {
  let secret = optStr(v, join(base, 'clientSecret'), rec['clientSecret']);
  const file = optStr(v, join(base, 'clientSecretFile'), rec['clientSecretFile']);
  if (secret !== undefined && file !== undefined)
    v.fail(join(base, 'clientSecretFile'), file, 'either clientSecret or clientSecretFile, not both');
  if (file !== undefined) {
    try {
      secret = readFileSync(path.resolve(baseDir, file), 'utf8').trim();
    } catch (err) {
      v.fail(
        join(base, 'clientSecretFile'),
        file,
        `a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
      );
    }
  }
  return secret;
}

function buildApps(v: Validation, raw: unknown, identity: IdentityConfig, baseDir: string): AppConfig[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    v.fail('apps', raw, 'a list of apps');
    return [];
  }
  const apps: AppConfig[] = [];
  const names = new Set<string>();
  const routes = new Set<string>();
  raw.forEach((item, i) => {
    const p = join('apps', i);
    const a = obj(v, p, item, APP_KEYS);
    if (!a) return;
    const name = uniqueName(v, p, a['name'], names, NAME, NAME_TEXT, 'app');
    const ext = url(v, join(p, 'externalUrl'), a['externalUrl'], ['https']);
    const int_ = url(v, join(p, 'internalUrl'), a['internalUrl'], ['http', 'https']);
    let host = '';
    let pathPrefix = '/';
    if (ext) {
      host = ext.hostname.toLowerCase();
      if (host.includes('*') && !/^\*\.[a-z0-9.-]+$/.test(host))
        v.fail(
          join(p, 'externalUrl'),
          a['externalUrl'],
          'a host name, or a wildcard only as the first label (*.apps.example.com)',
        );
      pathPrefix = ext.pathname.endsWith('/') ? ext.pathname : `${ext.pathname}/`;
      const route = `${host}:${ext.port}${pathPrefix}`;
      if (routes.has(route))
        v.fail(join(p, 'externalUrl'), a['externalUrl'], 'a host and path prefix published by no other app');
      routes.add(route);
    }
    const preauth = oneOf(v, join(p, 'preauth'), a['preauth'], ['oidc', 'passthrough'] as const, 'oidc');
    const connectorGroup =
      str(v, join(p, 'connectorGroup'), a['connectorGroup'], 'default', NAME, NAME_TEXT) ?? 'default';
    const backendTimeoutMs = duration(v, join(p, 'backendTimeout'), a['backendTimeout'], '85s', 1, {
      long: '180s',
      default: '85s',
    });
    const passHostHeader = bool(v, join(p, 'passHostHeader'), a['passHostHeader'], false);
    const backendProtocol = oneOf(v, join(p, 'backendProtocol'), a['backendProtocol'], BACKEND_PROTOCOLS, 'http1');
    // h2c is HTTP/2 without TLS and h2 is HTTP/2 inside TLS: the internal URL's scheme must agree.
    const wantScheme = backendProtocol === 'h2c' ? 'http:' : backendProtocol === 'h2' ? 'https:' : undefined;
    if (int_ && wantScheme && int_.protocol !== wantScheme)
      v.fail(
        join(p, 'backendProtocol'),
        a['backendProtocol'],
        `${backendProtocol === 'h2c' ? 'http1 or h2' : 'http1 or h2c'} for internalUrl ${int_.protocol}// (${backendProtocol} needs an ${wantScheme}// internalUrl)`,
      );
    const clientId = str(v, join(p, 'clientId'), a['clientId'], identity.clientId) ?? identity.clientId;
    const ownSecret = secretOf(v, p, a, baseDir);
    const clientSecret = ownSecret ?? (a['clientId'] === undefined ? identity.clientSecret : undefined);
    const assignment = oneOf(v, join(p, 'assignment'), a['assignment'], ['assigned', 'any'] as const, 'assigned');
    const assignedUsers = strList(v, join(p, 'assignedUsers'), a['assignedUsers'], []);
    const assignedGroups = strList(v, join(p, 'assignedGroups'), a['assignedGroups'], []);
    if (
      preauth === 'oidc' &&
      assignment === 'assigned' &&
      assignedUsers.length + assignedGroups.length === 0 &&
      a['assignment'] === 'assigned'
    ) {
      v.fail(
        join(p, 'assignedUsers'),
        a['assignedUsers'],
        'at least one assigned user or group when assignment is "assigned"',
      );
    }
    const identityHeaders = bool(v, join(p, 'identityHeaders'), a['identityHeaders'], false);
    const caseInsensitivePaths = bool(v, join(p, 'caseInsensitivePaths'), a['caseInsensitivePaths'], false);
    const forwardHeaders = forwardHeaderList(v, join(p, 'forwardHeaders'), a['forwardHeaders']);
    const sessionLifetimeMs = duration(v, join(p, 'sessionLifetime'), a['sessionLifetime'], '8h', 60_000);
    const ck = obj(v, join(p, 'cookie'), a['cookie'], ['sameSite', 'persistent', 'httpOnly']) ?? {};
    const sameSite = oneOf(v, join(p, 'cookie.sameSite'), ck['sameSite'], ['Lax', 'Strict', 'None'] as const, 'Lax');
    const cookie = {
      sameSite,
      persistent: bool(v, join(p, 'cookie.persistent'), ck['persistent'], true),
      httpOnly: bool(v, join(p, 'cookie.httpOnly'), ck['httpOnly'], true),
    };
    const tls = appTls(v, join(p, 'tls'), a['tls'], baseDir, host);
    const maxBodyBytes = parseBodyLimit(v, join(p, 'maxBodyBytes'), a['maxBodyBytes']);
    const translateHeaders = bool(v, join(p, 'translateHeaders'), a['translateHeaders'], true);
    const translateLinks = bool(v, join(p, 'translateLinks'), a['translateLinks'], false);
    if (name && ext && int_) {
      apps.push({
        name,
        externalUrl: ext,
        internalUrl: int_,
        host,
        pathPrefix,
        preauth,
        connectorGroup,
        backendTimeoutMs,
        passHostHeader,
        backendProtocol,
        clientId,
        clientSecret,
        assignment,
        assignedUsers,
        assignedGroups,
        identityHeaders,
        caseInsensitivePaths,
        forwardHeaders,
        sessionLifetimeMs,
        cookie,
        tls,
        maxBodyBytes,
        translateHeaders,
        translateLinks,
      });
    }
  });
  return apps;
}

/**
 * Headers of other proxies an app opts back in to. Only names the relay would
 * otherwise strip as foreign identity or routing headers; the relay's own
 * (X-Proxyctl-*, forwarding, hop-by-hop) can never be opted in.
 */
function forwardHeaderList(v: Validation, p: string, raw: unknown): string[] {
  const names = strList(v, p, raw, []).map(foreignHeaderKey);
  names.forEach((n, i) => {
    if (!isForeignProxyHeader(n))
      v.fail(
        join(p, i),
        n,
        'a header of another proxy that the relay strips (X-Forwarded-User, X-Auth-Request-*, X-Original-URL…)',
      );
  });
  return names;
}

/** certFile (PEM, chain allowed) + keyFile, or one PEM bundle holding both; read now and on every reload. */
function appTls(v: Validation, p: string, raw: unknown, baseDir: string, host: string): AppConfig['tls'] {
  if (raw === undefined) return undefined;
  const o = obj(v, p, raw, ['certFile', 'keyFile']);
  if (!o) return undefined;
  const certFile = str(v, join(p, 'certFile'), o['certFile']);
  if (!certFile) return undefined;
  const keyFile = optStr(v, join(p, 'keyFile'), o['keyFile']) ?? certFile;
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(path.resolve(baseDir, certFile), 'utf8');
  } catch (err) {
    return v.fail(
      join(p, 'certFile'),
      certFile,
      `a readable PEM file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
    );
  }
  try {
    keyPem = readFileSync(path.resolve(baseDir, keyFile), 'utf8');
  } catch (err) {
    return v.fail(
      join(p, 'keyFile'),
      keyFile,
      `a readable PEM file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`,
    );
  }
  let leaf: X509Certificate;
  try {
    // The leaf is the first certificate; a bundle may follow it with the chain and the key.
    leaf = new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certPem)?.[0] ?? '');
  } catch {
    return v.fail(join(p, 'certFile'), certFile, 'a PEM certificate');
  }
  try {
    const key = createPrivateKey(
      /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]+?-----END \1PRIVATE KEY-----/.exec(keyPem)?.[0] ?? keyPem,
    );
    if (!leaf.checkPrivateKey(key))
      return v.fail(join(p, 'keyFile'), keyFile, 'the private key of the certificate in certFile');
  } catch {
    return v.fail(join(p, 'keyFile'), keyFile, 'a PEM private key');
  }
  const probe = host.startsWith('*.') ? `x${host.slice(1)}` : host;
  if (!leaf.checkHost(probe, { wildcards: true }))
    v.fail(join(p, 'certFile'), certFile, `a certificate valid for ${host}`);
  if (Date.parse(leaf.validTo) < Date.now())
    v.fail(join(p, 'certFile'), certFile, `a certificate that has not expired (expired ${leaf.validTo})`);
  // Keep only the certificate chain and the key, each block on its own lines.
  const chain = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const keyBlock =
    /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]+?-----END \1PRIVATE KEY-----/.exec(keyPem)?.[0] ?? keyPem;
  return { certPem: `${chain.join('\n')}\n`, keyPem: `${keyBlock}\n`, certFile: path.resolve(baseDir, certFile) };
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !(value instanceof URL) && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}

/** Defaults used when `relay serve` runs without --config: everything on loopback. */
export function defaultRelayConfig(options: LoadOptions = {}): RelayConfig {
  return parseRelayConfig('{}', undefined, options);
}

/** Shorter periods would mostly cost store writes and full handshakes. */
export const TICKET_ROTATION_MIN_MS = 5 * 60_000;
/** RFC 8446 (4.6.1): a ticket lives at most 7 days, and a ticket here lives one period. */
export const TICKET_ROTATION_MAX_MS = 7 * 86_400_000;

/** `public.ticketRotation`: a duration (12h by default) from 5m to 7d, or `off`/`false` for no session tickets. */
function ticketRotation(v: Validation, value: unknown): number | undefined {
  if (value === false || value === 'off') return undefined;
  const ms = typeof (value ?? '12h') === 'string' ? parseDuration((value ?? '12h') as string) : undefined;
  if (ms === undefined || ms < TICKET_ROTATION_MIN_MS || ms > TICKET_ROTATION_MAX_MS)
    return v.fail('public.ticketRotation', value, 'a duration from 5m to 7d (such as 12h), or off');
  return ms;
}
