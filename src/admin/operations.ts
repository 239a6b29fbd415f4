// The administration operations, in-process: every read and change the REST API,
// the console and the CLI offer, against the store and the configuration file.
// Apps, policies and named locations the file defines are read-only here; the
// ones published through these operations live in the store (every replica reads
// them) and are validated exactly as the file is, by the same loader. Each change
// is audited with the caller's identity in the same transaction as the change.
import type { RelayConfig } from '../config/relay-config.js';
import type { Issue } from '../config/schema.js';
import { parseWhen } from './when.js';
import { rotateKey } from '../crypto/keyring.js';
import type { SecretWrap } from '../crypto/secret-wrap.js';
import { ProxyctlError } from '../errors.js';
import {
  USERNAME_PATTERN,
  generatePassword,
  checkPasswordStrength,
  hashPassword,
  newTotpSecret,
  totpUri,
} from '../idp/users.js';
import { isRemediated, userRisk, userRiskHorizonMs } from '../risk/engine.js';
import type {
  AuditEntry,
  ConnectorListing,
  ConnectorRecord,
  EventCursor,
  ManagedObject,
  RiskDetectionRecord,
  SecurityEvent,
  SignInRecord,
  Store,
  UserRecord,
  UserRiskState,
} from '../store/index.js';
import type {
  AdminApi,
  AuditFilter,
  AuditView,
  Caller,
  ConnectorDetail,
  ConnectorView,
  DetectionFilter,
  DetectionView,
  EventsPage,
  GroupView,
  KeyView,
  NewUserInput,
  ObjectKind,
  ObjectView,
  Overview,
  Page,
  RiskUserView,
  SecurityEventView,
  SignInFilter,
  SignInView,
  UserUpdateInput,
  UserView,
  WhatIfInput,
  WhatIfResult,
} from './api-types.js';
import { FILE_ONLY_KEYS, LIST_OF, composeConfig, fileSpec, validateChange, type Composed } from './compose.js';
import { contextFromOptions, matchUser, whatIfReport } from './what-if.js';

/** What a running relay adds to the store's view: its channels, its request counts, applying changes now. */
export interface LiveRelay {
  /** This relay's id among the replicas. */
  replicaId(): string;
  /** Open control channels of a connector on this relay. */
  channels(connectorId: string): { openedAt: number; version: string | null; inFlight: number }[];
  /** Per-minute request counts over the last hour on this relay. */
  requestBuckets(now: number): { start: number; count: number; errors: number }[];
  /** The store's objects changed: resolves once the relay serves them (or refused them). */
  objectsChanged(): Promise<void>;
  /** A connector was revoked: its channels close now. */
  connectorRevoked(id: string): void;
}

export interface AdminOperationsOptions {
  store: Store;
  /** The configuration file's (the API's objects are added from the store); a function when it reloads. */
  config: RelayConfig | (() => RelayConfig);
  caller: Caller;
  now?: () => number;
  live?: LiveRelay;
  /** Seals new keys as the relay does (secrets.masterKeyFile or PROXYCTL_MASTER_KEY). */
  masterKey?: SecretWrap;
}

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const OBJECT_NAME: Record<ObjectKind, { pattern: RegExp; text: string }> = {
  app: { pattern: NAME, text: 'a name of lower-case letters, digits and dashes (at most 63)' },
  policy: { pattern: /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/, text: 'a name of letters, digits, spaces, ".", "_" or "-"' },
  location: {
    pattern: /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/,
    text: 'a name of letters, digits, spaces, ".", "_" or "-"',
  },
};
const EMAIL = /^[^\s@]+@[^\s@]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f\u202a-\u202e\u2066-\u2069]/;
const PAGE_MAX = 1000;
const SCAN_MAX = 10_000;
const HOUR = 3_600_000;

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

function bad(message: string, issues?: Issue[]): ProxyctlError {
  return new ProxyctlError('ERR_CONFIG_INVALID', message, {
    status: 422,
    ...(issues ? { details: { issues } } : {}),
  });
}

function usage(message: string): ProxyctlError {
  return new ProxyctlError('ERR_USAGE', message, { status: 400 });
}

function notFound(what: string): ProxyctlError {
  return new ProxyctlError('ERR_NOT_FOUND', `${what} does not exist`, { status: 404 });
}

function readOnly(kind: string, name: string): ProxyctlError {
  return new ProxyctlError(
    'ERR_READ_ONLY',
    `${kind} ${name} is defined in the configuration file: change it there (the API changes only the objects it published)`,
    { status: 409 },
  );
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : (JSON.stringify(value) ?? String(value));
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** The keys of a request body, refusing any other (a typo must not be ignored silently). */
function fields<K extends string>(what: string, input: unknown, allowed: readonly K[]): Partial<Record<K, unknown>> {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw bad(`${what} must be a JSON object`, [{ path: '', found: describe(input), expected: 'an object' }]);
  const unknown = Object.keys(input).filter((k) => !(allowed as readonly string[]).includes(k));
  if (unknown.length > 0)
    throw bad(
      `${what}: unknown field ${unknown.map((k) => JSON.stringify(k)).join(', ')}`,
      unknown.map((k) => ({ path: k, found: 'an unknown key', expected: `one of ${allowed.join(', ')}` })),
    );
  return input;
}

function text(path: string, value: unknown, max = 256): string {
  if (typeof value !== 'string' || value === '' || value.length > max || CONTROL.test(value))
    throw bad(`${path}: found ${describe(value)}, expected a non-empty text of at most ${max} characters`, [
      { path, found: describe(value), expected: `a non-empty text of at most ${max} characters` },
    ]);
  return value;
}

function textList(path: string, value: unknown): string[] {
  if (!Array.isArray(value) || value.length > 200)
    throw bad(`${path}: found ${describe(value)}, expected a list of at most 200 texts`, [
      { path, found: describe(value), expected: 'a list of at most 200 texts' },
    ]);
  return [...new Set(value.map((v, i) => text(`${path}[${i}]`, v)))];
}

function limitOf(value: unknown, fallback = 50, max = PAGE_MAX): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw usage(`limit takes a whole number from 1 to ${max}; found ${describe(value)}`);
  return n;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value))
    throw usage(`${name} takes one of ${allowed.join(', ')}; found ${describe(value)}`);
  return value as T;
}

/** Page cursors: the id the next page reads below, opaque to callers. */
function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodeCursor<T>(value: unknown, check: (v: unknown) => v is T): T {
  if (typeof value === 'string' && value.length <= 512) {
    try {
      const parsed: unknown = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
      if (check(parsed)) return parsed;
    } catch {
      // refused below
    }
  }
  throw usage(`cursor ${describe(value)} is not one this API handed out`);
}

const isBefore = (v: unknown): v is { before: number } =>
  typeof v === 'object' && v !== null && Number.isSafeInteger((v as { before?: unknown }).before);
const isEventCursor = (v: unknown): v is EventCursor =>
  typeof v === 'object' &&
  v !== null &&
  ['signIn', 'audit', 'riskDetection'].every((k) => {
    const n = (v as Record<string, unknown>)[k];
    return Number.isSafeInteger(n) && (n as number) >= 0;
  });

/** Secrets never leave the relay: a spec shows that one is set, not what it is. */
function redact(spec: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(spec)) out[k] = k === 'clientSecret' ? '(redacted)' : v;
  return out;
}

export function signInView(s: SignInRecord): SignInView {
  return {
    id: s.id,
    at: iso(s.at),
    requestId: s.requestId,
    traceId: s.traceId,
    kind: s.kind,
    app: s.app,
    user: s.subject,
    ip: s.ip,
    country: s.country,
    city: s.city,
    latitude: s.latitude,
    longitude: s.longitude,
    asn: s.asn,
    network: s.network,
    userAgent: s.userAgent,
    browser: s.browser,
    os: s.os,
    clientType: s.clientType,
    methods: s.methods,
    result: s.result,
    reason: s.reason,
    policies: s.policies,
    risk: s.risk,
    detections: s.detections,
  };
}

export function auditView(a: AuditEntry): AuditView {
  return { id: a.id, at: iso(a.at), actor: a.actor, action: a.action, connectorId: a.connectorId, details: a.details };
}

export function detectionView(d: RiskDetectionRecord): DetectionView {
  return {
    id: d.id,
    at: iso(d.at),
    user: d.subject,
    ip: d.ip,
    app: d.app,
    type: d.type,
    level: d.level,
    signInId: d.signInId,
    details: d.details,
  };
}

function eventView(e: SecurityEvent): SecurityEventView {
  const data =
    e.kind === 'signIn'
      ? signInView(e.data as SignInRecord)
      : e.kind === 'audit'
        ? auditView(e.data as AuditEntry)
        : detectionView(e.data as RiskDetectionRecord);
  return { id: e.id, kind: e.kind, at: data.at, data };
}

export class AdminOperations implements AdminApi {
  readonly #store: Store;
  readonly #config: () => RelayConfig;
  readonly #caller: Caller;
  readonly #now: () => number;
  readonly #live: LiveRelay | undefined;
  readonly #masterKey: SecretWrap | undefined;

  constructor(options: AdminOperationsOptions) {
    this.#store = options.store;
    const config = options.config;
    this.#config = typeof config === 'function' ? config : () => config;
    this.#caller = options.caller;
    this.#now = options.now ?? Date.now;
    this.#live = options.live;
    this.#masterKey = options.masterKey;
  }

  /** How the audit log names the caller. */
  get actor(): string {
    const { via, subject } = this.#caller;
    return via === 'local' ? subject : `${via === 'session' ? 'console' : 'api'}:${subject}`;
  }

  #write(): void {
    if (this.#caller.role !== 'admin')
      throw new ProxyctlError('ERR_FORBIDDEN', 'the reader role may read but not change anything', { status: 403 });
  }

  /** Users are the embedded provider's: with an external one, they live there. */
  #embedded(): void {
    const issuer = this.#config().identity.issuer;
    if (issuer)
      throw new ProxyctlError(
        'ERR_READ_ONLY',
        `users are managed at the identity provider ${issuer.origin}, not by this relay (identity.issuer is set)`,
        { status: 409 },
      );
  }

  async #composed(): Promise<{ composed: Composed; stored: ManagedObject[] }> {
    const stored = await this.#store.objects.list();
    return { composed: composeConfig(this.#config(), stored), stored };
  }

  // ---- overview ------------------------------------------------------------------

  async overview(): Promise<Overview> {
    const now = this.#now();
    const config = this.#config();
    const [replicas, connectors, { composed, stored }, recent, risky, detections] = await Promise.all([
      this.#store.replicas.live(now, Math.max(30_000, config.connectors.heartbeatIntervalMs * 5)),
      this.listConnectors(),
      this.#composed(),
      this.#store.signIns.query({ since: now - 24 * HOUR, limit: SCAN_MAX, order: 'desc' }),
      this.riskUsers({}),
      this.#store.risk.detections({ since: now - 24 * HOUR, limit: SCAN_MAX }),
    ]);
    const start = Math.floor(now / HOUR) * HOUR - 23 * HOUR;
    const buckets = Array.from({ length: 24 }, (_, i) => ({
      start: iso(start + i * HOUR),
      success: 0,
      failure: 0,
      stepUp: 0,
    }));
    for (const s of recent) {
      const b = buckets[Math.floor((s.at - start) / HOUR)];
      if (b) b[s.result]++;
    }
    const apiApps = stored.filter((o) => o.kind === 'app');
    const month = 30 * 86_400_000;
    return {
      replicas: replicas.map((r) => ({
        id: r.id,
        url: r.connectorApiUrl,
        startedAt: iso(r.startedAt),
        heartbeatAt: iso(r.heartbeatAt),
        self: r.id === this.#live?.replicaId(),
      })),
      connectors: {
        total: connectors.length,
        online: connectors.filter((c) => c.status === 'online').length,
        offline: connectors.filter((c) => c.status === 'offline').length,
        revoked: connectors.filter((c) => c.status === 'revoked').length,
        expiringSoon: connectors.filter(
          (c) =>
            c.status !== 'revoked' && c.certificateExpires !== null && Date.parse(c.certificateExpires) - now < month,
        ).length,
      },
      apps: {
        total: composed.config.apps.length,
        file: config.apps.length,
        api: apiApps.length,
        notInForce: composed.excluded.filter((e) => e.kind === 'app').length,
      },
      signIns: buckets,
      requests:
        this.#live?.requestBuckets(now).map((b) => ({ start: iso(b.start), count: b.count, errors: b.errors })) ?? null,
      risk: { usersAtRisk: risky.length, detections24h: detections.length },
    };
  }

  // ---- apps, policies, named locations ---------------------------------------------

  async #list(kind: ObjectKind): Promise<ObjectView[]> {
    const { composed, stored } = await this.#composed();
    const file = this.#config();
    const raw = (file.source.raw ?? {}) as Record<string, unknown>;
    const list = raw[LIST_OF[kind]];
    const out: ObjectView[] = [];
    for (const item of Array.isArray(list) ? list : []) {
      const spec = item as Record<string, unknown>;
      out.push(fileView(kind, spec));
    }
    for (const o of stored) if (o.kind === kind) out.push(apiView(kind, o, composed));
    return out;
  }

  async #get(kind: ObjectKind, name: string): Promise<ObjectView> {
    const spec = fileSpec(this.#config(), kind, name);
    if (spec) return fileView(kind, spec);
    const { composed, stored } = await this.#composed();
    const o = stored.find((x) => x.kind === kind && x.name === name);
    if (!o) throw notFound(`${kind} ${describe(name)}`);
    return apiView(kind, o, composed);
  }

  /** Validates and stores one object (create, replace or apply), audited; the relay serves it on return. */
  async #put(
    kind: ObjectKind,
    name: unknown,
    specIn: unknown,
    mode: 'create' | 'replace' | 'apply',
    expectedVersion: number | undefined,
  ): Promise<ObjectView> {
    this.#write();
    if (specIn === null || typeof specIn !== 'object' || Array.isArray(specIn))
      throw bad(`the ${kind} must be a JSON object`, [{ path: '', found: describe(specIn), expected: 'an object' }]);
    const { name: inner, ...rest } = specIn as Record<string, unknown>;
    const id = name ?? inner;
    const rule = OBJECT_NAME[kind];
    if (typeof id !== 'string' || !rule.pattern.test(id))
      throw bad(`the ${kind}'s name: found ${describe(id)}, expected ${rule.text}`, [
        { path: 'name', found: describe(id), expected: rule.text },
      ]);
    if (inner !== undefined && inner !== id)
      throw bad(`the ${kind}'s name ${describe(inner)} differs from ${describe(id)} in the path`, [
        { path: 'name', found: describe(inner), expected: describe(id) },
      ]);
    if (expectedVersion !== undefined && (!Number.isSafeInteger(expectedVersion) || expectedVersion < 0))
      throw usage(`expectedVersion must be a whole number; found ${describe(expectedVersion)}`);
    const file = this.#config();
    if (fileSpec(file, kind, id)) throw readOnly(kind, id);
    const fileOnly = FILE_ONLY_KEYS[kind].filter((k) => k in rest);
    if (fileOnly.length > 0)
      throw bad(
        `${fileOnly.join(', ')} can only be set in the configuration file (the API keeps no secrets or file paths)`,
        fileOnly.map((k) => ({
          path: k,
          found: describe(rest[k]),
          expected: 'no value here: set it in the configuration file',
        })),
      );
    const stored = await this.#store.objects.list();
    const current = stored.find((o) => o.kind === kind && o.name === id);
    if (mode === 'create' && current)
      throw new ProxyctlError('ERR_CONFLICT', `${kind} ${id} already exists (version ${current.version})`, {
        status: 409,
      });
    if (mode === 'replace' && !current) throw notFound(`${kind} ${describe(id)}`);
    const { issues } = validateChange(file, stored, { kind, name: id, spec: rest });
    if (issues.length > 0) throw bad(`${kind} ${id} is not valid: ${issues.map(issueText).join('; ')}`, issues);
    const version = mode === 'create' ? 0 : (expectedVersion ?? current?.version ?? 0);
    const action = `${kind}.${mode === 'create' ? 'publish' : current ? 'update' : 'publish'}`;
    const saved = await this.#store.objects.put(
      kind,
      id,
      rest,
      {
        actor: this.actor,
        action,
        details: {
          name: id,
          ...(current ? { before: redact(current.spec), beforeVersion: current.version } : {}),
          after: redact(rest),
        },
      },
      version,
      this.#now(),
    );
    await this.#live?.objectsChanged();
    return apiView(kind, saved, (await this.#composed()).composed);
  }

  async #remove(kind: ObjectKind, name: string, expectedVersion: number | undefined): Promise<void> {
    this.#write();
    const file = this.#config();
    if (fileSpec(file, kind, name)) throw readOnly(kind, name);
    const stored = await this.#store.objects.list();
    const current = stored.find((o) => o.kind === kind && o.name === name);
    if (!current) throw notFound(`${kind} ${describe(name)}`);
    const { issues } = validateChange(file, stored, { kind, name, spec: undefined });
    if (issues.length > 0)
      throw new ProxyctlError('ERR_CONFLICT', `${kind} ${name} is still needed: ${issues.map(issueText).join('; ')}`, {
        status: 409,
        details: { issues },
      });
    await this.#store.objects.remove(
      kind,
      name,
      { actor: this.actor, action: `${kind}.remove`, details: { name, before: redact(current.spec) } },
      expectedVersion ?? current.version,
      this.#now(),
    );
    await this.#live?.objectsChanged();
  }

  listApps(): Promise<ObjectView[]> {
    return this.#list('app');
  }
  getApp(name: string): Promise<ObjectView> {
    return this.#get('app', name);
  }
  publishApp(spec: Record<string, unknown>): Promise<ObjectView> {
    return this.#put('app', undefined, spec, 'create', undefined);
  }
  updateApp(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView> {
    return this.#put('app', name, spec, 'replace', expectedVersion);
  }
  removeApp(name: string, expectedVersion?: number): Promise<void> {
    return this.#remove('app', name, expectedVersion);
  }
  listPolicies(): Promise<ObjectView[]> {
    return this.#list('policy');
  }
  getPolicy(name: string): Promise<ObjectView> {
    return this.#get('policy', name);
  }
  putPolicy(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView> {
    return this.#put('policy', name, spec, 'apply', expectedVersion);
  }
  removePolicy(name: string, expectedVersion?: number): Promise<void> {
    return this.#remove('policy', name, expectedVersion);
  }
  listLocations(): Promise<ObjectView[]> {
    return this.#list('location');
  }
  getLocation(name: string): Promise<ObjectView> {
    return this.#get('location', name);
  }
  putLocation(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView> {
    return this.#put('location', name, spec, 'apply', expectedVersion);
  }
  removeLocation(name: string, expectedVersion?: number): Promise<void> {
    return this.#remove('location', name, expectedVersion);
  }

  async whatIf(inputIn: WhatIfInput): Promise<WhatIfResult> {
    const input = fields('what-if', inputIn, [
      'app',
      'user',
      'email',
      'groups',
      'ip',
      'platform',
      'mfa',
      'acr',
      'risk',
      'userRisk',
      'time',
      'deviceCert',
      'draftPolicies',
    ] as const);
    const file = this.#config();
    let stored = await this.#store.objects.list();
    const drafts = input.draftPolicies;
    if (drafts !== undefined) {
      if (!Array.isArray(drafts) || drafts.length > 50)
        throw bad('draftPolicies must be a list of at most 50 policies', [
          { path: 'draftPolicies', found: describe(drafts), expected: 'a list of policies' },
        ]);
      for (const [i, d] of drafts.entries()) {
        const spec = (d ?? {}) as Record<string, unknown>;
        const name = spec['name'];
        if (typeof name !== 'string' || !OBJECT_NAME.policy.pattern.test(name))
          throw bad(`draftPolicies[${i}].name: found ${describe(name)}, expected ${OBJECT_NAME.policy.text}`, [
            { path: `draftPolicies[${i}].name`, found: describe(name), expected: OBJECT_NAME.policy.text },
          ]);
        if (fileSpec(file, 'policy', name)) throw readOnly('policy', name);
        const { name: _n, ...rest } = spec;
        const { issues } = validateChange(file, stored, { kind: 'policy', name, spec: rest });
        if (issues.length > 0)
          throw bad(
            `draft policy ${name} is not valid: ${issues.map(issueText).join('; ')}`,
            issues.map((x) => ({ ...x, path: `draftPolicies[${i}]${x.path ? `.${x.path}` : ''}` })),
          );
        const now = this.#now();
        stored = [
          ...stored.filter((o) => !(o.kind === 'policy' && o.name === name)),
          { kind: 'policy', name, spec: rest, version: 0, createdAt: now, updatedAt: now, updatedBy: this.actor },
        ];
      }
    }
    const config = composeConfig(file, stored).config;
    const str = (name: string, v: unknown): string | undefined => {
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw usage(`${name} must be a string; found ${describe(v)}`);
      return v;
    };
    const flag = (name: string, v: unknown): boolean | undefined => {
      if (v === undefined) return undefined;
      if (typeof v !== 'boolean') throw usage(`${name} must be true or false; found ${describe(v)}`);
      return v;
    };
    const app = str('app', input.app);
    const user = str('user', input.user);
    if (!app) throw usage('app is required');
    if (!user) throw usage('user is required');
    const groups = input.groups === undefined ? undefined : textList('groups', input.groups).join(',');
    const embedded = config.identity.issuer === undefined;
    const found = embedded
      ? matchUser(await this.#store.users.list(), config.identity.embedded.usersFile, user, (field) => field)
      : undefined;
    const { app: appConfig, ctx } = contextFromOptions(
      {
        app,
        user,
        email: str('email', input.email),
        groups,
        ip: str('ip', input.ip),
        platform: str('platform', input.platform),
        mfa: flag('mfa', input.mfa),
        acr: str('acr', input.acr),
        risk: str('risk', input.risk),
        userRisk: str('userRisk', input.userRisk),
        time: str('time', input.time),
        deviceCert: flag('deviceCert', input.deviceCert),
      },
      config.apps,
      () => new Date(this.#now()),
      found,
      (field) => field,
    );
    const report = whatIfReport(appConfig, ctx, config.access, found ? 'embedded' : 'options');
    return JSON.parse(JSON.stringify(report, (_k, v: unknown) => (v === undefined ? null : v))) as WhatIfResult;
  }

  // ---- connectors and groups -------------------------------------------------------

  #connectorView(c: ConnectorListing | (ConnectorRecord & Partial<ConnectorListing>)): ConnectorView {
    const now = this.#now();
    const window = this.#config().connectors.heartbeatIntervalMs * 3;
    const live = this.#live?.channels(c.id).length ?? 0;
    return {
      id: c.id,
      name: c.name,
      group: c.group,
      status:
        c.revokedAt !== null
          ? 'revoked'
          : live > 0 || (c.lastSeen !== null && now - c.lastSeen <= window)
            ? 'online'
            : 'offline',
      version: c.version,
      createdAt: iso(c.createdAt),
      registeredBy: c.createdBy,
      lastSeen: isoOrNull(c.lastSeen),
      revokedAt: isoOrNull(c.revokedAt),
      certificateExpires: isoOrNull(c.certificateExpires ?? null),
      certificates: c.certificates ?? 0,
    };
  }

  async listConnectors(): Promise<ConnectorView[]> {
    return (await this.#store.connectors.list()).map((c) => this.#connectorView(c));
  }

  async getConnector(idOrName: string): Promise<ConnectorDetail> {
    const found = await this.#store.connectors.find(idOrName);
    const listing = (await this.#store.connectors.list()).find((c) => c.id === found.id);
    const certificates = await this.#store.connectors.certificates(found.id);
    return {
      ...this.#connectorView(listing ?? found),
      channels: this.#live
        ? this.#live.channels(found.id).map((ch) => ({
            replica: this.#live!.replicaId(),
            openedAt: iso(ch.openedAt),
            version: ch.version,
            inFlight: ch.inFlight,
          }))
        : null,
      certificateList: certificates.map((c) => ({
        serial: c.serial,
        kind: c.kind,
        issuedAt: iso(c.issuedAt),
        notAfter: iso(c.notAfter),
        revokedAt: isoOrNull(c.revokedAt),
      })),
    };
  }

  async revokeConnector(idOrName: string): Promise<ConnectorView> {
    this.#write();
    const c = await this.#store.connectors.revoke(idOrName, this.actor, this.#now());
    this.#live?.connectorRevoked(c.id);
    return this.#connectorView(c);
  }

  async deleteConnector(idOrName: string): Promise<void> {
    this.#write();
    await this.#store.connectors.delete(idOrName, this.actor, this.#now());
  }

  async listGroups(): Promise<GroupView[]> {
    const [connectors, { composed, stored }] = await Promise.all([this.listConnectors(), this.#composed()]);
    const groups = new Map<string, GroupView>();
    const group = (name: string): GroupView => {
      let g = groups.get(name);
      if (!g) {
        g = {
          name,
          source: 'derived',
          description: null,
          version: null,
          connectors: { total: 0, online: 0, revoked: 0 },
          apps: [],
        };
        groups.set(name, g);
      }
      return g;
    };
    for (const o of stored)
      if (o.kind === 'connectorGroup') {
        const g = group(o.name);
        g.source = 'api';
        g.version = o.version;
        g.description = typeof o.spec['description'] === 'string' ? o.spec['description'] : null;
      }
    for (const a of composed.config.apps) group(a.connectorGroup).apps.push(a.name);
    for (const c of connectors) {
      const g = group(c.group);
      g.connectors.total++;
      if (c.status === 'online') g.connectors.online++;
      if (c.status === 'revoked') g.connectors.revoked++;
    }
    return [...groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  async getGroup(name: string): Promise<GroupView> {
    const g = (await this.listGroups()).find((x) => x.name === name);
    if (!g) throw notFound(`connector group ${describe(name)}`);
    return g;
  }

  async createGroup(inputIn: { name: string; description?: string }): Promise<GroupView> {
    this.#write();
    const input = fields('the group', inputIn, ['name', 'description'] as const);
    const name = input.name;
    if (typeof name !== 'string' || !NAME.test(name))
      throw bad(`the group's name: found ${describe(name)}, expected ${OBJECT_NAME.app.text}`, [
        { path: 'name', found: describe(name), expected: OBJECT_NAME.app.text },
      ]);
    const description = input.description === undefined ? undefined : text('description', input.description, 200);
    await this.#store.objects.put(
      'connectorGroup',
      name,
      description === undefined ? {} : { description },
      { actor: this.actor, action: 'group.create', details: { name, ...(description ? { description } : {}) } },
      0,
      this.#now(),
    );
    return this.getGroup(name);
  }

  async removeGroup(name: string): Promise<void> {
    this.#write();
    const g = await this.getGroup(name);
    if (g.source !== 'api')
      throw new ProxyctlError(
        'ERR_CONFLICT',
        `connector group ${name} was not declared through the API: it exists while apps or connectors name it`,
        { status: 409 },
      );
    const live = g.connectors.total - g.connectors.revoked;
    if (g.apps.length > 0 || live > 0)
      throw new ProxyctlError(
        'ERR_CONFLICT',
        `connector group ${name} is in use (${[
          g.apps.length ? `apps ${g.apps.join(', ')}` : '',
          live ? `${live} connector${live === 1 ? '' : 's'} not revoked` : '',
        ]
          .filter(Boolean)
          .join('; ')})`,
        { status: 409 },
      );
    await this.#store.objects.remove(
      'connectorGroup',
      name,
      { actor: this.actor, action: 'group.remove', details: { name } },
      g.version ?? undefined,
      this.#now(),
    );
  }

  // ---- users of the embedded provider ----------------------------------------------

  async listUsers(): Promise<UserView[]> {
    this.#embedded();
    return (await this.#store.users.list()).map(userView);
  }

  async getUser(username: string): Promise<UserView> {
    this.#embedded();
    const u = await this.#store.users.get(username.toLowerCase());
    if (!u) throw notFound(`user ${describe(username)}`);
    return userView(u);
  }

  async addUser(inputIn: NewUserInput): Promise<{ user: UserView; password: string | null }> {
    this.#write();
    this.#embedded();
    const input = fields('the user', inputIn, ['username', 'email', 'name', 'groups', 'roles', 'password'] as const);
    const username = typeof input.username === 'string' ? input.username.toLowerCase() : input.username;
    if (typeof username !== 'string' || !USERNAME_PATTERN.test(username))
      throw bad(
        `username: found ${describe(input.username)}, expected a letter or digit, then letters, digits, ".", "_", "@" or "-" (at most 64)`,
        [{ path: 'username', found: describe(input.username), expected: 'a user name (letters, digits, . _ @ -)' }],
      );
    const email = input.email === undefined ? null : emailOf(input.email);
    const name = input.name === undefined ? null : text('name', input.name);
    const groups = input.groups === undefined ? [] : textList('groups', input.groups);
    const roles = input.roles === undefined ? [] : textList('roles', input.roles);
    const supplied = input.password === undefined ? undefined : passwordOf(input.password);
    const exists = () =>
      new ProxyctlError('ERR_CONFLICT', `user ${username} already exists; set its password instead`, { status: 409 });
    if (await this.#store.users.get(username)) throw exists();
    const password = supplied ?? generatePassword();
    const record: UserRecord = {
      username,
      passwordHash: await hashPassword(password),
      email,
      name,
      groups,
      roles,
      totpSecret: null,
      createdAt: this.#now(),
    };
    if (await this.#store.users.get(username)) throw exists();
    await this.#store.users.put(record, this.actor, 'user.add');
    return { user: userView(record), password: supplied === undefined ? password : null };
  }

  async updateUser(username: string, inputIn: UserUpdateInput): Promise<UserView> {
    this.#write();
    this.#embedded();
    const input = fields('the change', inputIn, ['email', 'name', 'groups', 'roles'] as const);
    const current = await this.#store.users.get(username.toLowerCase());
    if (!current) throw notFound(`user ${describe(username)}`);
    const next: UserRecord = {
      ...current,
      ...(input.email !== undefined ? { email: input.email === null ? null : emailOf(input.email) } : {}),
      ...(input.name !== undefined ? { name: input.name === null ? null : text('name', input.name) } : {}),
      ...(input.groups !== undefined ? { groups: textList('groups', input.groups) } : {}),
      ...(input.roles !== undefined ? { roles: textList('roles', input.roles) } : {}),
    };
    await this.#store.users.put(next, this.actor, 'user.update');
    return userView(next);
  }

  async setPassword(username: string, inputIn: { password?: string }): Promise<{ password: string | null }> {
    this.#write();
    this.#embedded();
    const input = fields('the password change', inputIn ?? {}, ['password'] as const);
    const supplied = input.password === undefined ? undefined : passwordOf(input.password);
    const name = username.toLowerCase();
    if (!(await this.#store.users.get(name))) throw notFound(`user ${describe(username)}`);
    const password = supplied ?? generatePassword();
    const passwordHash = await hashPassword(password);
    const current = await this.#store.users.get(name);
    if (!current) throw notFound(`user ${describe(username)}`);
    await this.#store.users.put({ ...current, passwordHash }, this.actor, 'user.update');
    return { password: supplied === undefined ? password : null };
  }

  async enrollTotp(username: string): Promise<{ uri: string }> {
    this.#write();
    this.#embedded();
    const current = await this.#store.users.get(username.toLowerCase());
    if (!current) throw notFound(`user ${describe(username)}`);
    const secret = newTotpSecret();
    await this.#store.users.put({ ...current, totpSecret: secret }, this.actor, 'user.update');
    return { uri: totpUri(secret, current.username) };
  }

  async removeUser(username: string): Promise<void> {
    this.#write();
    this.#embedded();
    if (!(await this.#store.users.remove(username.toLowerCase(), this.actor)))
      throw notFound(`user ${describe(username)}`);
  }

  // ---- logs ------------------------------------------------------------------------

  #range(filter: { since?: unknown; until?: unknown }): { since?: number; until?: number } {
    const now = this.#now();
    const when = (name: string, v: unknown) => {
      if (v === undefined) return undefined;
      if (typeof v !== 'string') throw usage(`${name} must be a string; found ${describe(v)}`);
      return parseWhen(name, v, now);
    };
    const since = when('since', filter.since);
    const until = when('until', filter.until);
    return { ...(since !== undefined ? { since } : {}), ...(until !== undefined ? { until } : {}) };
  }

  async signIns(filterIn: SignInFilter): Promise<Page<SignInView>> {
    const f = fields('the filter', filterIn ?? {}, [
      'user',
      'app',
      'result',
      'risk',
      'since',
      'until',
      'limit',
      'cursor',
    ] as const);
    const limit = limitOf(f.limit);
    const before = f.cursor === undefined ? undefined : decodeCursor(f.cursor, isBefore).before;
    const rows = await this.#store.signIns.query({
      ...(f.user !== undefined ? { subject: text('user', f.user) } : {}),
      ...(f.app !== undefined ? { app: text('app', f.app) } : {}),
      ...(f.result !== undefined
        ? { result: oneOf('result', f.result, ['success', 'failure', 'stepUp'] as const) }
        : {}),
      ...(f.risk !== undefined ? { risk: oneOf('risk', f.risk, ['none', 'low', 'medium', 'high'] as const) } : {}),
      ...this.#range(f),
      ...(before !== undefined ? { beforeId: before } : {}),
      limit: limit + 1,
      order: 'desc',
    });
    return page(rows, limit, signInView);
  }

  async signIn(id: number): Promise<SignInView> {
    const n = typeof id === 'number' ? id : Number(id);
    if (!Number.isSafeInteger(n) || n < 1)
      throw usage(`a sign-in id is a positive whole number; found ${describe(id)}`);
    const s = await this.#store.signIns.get(n);
    if (!s) throw notFound(`sign-in ${n}`);
    return signInView(s);
  }

  async audit(filterIn: AuditFilter): Promise<Page<AuditView>> {
    const f = fields('the filter', filterIn ?? {}, ['actor', 'action', 'since', 'until', 'limit', 'cursor'] as const);
    const limit = limitOf(f.limit);
    const before = f.cursor === undefined ? undefined : decodeCursor(f.cursor, isBefore).before;
    const rows = await this.#store.audit.query({
      ...(f.actor !== undefined ? { actor: text('actor', f.actor) } : {}),
      ...(f.action !== undefined ? { action: text('action', f.action) } : {}),
      ...this.#range(f),
      ...(before !== undefined ? { beforeId: before } : {}),
      limit: limit + 1,
      order: 'desc',
    });
    return page(rows, limit, auditView);
  }

  async events(inputIn: { after?: string; limit?: number }): Promise<EventsPage> {
    const input = fields('the request', inputIn ?? {}, ['after', 'limit'] as const);
    const limit = limitOf(input.limit, 100);
    const after =
      input.after === undefined ? await this.#store.events.head() : decodeCursor(input.after, isEventCursor);
    const { events, cursor } = await this.#store.events.read(after, limit, this.#now());
    return { events: events.map(eventView), cursor: encodeCursor(cursor) };
  }

  /** Where the event stream of the REST API starts and goes on (the same cursors as `events`). */
  decodeEventCursor(value: string): EventCursor {
    return decodeCursor(value, isEventCursor);
  }

  // ---- risk ------------------------------------------------------------------------

  async riskUsers(inputIn: { all?: boolean | string; since?: string }): Promise<RiskUserView[]> {
    const input = fields('the filter', inputIn ?? {}, ['all', 'since'] as const);
    const all = input.all === true || input.all === 'true' || input.all === '';
    const now = this.#now();
    const decayMs = this.#config().risk.engine.userRiskDecayMs;
    const since =
      input.since === undefined ? now - userRiskHorizonMs(decayMs) : this.#range({ since: input.since }).since!;
    return this.#riskRows(since, now, decayMs, undefined, all);
  }

  async #riskRows(
    since: number,
    now: number,
    decayMs: number,
    only: string | undefined,
    all: boolean,
  ): Promise<RiskUserView[]> {
    const bySubject = new Map<string, RiskDetectionRecord[]>();
    let rows = await this.#store.risk.detections({ since, limit: SCAN_MAX, ...(only ? { subject: only } : {}) });
    for (let pages = 0; ; pages++) {
      for (const d of rows) if (d.subject) bySubject.set(d.subject, [...(bySubject.get(d.subject) ?? []), d]);
      if (rows.length < SCAN_MAX || pages > 20) break;
      rows = await this.#store.risk.detections({
        since,
        afterId: rows.at(-1)!.id,
        limit: SCAN_MAX,
        ...(only ? { subject: only } : {}),
      });
    }
    const states = new Map<string, UserRiskState>((await this.#store.risk.states()).map((s) => [s.subject, s]));
    const subjects = only
      ? new Set([only])
      : new Set([...bySubject.keys(), ...[...states.values()].filter((s) => s.confirmedAt).map((s) => s.subject)]);
    const out: RiskUserView[] = [];
    for (const subject of subjects) {
      const list = bySubject.get(subject) ?? [];
      const state = states.get(subject);
      const level = userRisk(list, state, now, decayMs);
      const last = list.at(-1);
      const confirmed = !!state?.confirmedAt && (state.dismissedAt === null || state.confirmedAt > state.dismissedAt);
      out.push({
        user: subject,
        risk: level,
        state: confirmed
          ? 'confirmedCompromised'
          : level !== 'none'
            ? 'atRisk'
            : state?.dismissedAt
              ? 'dismissed'
              : list.length && list.every(isRemediated)
                ? 'remediated'
                : 'none',
        detections: list.length,
        lastDetection: last ? iso(last.at) : null,
        types: [...new Set(list.map((d) => d.type))],
        decidedBy: state?.by ?? null,
      });
    }
    const order: Record<string, number> = { high: 0, medium: 1, low: 2, none: 3 };
    return out
      .filter((r) => all || only !== undefined || r.risk !== 'none')
      .sort((a, b) => order[a.risk]! - order[b.risk]! || (b.lastDetection ?? '').localeCompare(a.lastDetection ?? ''));
  }

  async riskDetections(filterIn: DetectionFilter): Promise<Page<DetectionView>> {
    const f = fields('the filter', filterIn ?? {}, ['user', 'type', 'since', 'until', 'limit', 'cursor'] as const);
    const limit = limitOf(f.limit);
    const before = f.cursor === undefined ? undefined : decodeCursor(f.cursor, isBefore).before;
    const rows = await this.#store.risk.detections({
      ...(f.user !== undefined ? { subject: text('user', f.user) } : {}),
      ...(f.type !== undefined ? { type: text('type', f.type) } : {}),
      ...this.#range(f),
      ...(before !== undefined ? { beforeId: before } : {}),
      limit: limit + 1,
      order: 'desc',
    });
    return page(rows, limit, detectionView);
  }

  async #riskOf(user: string): Promise<RiskUserView> {
    const now = this.#now();
    const decayMs = this.#config().risk.engine.userRiskDecayMs;
    const [row] = await this.#riskRows(now - userRiskHorizonMs(decayMs), now, decayMs, user, true);
    return row!;
  }

  async dismissRisk(user: string): Promise<RiskUserView> {
    this.#write();
    const subject = text('user', user);
    await this.#store.risk.dismiss(subject, this.actor, this.#now());
    return this.#riskOf(subject);
  }

  async confirmRisk(user: string): Promise<RiskUserView> {
    this.#write();
    const subject = text('user', user);
    await this.#store.risk.confirm(subject, this.actor, this.#now());
    return this.#riskOf(subject);
  }

  // ---- keys ------------------------------------------------------------------------

  async listKeys(): Promise<KeyView[]> {
    const keys = await this.#store.keys.all();
    const current = new Map<string, string>();
    for (const k of [...keys].sort((a, b) => a.createdAt - b.createdAt))
      if (k.retiredAt === null) current.set(k.purpose, k.kid);
    return keys.map((k) => ({
      kid: k.kid,
      purpose: k.purpose,
      createdAt: iso(k.createdAt),
      retiredAt: isoOrNull(k.retiredAt),
      current: current.get(k.purpose) === k.kid,
    }));
  }

  async rotateKeys(inputIn: { purpose: 'session' | 'assertion' | 'all' }): Promise<KeyView[]> {
    this.#write();
    const input = fields('the request', inputIn ?? {}, ['purpose'] as const);
    const purpose = oneOf('purpose', input.purpose ?? 'all', ['session', 'assertion', 'all'] as const)!;
    const config = composeConfig(this.#config(), await this.#store.objects.list()).config;
    const longestSession = Math.max(8 * HOUR, ...config.apps.map((a) => a.sessionLifetimeMs));
    for (const p of purpose === 'all' ? (['session', 'assertion'] as const) : [purpose])
      await rotateKey(this.#store.keys, p, this.actor, longestSession, this.#masterKey);
    return this.listKeys();
  }
}

function page<R extends { id: number }, V>(rows: R[], limit: number, view: (r: R) => V): Page<V> {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items: items.map(view), next: rows.length > limit && last ? encodeCursor({ before: last.id }) : null };
}

function fileView(kind: ObjectKind, spec: Record<string, unknown>): ObjectView {
  return {
    kind,
    name: String(spec['name']),
    source: 'file',
    version: null,
    updatedAt: null,
    updatedBy: null,
    spec: redact(spec),
    inForce: true,
    problem: null,
  };
}

function apiView(kind: ObjectKind, o: ManagedObject, composed: Composed): ObjectView {
  const excluded = composed.excluded.find((e) => e.kind === kind && e.name === o.name);
  return {
    kind,
    name: o.name,
    source: 'api',
    version: o.version,
    updatedAt: iso(o.updatedAt),
    updatedBy: o.updatedBy,
    spec: { name: o.name, ...redact(o.spec) },
    inForce: !excluded,
    problem: excluded?.problem ?? null,
  };
}

function userView(u: UserRecord): UserView {
  return {
    username: u.username,
    email: u.email,
    name: u.name,
    groups: u.groups,
    roles: u.roles,
    totp: u.totpSecret !== null,
    createdAt: iso(u.createdAt),
  };
}

function emailOf(value: unknown): string {
  if (typeof value !== 'string' || value.length > 320 || !EMAIL.test(value) || CONTROL.test(value))
    throw bad(`email: found ${describe(value)}, expected an e-mail address`, [
      { path: 'email', found: describe(value), expected: 'an e-mail address' },
    ]);
  return value;
}

function passwordOf(value: unknown): string {
  if (typeof value !== 'string')
    throw bad('password must be a string', [{ path: 'password', found: typeof value, expected: 'a string' }]);
  try {
    checkPasswordStrength(value);
  } catch (err) {
    throw bad((err as Error).message, [{ path: 'password', found: '(hidden)', expected: (err as Error).message }]);
  }
  return value;
}

function issueText(i: Issue): string {
  return `${i.path || '(the object)'}: found ${i.found}, expected ${i.expected}`;
}
