// The OpenAPI 3.1 description of the REST API. Paths, methods, roles and success
// statuses come from the route table the server routes by; the table below adds, per
// operation, what it takes and answers (a missing operation does not compile), so the
// document and the server cannot drift apart. Schemas keep to the JSON Schema keywords
// that mean the same in draft-07 and 2020-12, so any validator reads them alike.
import { API_BASE, ROUTES, type Operation, type RouteSpec } from '../../admin/api-types.js';
import { FILE_ONLY_KEYS } from '../../admin/compose.js';
import { PLATFORMS, RISK_LEVELS, WEEKDAYS } from '../../policy/model.js';
import { VERSION } from '../../version.js';

type Json = Record<string, unknown>;
type Schema = Json;

const CONFIG_DOC = 'docs/configuration.md';

type SchemaName =
  | 'Caller'
  | 'Error'
  | 'Me'
  | 'LoginInfo'
  | 'AppSpec'
  | 'PolicySpec'
  | 'LocationSpec'
  | 'AppInput'
  | 'AppReplacement'
  | 'PolicyInput'
  | 'LocationInput'
  | 'ObjectView'
  | 'ConnectorView'
  | 'ConnectorDetail'
  | 'GroupView'
  | 'GroupInput'
  | 'UserView'
  | 'NewUserInput'
  | 'NewUserResult'
  | 'UserUpdateInput'
  | 'PasswordInput'
  | 'PasswordResult'
  | 'TotpEnrollment'
  | 'SignInView'
  | 'SignInPage'
  | 'AuditView'
  | 'AuditPage'
  | 'DetectionView'
  | 'DetectionPage'
  | 'RiskUserView'
  | 'KeyView'
  | 'RotateKeysInput'
  | 'SecurityEventView'
  | 'EventsPage'
  | 'EventStreamLine'
  | 'WhatIfInput'
  | 'WhatIfResult'
  | 'ReplicaView'
  | 'Overview';

const TAGS = {
  overview: 'Health of the relay at a glance',
  apps: `Published apps: the file's (read-only) and the API's. Specs as in ${CONFIG_DOC}`,
  policies: 'Conditional Access policies, and what-if',
  locations: 'Named locations for Conditional Access',
  connectors: 'Registered connectors, their channels and certificates',
  groups: 'Connector groups',
  users: "The embedded identity provider's users (409 when an external provider is configured)",
  signins: 'The sign-in log',
  audit: 'The audit log of every change',
  events: 'Security events (sign-ins, audit entries, risk detections) for SIEMs and live views',
  risk: 'Users at risk and risk detections',
  keys: 'Session and assertion signing keys (never the key material)',
  session: 'Who is calling; how to sign in; this document',
};
type Tag = keyof typeof TAGS;

// ---- schema builders ----------------------------------------------------------------

const ref = (name: SchemaName): Schema => ({ $ref: `#/components/schemas/${name}` });
const str: Schema = { type: 'string' };
const int: Schema = { type: 'integer' };
const bool: Schema = { type: 'boolean' };
const time: Schema = { type: 'string', format: 'date-time' };
const strList: Schema = { type: 'array', items: { type: 'string', minLength: 1 } };
const enumOf = (values: readonly (string | null)[]): Schema => ({
  type: values.includes(null) ? ['string', 'null'] : 'string',
  enum: [...values],
});
const RISK = enumOf(RISK_LEVELS);
const LEVEL = enumOf(['low', 'medium', 'high']);
const describe = (description: string, schema: Schema): Schema => ({ ...schema, description });
const arrayOf = (items: Schema): Schema => ({ type: 'array', items });

/** The same schema, or null. */
function nullable(s: Schema): Schema {
  if (s['$ref'] !== undefined) return { anyOf: [s, { type: 'null' }] };
  const out: Schema = { ...s, type: [s['type'], 'null'] };
  if (Array.isArray(s['enum'])) out['enum'] = [...(s['enum'] as unknown[]), null];
  return out;
}

/**
 * An object whose properties are all required but `optional`. Inputs are `closed`:
 * the server refuses unknown fields. Views stay open (new fields may be added).
 */
function object(
  properties: Record<string, Schema>,
  options: { optional?: readonly string[]; closed?: boolean; description?: string } = {},
): Schema {
  const required = Object.keys(properties).filter((k) => !options.optional?.includes(k));
  return {
    type: 'object',
    ...(options.description ? { description: options.description } : {}),
    ...(required.length ? { required } : {}),
    properties,
    ...(options.closed ? { additionalProperties: false } : {}),
  };
}

const omit = (props: Record<string, Schema>, keys: readonly string[]): Record<string, Schema> =>
  Object.fromEntries(Object.entries(props).filter(([k]) => !keys.includes(k)));

const page = (item: SchemaName): Schema =>
  object(
    {
      items: arrayOf(ref(item)),
      next: describe('The cursor of the next (older) page; null on the last', nullable(str)),
    },
    { description: `A page of ${item}s, newest first` },
  );

// ---- the config file's objects ------------------------------------------------------

const APP_NAME = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' };
const CA_NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$' };
const duration = (what: string): Schema => describe(`${what}: a duration such as 500ms, 85s, 5m, 12h`, str);
const includeExclude = (items: Schema = { type: 'string', minLength: 1 }): Schema =>
  object({ include: arrayOf(items), exclude: arrayOf(items) }, { optional: ['include', 'exclude'], closed: true });

/** The keys of an app in the configuration file (APP_KEYS of src/config/relay-config.ts). */
const APP_PROPERTIES: Record<string, Schema> = {
  name: describe('Lower-case letters, digits and dashes', APP_NAME),
  externalUrl: describe('The https URL users reach (a wildcard only as the first label)', str),
  internalUrl: describe('The http(s) URL of the backend, as the connector reaches it', str),
  preauth: describe(
    'oidc (default): sign in first; passthrough: no preauthentication',
    enumOf(['oidc', 'passthrough']),
  ),
  connectorGroup: describe('The connector group that serves it (default)', APP_NAME),
  backendTimeout: describe('A duration, or long (180s) or default (85s)', str),
  passHostHeader: bool,
  backendProtocol: describe(
    'http1 (default); h2c: HTTP/2 cleartext to an http:// backend; h2: HTTP/2 over TLS to an https:// backend (gRPC needs h2c or h2)',
    enumOf(['http1', 'h2c', 'h2']),
  ),
  clientId: str,
  clientSecret: describe('File only; reads "(redacted)"', str),
  clientSecretFile: describe('File only', str),
  assignment: enumOf(['assigned', 'any']),
  assignedUsers: strList,
  assignedGroups: strList,
  identityHeaders: bool,
  caseInsensitivePaths: bool,
  forwardHeaders: describe("Other proxies' identity headers the app opts back in to", strList),
  sessionLifetime: duration('How long a session lasts (8h)'),
  cookie: object(
    { sameSite: enumOf(['Lax', 'Strict', 'None']), persistent: bool, httpOnly: bool },
    { optional: ['sameSite', 'persistent', 'httpOnly'], closed: true },
  ),
  tls: describe('File only', object({ certFile: str, keyFile: str }, { optional: ['keyFile'], closed: true })),
  maxBodyBytes: describe('Bytes, or a size such as 512KiB or 10MB', { type: ['integer', 'string'] }),
  translateHeaders: bool,
  translateLinks: bool,
};
const APP_REQUIRED = ['name', 'externalUrl', 'internalUrl'];
const optionalBut = (props: Record<string, Schema>, required: readonly string[]): string[] =>
  Object.keys(props).filter((k) => !required.includes(k));

const POLICY_PROPERTIES: Record<string, Schema> = {
  name: describe('Letters, digits, spaces, ".", "_" or "-"', CA_NAME),
  state: enumOf(['on', 'off', 'reportOnly']),
  assignments: object(
    { users: includeExclude(), groups: includeExclude(), apps: includeExclude() },
    { optional: ['users', 'groups', 'apps'], closed: true },
  ),
  conditions: object(
    {
      locations: includeExclude(),
      platforms: includeExclude(enumOf([...PLATFORMS, 'all'])),
      signInRisk: arrayOf(RISK),
      userRisk: arrayOf(RISK),
      time: object(
        {
          days: describe(`Of ${WEEKDAYS.join(', ')} (any case)`, strList),
          from: describe('HH:MM', str),
          to: describe('HH:MM', str),
          timeZone: describe('An IANA time zone (UTC)', str),
          outside: bool,
        },
        { optional: ['days', 'timeZone', 'outside'], closed: true },
      ),
    },
    { optional: ['locations', 'platforms', 'signInRisk', 'userRisk', 'time'], closed: true },
  ),
  grant: object(
    {
      block: bool,
      requireMfa: bool,
      requireAcr: str,
      requireDeviceCertificate: bool,
      operator: enumOf(['all', 'any']),
    },
    { optional: ['block', 'requireMfa', 'requireAcr', 'requireDeviceCertificate', 'operator'], closed: true },
  ),
  session: object(
    { signInFrequency: duration('Sign in again after'), persistentBrowser: bool },
    { optional: ['signInFrequency', 'persistentBrowser'], closed: true },
  ),
};
const POLICY_REQUIRED = ['name', 'assignments', 'grant'];

const LOCATION_PROPERTIES: Record<string, Schema> = {
  name: describe('Letters, digits, spaces, ".", "_" or "-"', CA_NAME),
  cidrs: describe('CIDR ranges or single addresses, not overlapping', strList),
  countries: describe('ISO 3166 alpha-2 country codes', strList),
};
const CIDRS_OR_COUNTRIES = { anyOf: [{ required: ['cidrs'] }, { required: ['countries'] }] };

const expectedVersion = describe(
  'The version this change is made against (as If-Match): a stale one is refused with 409',
  { type: 'integer', minimum: 0 },
);
const SPEC_NOTE = `Keys as in the configuration file: see ${CONFIG_DOC}.`;

// ---- components.schemas ------------------------------------------------------------

const CONNECTOR_VIEW: Record<string, Schema> = {
  id: str,
  name: str,
  group: str,
  status: enumOf(['online', 'offline', 'revoked']),
  version: describe("The connector's software version", nullable(str)),
  createdAt: time,
  registeredBy: str,
  lastSeen: nullable(time),
  revokedAt: nullable(time),
  certificateExpires: nullable(time),
  certificates: int,
};

const SIGN_IN_VIEW: Record<string, Schema> = {
  id: { type: 'integer', minimum: 1 },
  at: time,
  requestId: nullable(str),
  traceId: nullable(str),
  kind: enumOf(['interactive', 'bearer', 'provider']),
  app: nullable(str),
  user: nullable(str),
  ip: nullable(str),
  country: nullable(str),
  city: nullable(str),
  latitude: nullable({ type: 'number' }),
  longitude: nullable({ type: 'number' }),
  asn: nullable(int),
  network: nullable(str),
  userAgent: nullable(str),
  browser: nullable(str),
  os: nullable(str),
  clientType: enumOf(['browser', 'script', 'bearer', null]),
  methods: arrayOf(str),
  result: enumOf(['success', 'failure', 'stepUp']),
  reason: nullable(str),
  policies: describe('The policies evaluated, as the relay logged them', arrayOf({})),
  risk: RISK,
  detections: arrayOf(object({ type: str, level: LEVEL, detail: str }, { optional: ['detail'] })),
};

const event = (kind: string, prefix: string, data: SchemaName): Schema =>
  object({
    id: describe('Stable: receivers de-duplicate on it', { type: 'string', pattern: `^${prefix}-[0-9]+$` }),
    kind: { type: 'string', const: kind },
    at: time,
    data: ref(data),
  });

const SCHEMAS: Record<SchemaName, Schema> = {
  Caller: object({
    subject: str,
    name: nullable(str),
    role: enumOf(['admin', 'reader']),
    via: describe(
      'token: a bearer token; session: the console; local: the data directory',
      enumOf(['token', 'session', 'local']),
    ),
  }),
  Error: object(
    {
      error: object(
        {
          code: describe('Stable: ERR_NOT_FOUND, ERR_CONFLICT, ERR_CONFIG_INVALID…', str),
          message: str,
          issues: describe(
            'Each invalid field, as the configuration loader reports it',
            arrayOf(object({ path: str, found: str, expected: str })),
          ),
        },
        { optional: ['issues'] },
      ),
    },
    { description: 'The body of every refusal' },
  ),
  Me: object({
    caller: ref('Caller'),
    csrfToken: describe(
      "The console session's anti-CSRF token (send it as x-proxyctl-csrf); null for tokens",
      nullable(str),
    ),
  }),
  LoginInfo: object(
    {
      issuer: describe('The identity provider to get a token from', str),
      cliClientId: describe("The CLI's client id at the embedded provider", str),
      adminAudience: describe('The audience an administrator token must carry', str),
    },
    { optional: ['cliClientId'] },
  ),

  AppSpec: object(APP_PROPERTIES, {
    optional: optionalBut(APP_PROPERTIES, APP_REQUIRED),
    closed: true,
    description: `An app as the configuration file spells it. ${SPEC_NOTE}`,
  }),
  PolicySpec: object(POLICY_PROPERTIES, {
    optional: optionalBut(POLICY_PROPERTIES, POLICY_REQUIRED),
    closed: true,
    description: `A Conditional Access policy as the configuration file spells it. ${SPEC_NOTE}`,
  }),
  LocationSpec: {
    ...object(LOCATION_PROPERTIES, {
      optional: ['cidrs', 'countries'],
      closed: true,
      description: `A named location as the configuration file spells it. ${SPEC_NOTE}`,
    }),
    ...CIDRS_OR_COUNTRIES,
  },
  AppInput: object(omit(APP_PROPERTIES, FILE_ONLY_KEYS.app), {
    optional: optionalBut(omit(APP_PROPERTIES, FILE_ONLY_KEYS.app), APP_REQUIRED),
    closed: true,
    description: `An app to publish. ${SPEC_NOTE} ${FILE_ONLY_KEYS.app.join(', ')} are for the file only (422).`,
  }),
  AppReplacement: object(
    { ...omit(APP_PROPERTIES, FILE_ONLY_KEYS.app), expectedVersion },
    {
      optional: optionalBut(omit(APP_PROPERTIES, FILE_ONLY_KEYS.app), ['externalUrl', 'internalUrl']).concat(
        'expectedVersion',
      ),
      closed: true,
      description: `The whole new spec of an API app; name, if given, is the path's. ${SPEC_NOTE}`,
    },
  ),
  PolicyInput: object(
    { ...POLICY_PROPERTIES, expectedVersion },
    {
      optional: optionalBut(POLICY_PROPERTIES, ['assignments', 'grant']).concat('expectedVersion'),
      closed: true,
      description: `The whole spec of an API policy; name, if given, is the path's. ${SPEC_NOTE}`,
    },
  ),
  LocationInput: {
    ...object(
      { ...LOCATION_PROPERTIES, expectedVersion },
      {
        optional: ['name', 'cidrs', 'countries', 'expectedVersion'],
        closed: true,
        description: `The whole spec of an API named location; name, if given, is the path's. ${SPEC_NOTE}`,
      },
    ),
    ...CIDRS_OR_COUNTRIES,
  },
  ObjectView: object({
    kind: enumOf(['app', 'policy', 'location']),
    name: str,
    source: describe('file: read-only here; api: published through the API', enumOf(['file', 'api'])),
    version: describe(
      'API objects: 1 on create, +1 per change (the ETag); file objects: null',
      nullable({ type: 'integer', minimum: 1 }),
    ),
    updatedAt: nullable(time),
    updatedBy: nullable(str),
    spec: describe(`The object as YAML would spell it; secrets read "(redacted)". ${SPEC_NOTE}`, {
      anyOf: [ref('AppSpec'), ref('PolicySpec'), ref('LocationSpec')],
    }),
    inForce: describe('False when an API object clashes with the file (the file wins)', bool),
    problem: nullable(str),
  }),

  ConnectorView: object(CONNECTOR_VIEW),
  ConnectorDetail: object({
    ...CONNECTOR_VIEW,
    channels: describe(
      'Open control channels on the answering relay',
      nullable(
        arrayOf(
          object({ replica: str, openedAt: time, version: nullable(str), inFlight: { type: 'integer', minimum: 0 } }),
        ),
      ),
    ),
    certificateList: arrayOf(
      object({
        serial: str,
        kind: enumOf(['register', 'renew']),
        issuedAt: time,
        notAfter: time,
        revokedAt: nullable(time),
      }),
    ),
  }),
  GroupView: object({
    name: str,
    source: describe(
      'api: declared through the API; derived: named by an app or a connector',
      enumOf(['api', 'derived']),
    ),
    description: nullable(str),
    version: nullable({ type: 'integer', minimum: 1 }),
    connectors: object({ total: int, online: int, revoked: int }),
    apps: arrayOf(str),
  }),
  GroupInput: object(
    { name: APP_NAME, description: { type: 'string', minLength: 1, maxLength: 200 } },
    { optional: ['description'], closed: true },
  ),

  UserView: object({
    username: str,
    email: nullable(str),
    name: nullable(str),
    groups: arrayOf(str),
    roles: arrayOf(str),
    totp: describe('A TOTP second factor is enrolled', bool),
    createdAt: time,
  }),
  NewUserInput: object(
    {
      username: describe('Letters, digits, ".", "_", "@" or "-" (stored lower-case)', {
        type: 'string',
        pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$',
      }),
      email: { type: 'string', maxLength: 320, pattern: '^[^\\s@]+@[^\\s@]+$' },
      name: { type: 'string', minLength: 1, maxLength: 256 },
      groups: { ...strList, maxItems: 200 },
      roles: { ...strList, maxItems: 200 },
      password: describe('Omitted: one is generated and returned once', str),
    },
    { optional: ['email', 'name', 'groups', 'roles', 'password'], closed: true },
  ),
  NewUserResult: object({
    user: ref('UserView'),
    password: describe('The generated password (shown once); null when it was given', nullable(str)),
  }),
  UserUpdateInput: object(
    {
      email: nullable({ type: 'string', maxLength: 320, pattern: '^[^\\s@]+@[^\\s@]+$' }),
      name: nullable({ type: 'string', minLength: 1, maxLength: 256 }),
      groups: { ...strList, maxItems: 200 },
      roles: { ...strList, maxItems: 200 },
    },
    { optional: ['email', 'name', 'groups', 'roles'], closed: true },
  ),
  PasswordInput: object(
    { password: describe('Omitted: one is generated and returned once', str) },
    { optional: ['password'], closed: true },
  ),
  PasswordResult: object({
    password: describe('The generated password (shown once); null when it was given', nullable(str)),
  }),
  TotpEnrollment: object({ uri: describe('An otpauth:// URI for an authenticator app', str) }),

  SignInView: object(SIGN_IN_VIEW),
  SignInPage: page('SignInView'),
  AuditView: object({
    id: { type: 'integer', minimum: 1 },
    at: time,
    actor: describe('api:<subject>, console:<subject>, or the local user of the data directory', str),
    action: describe('app.publish, connector.revoke, user.add…', str),
    connectorId: nullable(str),
    details: { type: 'object' },
  }),
  AuditPage: page('AuditView'),
  DetectionView: object({
    id: { type: 'integer', minimum: 1 },
    at: time,
    user: nullable(str),
    ip: nullable(str),
    app: nullable(str),
    type: str,
    level: LEVEL,
    signInId: nullable(int),
    details: { type: 'object' },
  }),
  DetectionPage: page('DetectionView'),
  RiskUserView: object({
    user: str,
    risk: RISK,
    state: enumOf(['atRisk', 'confirmedCompromised', 'dismissed', 'remediated', 'none']),
    detections: int,
    lastDetection: nullable(time),
    types: arrayOf(str),
    decidedBy: nullable(str),
  }),
  KeyView: object({
    kid: str,
    purpose: enumOf(['session', 'assertion']),
    createdAt: time,
    retiredAt: nullable(time),
    current: bool,
  }),
  RotateKeysInput: object(
    { purpose: describe('all when omitted', enumOf(['session', 'assertion', 'all'])) },
    { optional: ['purpose'], closed: true },
  ),

  SecurityEventView: {
    description: 'A sign-in, an audit entry or a risk detection',
    oneOf: [
      event('signIn', 'signin', 'SignInView'),
      event('audit', 'audit', 'AuditView'),
      event('riskDetection', 'risk', 'DetectionView'),
    ],
  },
  EventsPage: object({
    events: arrayOf(ref('SecurityEventView')),
    cursor: describe('Pass back as `after` to read what came next', str),
  }),
  EventStreamLine: object(
    { cursor: describe('Where a reconnect resumes (after)', str), event: ref('SecurityEventView') },
    { description: 'One line of the NDJSON event stream' },
  ),

  WhatIfInput: object(
    {
      app: str,
      user: describe('Embedded provider: a user name or e-mail of its users; external: the subject', str),
      email: str,
      groups: { ...strList, maxItems: 200 },
      ip: str,
      platform: enumOf(PLATFORMS),
      mfa: bool,
      acr: str,
      risk: RISK,
      userRisk: RISK,
      time: describe('An ISO 8601 instant with a zone; now when omitted', str),
      deviceCert: bool,
      draftPolicies: describe('Evaluate with these policies in place of those of the same name, without saving', {
        type: 'array',
        maxItems: 50,
        items: ref('PolicySpec'),
      }),
    },
    {
      optional: [
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
      ],
      closed: true,
    },
  ),
  WhatIfResult: object({
    userSource: describe(
      'embedded: `user` named an embedded user, whose groups and e-mail were used',
      enumOf(['embedded', 'options']),
    ),
    context: object(
      {
        app: str,
        user: str,
        email: nullable(str),
        groups: arrayOf(str),
        ip: str,
        country: nullable(str),
        platform: enumOf(PLATFORMS),
        amr: arrayOf(str),
        acr: nullable(str),
        risk: RISK,
        userRisk: RISK,
        time: time,
        deviceCertificate: bool,
      },
      { description: 'The sign-in as evaluated' },
    ),
    assigned: bool,
    decision: object({
      result: enumOf(['allow', 'deny', 'stepUp']),
      decidedBy: describe('The policy that denied or asks for step-up', nullable(str)),
      hint: describe('What the user is told', nullable(str)),
      stepUp: nullable(object({ mfa: bool, acr: nullable(str) })),
      policies: arrayOf(
        object({
          name: str,
          state: enumOf(['on', 'off', 'reportOnly']),
          applies: bool,
          why: str,
          outcome: enumOf(['notApplicable', 'granted', 'blocked', 'unsatisfied']),
          missing: arrayOf(str),
        }),
      ),
      session: object({ signInFrequencyMs: nullable(int), persistentBrowser: nullable(bool) }),
    }),
  }),

  ReplicaView: object({
    id: str,
    url: str,
    startedAt: time,
    heartbeatAt: time,
    self: describe('The replica answering this request', bool),
  }),
  Overview: object({
    replicas: arrayOf(ref('ReplicaView')),
    connectors: object({ total: int, online: int, offline: int, revoked: int, expiringSoon: int }),
    apps: object({ total: int, file: int, api: int, notInForce: int }),
    signIns: describe(
      'Hourly buckets over the last 24 h',
      arrayOf(object({ start: time, success: int, failure: int, stepUp: int })),
    ),
    requests: describe(
      'Per-minute buckets over the last hour on the answering replica',
      nullable(arrayOf(object({ start: time, count: int, errors: int }))),
    ),
    risk: object({ usersAtRisk: int, detections24h: int }),
  }),
};

// ---- the operations ---------------------------------------------------------------

interface Param {
  schema: Schema;
  description: string;
}

/** Refusals an operation itself may answer; 400, 401 and 403 every route may, 413 and 415 every body. */
type Refusal = 404 | 409 | 422;

interface OperationDoc {
  tag: Tag;
  description?: string;
  /** Path parameters (every `{x}` of the route's path). */
  path?: Record<string, Param>;
  query?: Record<string, Param>;
  body?: { schema: SchemaName; required: boolean };
  /** The success body; absent for 204. */
  response?: Schema;
  refusals: Refusal[];
}

const NAME_PARAM = (what: string): Record<string, Param> => ({
  name: { schema: str, description: `The ${what}'s name` },
});
const CONNECTOR_PARAM: Record<string, Param> = {
  id: { schema: str, description: 'The connector id, or its name (id:… or name:… when both match)' },
};
const USER_PARAM: Record<string, Param> = { username: { schema: str, description: 'The user name (any case)' } };
const RISK_USER: Record<string, Param> = {
  user: { schema: str, description: 'The subject the detections count against' },
};

const LIMIT = (fallback: number): Param => ({
  schema: { type: 'integer', minimum: 1, maximum: 1000, default: fallback },
  description: `How many (1 to 1000, default ${fallback})`,
});
const CURSOR: Param = { schema: str, description: 'The `next` of the previous page' };
const WHEN = (what: string): Param => ({
  schema: str,
  description: `${what}: an ISO 8601 date or time (2026-12-01T08:00:00Z) or a duration ago (24h, 7d)`,
});
const RANGE = { since: WHEN('From'), until: WHEN('Up to') };
const ONE_OF = (values: readonly string[], what: string): Param => ({ schema: enumOf(values), description: what });

const list = (name: SchemaName): Schema => arrayOf(ref(name));

const OPERATIONS: Record<Operation, OperationDoc> = {
  overview: { tag: 'overview', response: ref('Overview'), refusals: [] },

  listApps: { tag: 'apps', response: list('ObjectView'), refusals: [] },
  getApp: { tag: 'apps', path: NAME_PARAM('app'), response: ref('ObjectView'), refusals: [404] },
  publishApp: {
    tag: 'apps',
    description: 'Validated by the configuration loader; the relay serves it when the answer comes.',
    body: { schema: 'AppInput', required: true },
    response: ref('ObjectView'),
    refusals: [409, 422],
  },
  updateApp: {
    tag: 'apps',
    path: NAME_PARAM('app'),
    body: { schema: 'AppReplacement', required: true },
    response: ref('ObjectView'),
    refusals: [404, 409, 422],
  },
  removeApp: { tag: 'apps', path: NAME_PARAM('app'), refusals: [404, 409] },

  listPolicies: { tag: 'policies', response: list('ObjectView'), refusals: [] },
  getPolicy: { tag: 'policies', path: NAME_PARAM('policy'), response: ref('ObjectView'), refusals: [404] },
  putPolicy: {
    tag: 'policies',
    path: NAME_PARAM('policy'),
    body: { schema: 'PolicyInput', required: true },
    response: ref('ObjectView'),
    refusals: [404, 409, 422],
  },
  removePolicy: { tag: 'policies', path: NAME_PARAM('policy'), refusals: [404, 409] },
  whatIf: {
    tag: 'policies',
    description: 'A read: nothing is saved, draft policies included.',
    body: { schema: 'WhatIfInput', required: true },
    response: ref('WhatIfResult'),
    refusals: [409, 422],
  },

  listLocations: { tag: 'locations', response: list('ObjectView'), refusals: [] },
  getLocation: { tag: 'locations', path: NAME_PARAM('named location'), response: ref('ObjectView'), refusals: [404] },
  putLocation: {
    tag: 'locations',
    path: NAME_PARAM('named location'),
    body: { schema: 'LocationInput', required: true },
    response: ref('ObjectView'),
    refusals: [404, 409, 422],
  },
  removeLocation: { tag: 'locations', path: NAME_PARAM('named location'), refusals: [404, 409] },

  listConnectors: { tag: 'connectors', response: list('ConnectorView'), refusals: [] },
  getConnector: { tag: 'connectors', path: CONNECTOR_PARAM, response: ref('ConnectorDetail'), refusals: [404] },
  revokeConnector: { tag: 'connectors', path: CONNECTOR_PARAM, response: ref('ConnectorView'), refusals: [404] },
  deleteConnector: {
    tag: 'connectors',
    description: 'Only a revoked connector (409 otherwise); its certificates stay refused.',
    path: CONNECTOR_PARAM,
    refusals: [404, 409],
  },

  listGroups: { tag: 'groups', response: list('GroupView'), refusals: [] },
  getGroup: { tag: 'groups', path: NAME_PARAM('group'), response: ref('GroupView'), refusals: [404] },
  createGroup: {
    tag: 'groups',
    body: { schema: 'GroupInput', required: true },
    response: ref('GroupView'),
    refusals: [409, 422],
  },
  removeGroup: {
    tag: 'groups',
    description: 'Only a group declared through the API that no app and no live connector uses (409 otherwise).',
    path: NAME_PARAM('group'),
    refusals: [404, 409],
  },

  listUsers: { tag: 'users', response: list('UserView'), refusals: [409] },
  getUser: { tag: 'users', path: USER_PARAM, response: ref('UserView'), refusals: [404, 409] },
  addUser: {
    tag: 'users',
    body: { schema: 'NewUserInput', required: true },
    response: ref('NewUserResult'),
    refusals: [409, 422],
  },
  updateUser: {
    tag: 'users',
    path: USER_PARAM,
    body: { schema: 'UserUpdateInput', required: true },
    response: ref('UserView'),
    refusals: [404, 409, 422],
  },
  setPassword: {
    tag: 'users',
    path: USER_PARAM,
    body: { schema: 'PasswordInput', required: false },
    response: ref('PasswordResult'),
    refusals: [404, 409, 422],
  },
  enrollTotp: { tag: 'users', path: USER_PARAM, response: ref('TotpEnrollment'), refusals: [404, 409] },
  removeUser: { tag: 'users', path: USER_PARAM, refusals: [404, 409] },

  signIns: {
    tag: 'signins',
    query: {
      user: { schema: str, description: 'The subject' },
      app: { schema: str, description: 'The app name' },
      result: ONE_OF(['success', 'failure', 'stepUp'], 'The outcome'),
      risk: ONE_OF(RISK_LEVELS, 'The sign-in risk'),
      ...RANGE,
      limit: LIMIT(50),
      cursor: CURSOR,
    },
    response: ref('SignInPage'),
    refusals: [422],
  },
  signIn: {
    tag: 'signins',
    path: { id: { schema: { type: 'integer', minimum: 1 }, description: 'The sign-in id' } },
    response: ref('SignInView'),
    refusals: [404],
  },
  audit: {
    tag: 'audit',
    query: {
      actor: { schema: str, description: 'Who made the change (api:<subject>, console:<subject>…)' },
      action: { schema: str, description: 'An action (app.publish), or a prefix ending in "." (connector.)' },
      ...RANGE,
      limit: LIMIT(50),
      cursor: CURSOR,
    },
    response: ref('AuditPage'),
    refusals: [422],
  },
  events: {
    tag: 'events',
    query: {
      after: { schema: str, description: 'The `cursor` of the previous answer; absent: from now on' },
      limit: LIMIT(100),
    },
    response: ref('EventsPage'),
    refusals: [422],
  },

  riskUsers: {
    tag: 'risk',
    query: {
      all: { schema: bool, description: 'Also the users whose risk is none now' },
      since: WHEN('Detections from'),
    },
    response: list('RiskUserView'),
    refusals: [422],
  },
  riskDetections: {
    tag: 'risk',
    query: {
      user: { schema: str, description: 'The subject' },
      type: { schema: str, description: 'The detection type' },
      ...RANGE,
      limit: LIMIT(50),
      cursor: CURSOR,
    },
    response: ref('DetectionPage'),
    refusals: [422],
  },
  dismissRisk: { tag: 'risk', path: RISK_USER, response: ref('RiskUserView'), refusals: [422] },
  confirmRisk: { tag: 'risk', path: RISK_USER, response: ref('RiskUserView'), refusals: [422] },

  listKeys: { tag: 'keys', response: list('KeyView'), refusals: [] },
  rotateKeys: {
    tag: 'keys',
    body: { schema: 'RotateKeysInput', required: false },
    response: list('KeyView'),
    refusals: [422],
  },
};

// ---- building the document -----------------------------------------------------------

const REFUSALS: Record<number, string> = {
  400: 'A malformed request: bad JSON, path, query value or cursor, a parameter given twice',
  401: 'No valid bearer token (or console session)',
  403: 'The reader role, a token without an administration role, or a console write without its anti-CSRF token',
  404: 'No such object',
  409: 'A conflict: the name exists, the object is the file’s, the version is stale, or it is still in use',
  413: 'The request body is too large',
  415: 'The request body is not application/json',
  422: 'An invalid or unknown field; `issues` names each',
  503: 'Too many open event streams',
};

const errorRef = (status: number): Json => ({ $ref: `#/components/responses/Error${status}` });
const json = (schema: Schema): Json => ({ 'application/json': { schema } });

const IF_MATCH: Json = {
  name: 'If-Match',
  in: 'header',
  required: false,
  description: 'The version the change is made against ("3", the ETag of the object); a stale one is refused with 409',
  schema: { type: 'string', pattern: '^\\s*(W/)?"?[0-9]{1,15}"?\\s*$' },
};
const ETAG: Json = {
  ETag: {
    description: 'The version of an API object ("3"), for If-Match; absent for the file\'s objects and derived groups',
    schema: { type: 'string' },
  },
};
const BEARER = [{ bearer: [] }];

function operation(r: RouteSpec): Json {
  const doc = OPERATIONS[r.op];
  const status = r.status ?? 200;
  if ((status === 204) !== (doc.response === undefined))
    throw new Error(`openapi: ${r.op} answers ${status} but its documented body disagrees`);
  const template = [...r.path.matchAll(/\{([a-z]+)\}/gi)].map((m) => m[1]!);
  const parameters: Json[] = template.map((name) => {
    const p = doc.path?.[name];
    if (!p) throw new Error(`openapi: ${r.op} does not describe path parameter ${name}`);
    return { name, in: 'path', required: true, description: p.description, schema: p.schema };
  });
  for (const [name, p] of Object.entries(doc.query ?? {}))
    parameters.push({ name, in: 'query', required: false, description: p.description, schema: p.schema });
  if (r.args.includes('ifMatch')) parameters.push(IF_MATCH);
  const hasBody = r.method === 'POST' || r.method === 'PUT';
  const refusals = [400, 401, 403, ...doc.refusals, ...(hasBody ? [413, 415] : [])].sort((a, b) => a - b);
  const etag = [ref('ObjectView')['$ref'], ref('GroupView')['$ref']].includes(doc.response?.['$ref']);
  return {
    operationId: r.op,
    summary: r.summary,
    ...(doc.description ? { description: doc.description } : {}),
    tags: [doc.tag],
    security: BEARER,
    ...(parameters.length ? { parameters } : {}),
    ...(doc.body ? { requestBody: { required: doc.body.required, content: json(ref(doc.body.schema)) } } : {}),
    responses: {
      [String(status)]: doc.response
        ? { description: 'Success', ...(etag ? { headers: ETAG } : {}), content: json(doc.response) }
        : { description: 'Done (no body)' },
      ...Object.fromEntries(refusals.map((s) => [String(s), errorRef(s)])),
      default: errorRef(500),
    },
    'x-proxyctl-role': r.write ? 'admin' : 'reader',
  };
}

/** The endpoints outside the route table: served by the handler itself. */
function extraPaths(): Record<string, Json> {
  const get = (op: Json): Json => ({ get: op });
  return {
    [`${API_BASE}/me`]: get({
      operationId: 'me',
      summary: 'Who is calling, and the console session’s anti-CSRF token',
      tags: ['session'],
      security: BEARER,
      responses: {
        '200': { description: 'The caller', content: json(ref('Me')) },
        '400': errorRef(400),
        '401': errorRef(401),
        '403': errorRef(403),
        default: errorRef(500),
      },
      'x-proxyctl-role': 'reader',
    }),
    [`${API_BASE}/login-info`]: get({
      operationId: 'loginInfo',
      summary: 'Where to get an administrator token (proxyctl login); no authentication',
      tags: ['session'],
      security: [],
      responses: { '200': { description: 'The identity provider', content: json(ref('LoginInfo')) } },
    }),
    [`${API_BASE}/openapi.json`]: get({
      operationId: 'openApiDocument',
      summary: 'This document; no authentication',
      tags: ['session'],
      security: [],
      responses: { '200': { description: 'The OpenAPI 3.1 document', content: json({ type: 'object' }) } },
    }),
    [`${API_BASE}/events/stream`]: get({
      operationId: 'eventStream',
      summary: 'Security events as they happen, from a cursor on',
      description:
        'Server-Sent Events when Accept names text/event-stream (`id:` the cursor, `event:` the kind, `data:` a ' +
        'SecurityEventView as JSON; comments keep the connection alive), otherwise NDJSON: one EventStreamLine a ' +
        'line. A reconnect resumes from Last-Event-ID, or from `after`. The stream starts at the head (only what ' +
        'comes next) without either.',
      tags: ['events'],
      security: BEARER,
      parameters: [
        { name: 'after', in: 'query', required: false, description: 'A cursor to start after', schema: str },
        {
          name: 'Last-Event-ID',
          in: 'header',
          required: false,
          description: 'The SSE reconnect cursor; wins over `after`',
          schema: str,
        },
      ],
      responses: {
        '200': {
          description: 'The stream (it stays open)',
          content: {
            'text/event-stream': {
              schema: describe('Events: id (the cursor), event (the kind), data (a SecurityEventView)', str),
            },
            'application/x-ndjson': { schema: ref('EventStreamLine') },
          },
        },
        '400': errorRef(400),
        '401': errorRef(401),
        '403': errorRef(403),
        '503': errorRef(503),
        default: errorRef(500),
      },
      'x-proxyctl-role': 'reader',
    }),
  };
}

const DESCRIPTION = `The administration API of a proxyctl relay: apps, Conditional Access policies,
named locations, connectors, users of the embedded provider, the sign-in and audit logs,
risk and keys. Served under ${API_BASE} on the admin listener and on the console's host.

Authentication: a bearer token (a JWT from the identity provider for the admin audience,
as \`proxyctl login\` gets one; see /login-info) carrying the administrator role (every
operation) or the reader role (reads only; x-proxyctl-role says which an operation
needs). The web console calls the same API with its session cookie instead; its
changes must also send the session's anti-CSRF token (GET /me) in the x-proxyctl-csrf
header, from the console's own Origin.

Refusals are JSON (Error) with a stable \`code\`. Request bodies are JSON objects; unknown
fields are refused. Apps, policies and named locations are spelled as in the
configuration file (${CONFIG_DOC}); the file's own are read-only. A change of an
API object may carry its version (If-Match, or expectedVersion in the body) so that a
stale one is refused. Logs are read newest first with an opaque \`next\` cursor.`;

let cached: Json | undefined;

export function openApiDocument(): Json {
  if (cached) return cached;
  const paths: Record<string, Json> = {};
  for (const r of ROUTES) (paths[`${API_BASE}${r.path}`] ??= {})[r.method.toLowerCase()] = operation(r);
  Object.assign(paths, extraPaths());
  const responses: Record<string, Json> = {};
  for (const [status, description] of Object.entries({ ...REFUSALS, 500: 'The relay failed to answer' }))
    responses[`Error${status}`] = { description, content: json(ref('Error')) };
  cached = {
    openapi: '3.1.0',
    info: { title: 'proxyctl administration API', version: VERSION, description: DESCRIPTION },
    tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
    security: BEARER,
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'An administrator or reader token from the identity provider (proxyctl login)',
        },
      },
      responses,
      schemas: SCHEMAS,
    },
  };
  return cached;
}
