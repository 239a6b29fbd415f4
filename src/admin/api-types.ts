// The administration contract: one set of operations (AdminApi) that the REST API
// serves, the console calls, and the CLI runs either in-process against the data
// directory (AdminOperations) or over HTTP against a relay (RemoteAdminApi). The
// route table below maps each HTTP route to one operation; the OpenAPI document
// and the console are built from the same names. Times are ISO 8601 strings.
// This file holds types and plain data only: the console bundles it too.

export type Role = 'admin' | 'reader';

/** Who is calling, and how they proved it. */
export interface Caller {
  subject: string;
  name: string | null;
  role: Role;
  /** token: a bearer token (CLI, scripts); session: the console's cookie; local: the data directory. */
  via: 'token' | 'session' | 'local';
}

/** Where an object is defined: the YAML file (read-only in the API) or the store (the API's). */
export type Source = 'file' | 'api';

/** Objects the API can publish: each is the object as the config file would spell it. */
export type ObjectKind = 'app' | 'policy' | 'location';

/** An app, a policy or a named location. */
export interface ObjectView {
  kind: ObjectKind;
  name: string;
  source: Source;
  /** API objects: 1 on create, +1 per change; pass it back (If-Match / expectedVersion) to refuse lost updates. File objects: null. */
  version: number | null;
  updatedAt: string | null;
  updatedBy: string | null;
  /** The object exactly as YAML would spell it (camelCase keys); secrets read "(redacted)". */
  spec: Record<string, unknown>;
  /** False when an API object conflicts with the file (the file wins); `problem` says why. */
  inForce: boolean;
  problem: string | null;
}

export interface ConnectorView {
  id: string;
  name: string;
  group: string;
  status: 'online' | 'offline' | 'revoked';
  version: string | null;
  createdAt: string;
  registeredBy: string;
  lastSeen: string | null;
  revokedAt: string | null;
  certificateExpires: string | null;
  certificates: number;
}

export interface ConnectorDetail extends ConnectorView {
  /** Open control channels on the answering relay; null when read from the data directory. */
  channels: { replica: string; openedAt: string; version: string | null; inFlight: number }[] | null;
  certificateList: {
    serial: string;
    kind: 'register' | 'renew';
    issuedAt: string;
    notAfter: string;
    revokedAt: string | null;
  }[];
}

export interface GroupView {
  name: string;
  /** api: declared through the API; derived: named by an app or a connector only. */
  source: 'api' | 'derived';
  description: string | null;
  version: number | null;
  connectors: { total: number; online: number; revoked: number };
  apps: string[];
}

export interface UserView {
  username: string;
  email: string | null;
  name: string | null;
  groups: string[];
  roles: string[];
  totp: boolean;
  createdAt: string;
}

export interface NewUserInput {
  username: string;
  email?: string;
  name?: string;
  groups?: string[];
  roles?: string[];
  /** Omitted: a password is generated and returned once. */
  password?: string;
}

export interface UserUpdateInput {
  email?: string | null;
  name?: string | null;
  groups?: string[];
  roles?: string[];
}

export interface SignInView {
  id: number;
  at: string;
  requestId: string | null;
  traceId: string | null;
  kind: 'interactive' | 'bearer' | 'provider';
  app: string | null;
  user: string | null;
  ip: string | null;
  country: string | null;
  city: string | null;
  latitude: number | null;
  longitude: number | null;
  asn: number | null;
  network: string | null;
  userAgent: string | null;
  browser: string | null;
  os: string | null;
  clientType: 'browser' | 'script' | 'bearer' | null;
  methods: string[];
  result: 'success' | 'failure' | 'stepUp';
  reason: string | null;
  policies: unknown[];
  risk: 'none' | 'low' | 'medium' | 'high';
  detections: { type: string; level: 'low' | 'medium' | 'high'; detail?: string }[];
}

export interface AuditView {
  id: number;
  at: string;
  actor: string;
  action: string;
  connectorId: string | null;
  details: Record<string, unknown>;
}

export interface DetectionView {
  id: number;
  at: string;
  user: string | null;
  ip: string | null;
  app: string | null;
  type: string;
  level: 'low' | 'medium' | 'high';
  signInId: number | null;
  details: Record<string, unknown>;
}

export interface RiskUserView {
  user: string;
  risk: 'none' | 'low' | 'medium' | 'high';
  state: 'atRisk' | 'confirmedCompromised' | 'dismissed' | 'remediated' | 'none';
  detections: number;
  lastDetection: string | null;
  types: string[];
  decidedBy: string | null;
}

export interface KeyView {
  kid: string;
  purpose: 'session' | 'assertion';
  createdAt: string;
  retiredAt: string | null;
  current: boolean;
}

/** A page of a log, newest first; `next` is an opaque cursor for the following (older) page. */
export interface Page<T> {
  items: T[];
  next: string | null;
}

export interface SignInFilter {
  user?: string;
  app?: string;
  result?: 'success' | 'failure' | 'stepUp';
  risk?: 'none' | 'low' | 'medium' | 'high';
  /** ISO 8601 instant, or a duration ago (24h, 7d). */
  since?: string;
  until?: string;
  /** 1 to 1000 (default 50). */
  limit?: number;
  cursor?: string;
}

export interface AuditFilter {
  actor?: string;
  /** Exact action, or a prefix ending in "." (connector.). */
  action?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

export interface DetectionFilter {
  user?: string;
  type?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

export interface SecurityEventView {
  /** Stable: "signin-42", "audit-7", "risk-3". */
  id: string;
  kind: 'signIn' | 'audit' | 'riskDetection';
  at: string;
  data: SignInView | AuditView | DetectionView;
}

export interface EventsPage {
  events: SecurityEventView[];
  /** Pass back as `after` to read what came next. */
  cursor: string;
}

export interface WhatIfInput {
  app: string;
  /** Embedded provider: a user name or e-mail of its users; external: the subject. */
  user: string;
  email?: string;
  groups?: string[];
  ip?: string;
  platform?: 'windows' | 'macos' | 'linux' | 'ios' | 'android' | 'other';
  mfa?: boolean;
  acr?: string;
  risk?: 'none' | 'low' | 'medium' | 'high';
  userRisk?: 'none' | 'low' | 'medium' | 'high';
  /** ISO 8601 instant with a zone; default now. */
  time?: string;
  deviceCert?: boolean;
  /** Evaluate with these policy specs in place of the ones of the same name (a draft), without saving. */
  draftPolicies?: Record<string, unknown>[];
}

export interface WhatIfResult {
  /** embedded: `user` named a user of the embedded provider, whose groups and e-mail were used. */
  userSource: 'embedded' | 'options';
  context: Record<string, unknown>;
  assigned: boolean;
  decision: {
    result: 'allow' | 'deny' | 'stepUp';
    /** The policy that decided (deny or step-up), or null. */
    decidedBy: string | null;
    /** What the user is told. */
    hint: string | null;
    stepUp: { mfa: boolean; acr: string | null } | null;
    policies: {
      name: string;
      state: 'on' | 'off' | 'reportOnly';
      applies: boolean;
      why: string;
      outcome: string;
      missing: string[];
    }[];
    session: { signInFrequencyMs: number | null; persistentBrowser: boolean | null };
  };
}

export interface ReplicaView {
  id: string;
  url: string;
  startedAt: string;
  heartbeatAt: string;
  /** The replica answering this request. */
  self: boolean;
}

export interface Overview {
  replicas: ReplicaView[];
  connectors: { total: number; online: number; offline: number; revoked: number; expiringSoon: number };
  apps: { total: number; file: number; api: number; notInForce: number };
  /** Hourly buckets over the last 24 h (sign-ins from the store: every replica's). */
  signIns: { start: string; success: number; failure: number; stepUp: number }[];
  /** Per-minute buckets over the last hour, counted by the answering replica; null from the data directory. */
  requests: { start: string; count: number; errors: number }[] | null;
  risk: { usersAtRisk: number; detections24h: number };
}

export interface AdminApi {
  overview(): Promise<Overview>;

  listApps(): Promise<ObjectView[]>;
  getApp(name: string): Promise<ObjectView>;
  /** Create; 409 when the name exists. */
  publishApp(spec: Record<string, unknown>): Promise<ObjectView>;
  /** Replace an API app (the whole spec); 404 when absent, 409 when file-managed or the version differs. */
  updateApp(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView>;
  removeApp(name: string, expectedVersion?: number): Promise<void>;

  listPolicies(): Promise<ObjectView[]>;
  getPolicy(name: string): Promise<ObjectView>;
  /** Create or replace (apply); 409 when file-managed or the version differs. */
  putPolicy(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView>;
  removePolicy(name: string, expectedVersion?: number): Promise<void>;
  whatIf(input: WhatIfInput): Promise<WhatIfResult>;

  listLocations(): Promise<ObjectView[]>;
  getLocation(name: string): Promise<ObjectView>;
  putLocation(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView>;
  removeLocation(name: string, expectedVersion?: number): Promise<void>;

  listConnectors(): Promise<ConnectorView[]>;
  getConnector(idOrName: string): Promise<ConnectorDetail>;
  revokeConnector(idOrName: string): Promise<ConnectorView>;
  /** Only a revoked connector: it leaves the listings (its certificates stay refused). */
  deleteConnector(idOrName: string): Promise<void>;

  listGroups(): Promise<GroupView[]>;
  getGroup(name: string): Promise<GroupView>;
  createGroup(input: { name: string; description?: string }): Promise<GroupView>;
  /** 409 while an app names it or a connector that is not revoked belongs to it. */
  removeGroup(name: string): Promise<void>;

  listUsers(): Promise<UserView[]>;
  getUser(username: string): Promise<UserView>;
  addUser(input: NewUserInput): Promise<{ user: UserView; password: string | null }>;
  updateUser(username: string, input: UserUpdateInput): Promise<UserView>;
  setPassword(username: string, input: { password?: string }): Promise<{ password: string | null }>;
  enrollTotp(username: string): Promise<{ uri: string }>;
  removeUser(username: string): Promise<void>;

  signIns(filter: SignInFilter): Promise<Page<SignInView>>;
  signIn(id: number): Promise<SignInView>;
  audit(filter: AuditFilter): Promise<Page<AuditView>>;
  /** Oldest first from `after` (absent: from the newest minus nothing, i.e. only what comes next). */
  events(input: { after?: string; limit?: number }): Promise<EventsPage>;

  riskUsers(input: { all?: boolean; since?: string }): Promise<RiskUserView[]>;
  riskDetections(filter: DetectionFilter): Promise<Page<DetectionView>>;
  dismissRisk(user: string): Promise<RiskUserView>;
  confirmRisk(user: string): Promise<RiskUserView>;

  listKeys(): Promise<KeyView[]>;
  rotateKeys(input: { purpose: 'session' | 'assertion' | 'all' }): Promise<KeyView[]>;
}

export type Operation = keyof AdminApi;

/**
 * Where each operation is served, relative to /api/v1. `{x}` is a path parameter
 * (URL-encoded). GET routes take their input from the query string, others from a
 * JSON body. `write` operations need the administrator role; the rest the reader's.
 * `args` says how the operation's arguments are made: path parameters in order, then
 * `body` (the JSON body), `query` (the query string as an object) or `ifMatch`
 * (the If-Match header's version, or the body's `expectedVersion`).
 */
export interface RouteSpec {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  op: Operation;
  write: boolean;
  args: ('path' | 'body' | 'query' | 'ifMatch')[];
  /** HTTP status of a success (200 by default; 201 created, 204 no content). */
  status?: 200 | 201 | 204;
  summary: string;
}

export const API_BASE = '/api/v1';

export const ROUTES: readonly RouteSpec[] = [
  {
    method: 'GET',
    path: '/overview',
    op: 'overview',
    write: false,
    args: [],
    summary: 'Health of replicas and connectors, sign-in and request charts',
  },

  { method: 'GET', path: '/apps', op: 'listApps', write: false, args: [], summary: 'List apps (file and API)' },
  {
    method: 'POST',
    path: '/apps',
    op: 'publishApp',
    write: true,
    args: ['body'],
    status: 201,
    summary: 'Publish an app',
  },
  { method: 'GET', path: '/apps/{name}', op: 'getApp', write: false, args: ['path'], summary: 'Show an app' },
  {
    method: 'PUT',
    path: '/apps/{name}',
    op: 'updateApp',
    write: true,
    args: ['path', 'body', 'ifMatch'],
    summary: 'Replace an API app',
  },
  {
    method: 'DELETE',
    path: '/apps/{name}',
    op: 'removeApp',
    write: true,
    args: ['path', 'ifMatch'],
    status: 204,
    summary: 'Remove an API app',
  },

  {
    method: 'GET',
    path: '/policies',
    op: 'listPolicies',
    write: false,
    args: [],
    summary: 'List Conditional Access policies',
  },
  {
    method: 'POST',
    path: '/policies/what-if',
    op: 'whatIf',
    write: false,
    args: ['body'],
    summary: 'What would the relay decide for this sign-in',
  },
  { method: 'GET', path: '/policies/{name}', op: 'getPolicy', write: false, args: ['path'], summary: 'Show a policy' },
  {
    method: 'PUT',
    path: '/policies/{name}',
    op: 'putPolicy',
    write: true,
    args: ['path', 'body', 'ifMatch'],
    summary: 'Create or replace an API policy',
  },
  {
    method: 'DELETE',
    path: '/policies/{name}',
    op: 'removePolicy',
    write: true,
    args: ['path', 'ifMatch'],
    status: 204,
    summary: 'Remove an API policy',
  },

  { method: 'GET', path: '/locations', op: 'listLocations', write: false, args: [], summary: 'List named locations' },
  {
    method: 'GET',
    path: '/locations/{name}',
    op: 'getLocation',
    write: false,
    args: ['path'],
    summary: 'Show a named location',
  },
  {
    method: 'PUT',
    path: '/locations/{name}',
    op: 'putLocation',
    write: true,
    args: ['path', 'body', 'ifMatch'],
    summary: 'Create or replace an API named location',
  },
  {
    method: 'DELETE',
    path: '/locations/{name}',
    op: 'removeLocation',
    write: true,
    args: ['path', 'ifMatch'],
    status: 204,
    summary: 'Remove an API named location',
  },

  { method: 'GET', path: '/connectors', op: 'listConnectors', write: false, args: [], summary: 'List connectors' },
  {
    method: 'GET',
    path: '/connectors/{id}',
    op: 'getConnector',
    write: false,
    args: ['path'],
    summary: 'Show a connector with its channels and certificates',
  },
  {
    method: 'POST',
    path: '/connectors/{id}/revoke',
    op: 'revokeConnector',
    write: true,
    args: ['path'],
    summary: 'Revoke a connector: its channels close at once',
  },
  {
    method: 'DELETE',
    path: '/connectors/{id}',
    op: 'deleteConnector',
    write: true,
    args: ['path'],
    status: 204,
    summary: 'Delete a revoked connector from the listings',
  },

  { method: 'GET', path: '/groups', op: 'listGroups', write: false, args: [], summary: 'List connector groups' },
  {
    method: 'POST',
    path: '/groups',
    op: 'createGroup',
    write: true,
    args: ['body'],
    status: 201,
    summary: 'Declare a connector group',
  },
  {
    method: 'GET',
    path: '/groups/{name}',
    op: 'getGroup',
    write: false,
    args: ['path'],
    summary: 'Show a connector group',
  },
  {
    method: 'DELETE',
    path: '/groups/{name}',
    op: 'removeGroup',
    write: true,
    args: ['path'],
    status: 204,
    summary: 'Remove an unused declared group',
  },

  {
    method: 'GET',
    path: '/users',
    op: 'listUsers',
    write: false,
    args: [],
    summary: "List the embedded provider's users",
  },
  {
    method: 'POST',
    path: '/users',
    op: 'addUser',
    write: true,
    args: ['body'],
    status: 201,
    summary: 'Add a user (a password is generated unless given)',
  },
  { method: 'GET', path: '/users/{username}', op: 'getUser', write: false, args: ['path'], summary: 'Show a user' },
  {
    method: 'PUT',
    path: '/users/{username}',
    op: 'updateUser',
    write: true,
    args: ['path', 'body'],
    summary: "Change a user's e-mail, name, groups or roles",
  },
  {
    method: 'POST',
    path: '/users/{username}/password',
    op: 'setPassword',
    write: true,
    args: ['path', 'body'],
    summary: "Set a user's password (generated unless given)",
  },
  {
    method: 'POST',
    path: '/users/{username}/totp',
    op: 'enrollTotp',
    write: true,
    args: ['path'],
    summary: 'Enroll a TOTP second factor',
  },
  {
    method: 'DELETE',
    path: '/users/{username}',
    op: 'removeUser',
    write: true,
    args: ['path'],
    status: 204,
    summary: 'Remove a user',
  },

  {
    method: 'GET',
    path: '/signins',
    op: 'signIns',
    write: false,
    args: ['query'],
    summary: 'Sign-in log, newest first, cursor-paged',
  },
  { method: 'GET', path: '/signins/{id}', op: 'signIn', write: false, args: ['path'], summary: 'One sign-in' },
  {
    method: 'GET',
    path: '/audit',
    op: 'audit',
    write: false,
    args: ['query'],
    summary: 'Audit log, newest first, cursor-paged',
  },
  {
    method: 'GET',
    path: '/events',
    op: 'events',
    write: false,
    args: ['query'],
    summary: 'Security events after a cursor, oldest first (see /events/stream)',
  },

  {
    method: 'GET',
    path: '/risk/users',
    op: 'riskUsers',
    write: false,
    args: ['query'],
    summary: 'Users at risk, highest first',
  },
  {
    method: 'GET',
    path: '/risk/detections',
    op: 'riskDetections',
    write: false,
    args: ['query'],
    summary: 'Risk detections, newest first, cursor-paged',
  },
  {
    method: 'POST',
    path: '/risk/users/{user}/dismiss',
    op: 'dismissRisk',
    write: true,
    args: ['path'],
    summary: "Dismiss a user's risk",
  },
  {
    method: 'POST',
    path: '/risk/users/{user}/confirm',
    op: 'confirmRisk',
    write: true,
    args: ['path'],
    summary: 'Confirm a user compromised',
  },

  {
    method: 'GET',
    path: '/keys',
    op: 'listKeys',
    write: false,
    args: [],
    summary: 'Session and assertion keys (no key material)',
  },
  {
    method: 'POST',
    path: '/keys/rotate',
    op: 'rotateKeys',
    write: true,
    args: ['body'],
    summary: 'Add a new current key',
  },
];

/** The JSON body of every refusal. `issues` lists each invalid field as the config loader does. */
export interface ApiErrorBody {
  error: {
    code: string;
    message: string;
    issues?: { path: string; found: string; expected: string }[];
  };
}
