// The administration API over HTTP: RemoteAdminApi runs each AdminApi operation as
// the route table says (path parameters, query string, JSON body, If-Match) against a
// relay's /api/v1 with a bearer token. The token only travels over TLS, or over plain
// HTTP to a loopback address; answers are bounded in size, and every refusal becomes
// a ProxyctlError carrying the relay's own code.
import { lookup as dnsLookup } from 'node:dns';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { ProxyctlError, type ErrorCode } from '../errors.js';
import { classifyNetworkError } from '../connector/relay-client.js';
import { CLIENT_TLS } from '../crypto/tls-policy.js';
import { isLoopbackHost } from '../net/address.js';
import { VERSION } from '../version.js';
import {
  API_BASE,
  ROUTES,
  type AdminApi,
  type ApiErrorBody,
  type AuditFilter,
  type AuditView,
  type ConnectorDetail,
  type ConnectorView,
  type DetectionFilter,
  type DetectionView,
  type EventsPage,
  type GroupView,
  type KeyView,
  type NewUserInput,
  type ObjectView,
  type Operation,
  type Overview,
  type Page,
  type RiskUserView,
  type RouteSpec,
  type SignInFilter,
  type SignInView,
  type UserUpdateInput,
  type UserView,
  type WhatIfInput,
  type WhatIfResult,
} from './api-types.js';

export interface RemoteAdminOptions {
  /** The relay's admin API: https://host[:port][/prefix], or http:// to a loopback address. */
  url: string;
  token: string;
  /** A PEM CA certificate trusted beside the system's roots (the relay's ca.pem). */
  caPem?: string;
  /** Largest answer read, in bytes (default 16 MiB). */
  maxResponseBytes?: number;
  /** Per-request time for the answer's headers and between body chunks (default 30 s). */
  timeoutMs?: number;
  /** Tests pass their own dispatcher; closed by close() only when made here. */
  dispatcher?: Dispatcher;
}

export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

const ROUTE_OF = new Map<Operation, RouteSpec>(ROUTES.map((r) => [r.op, r]));

/**
 * The admin API's base URL, checked: https anywhere, http only to a loopback address
 * (a bearer token must never cross a network in the clear). No credentials, query or
 * fragment; a path prefix (a reverse proxy's) is kept.
 */
export function adminBaseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage(`--relay must be an https URL of the relay's admin API (found ${JSON.stringify(text)})`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw usage(`--relay must be an https URL of the relay's admin API (found ${JSON.stringify(text)})`);
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname))
    throw usage(
      `--relay ${url.origin} is plain http to a host that is not loopback: a bearer token is only sent over https (or http to 127.0.0.1, ::1 or localhost)`,
    );
  if (url.username || url.password) throw usage('--relay must not carry a user name or password');
  if (url.search || url.hash) throw usage('--relay must not carry a query string or fragment');
  return url;
}

/** System roots plus the relay's CA; localhost and *.localhost always resolve to loopback (RFC 6761). */
export function relayAgent(caPem: string | undefined, timeoutMs = 30_000): Agent {
  return new Agent({
    connect: {
      ...(caPem ? { ca: [...rootCertificates, caPem] } : {}),
      ...CLIENT_TLS,
      timeout: Math.min(timeoutMs, 10_000),
      lookup: (host, opts, cb) =>
        host === 'localhost' || host.endsWith('.localhost')
          ? cb(null, [{ address: '127.0.0.1', family: 4 }])
          : dnsLookup(host, { ...opts, all: true }, cb as never),
    },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 10_000,
  });
}

/**
 * One path segment, percent-encoded. "." and ".." are encoded too: URL parsers would
 * otherwise take them as dot segments and send the request elsewhere.
 */
export function encodeSegment(value: string): string {
  if (value === '') throw usage('a name or id must not be empty');
  const enc = encodeURIComponent(value);
  return enc === '.' ? '%2E' : enc === '..' ? '%2E%2E' : enc;
}

/** The query string of a filter object; undefined and null fields are left out. */
export function queryString(input: Record<string, unknown> | undefined): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(input ?? {})) {
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      throw new ProxyctlError('ERR_INTERNAL', `query parameter ${k} is not a plain value`);
    params.append(k, String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

interface Request {
  method: RouteSpec['method'];
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** Success status without a body. */
  empty: boolean;
}

/** The HTTP request of an operation and its arguments, as the route table maps them. */
export function buildRequest(basePath: string, op: Operation, args: readonly unknown[]): Request {
  const route = ROUTE_OF.get(op);
  if (!route) throw new ProxyctlError('ERR_INTERNAL', `no route for ${op}`);
  const params = [...route.path.matchAll(/\{[^}]+\}/g)].length;
  let i = 0;
  let path = route.path;
  let query = '';
  let body: unknown;
  const headers: Record<string, string> = {};
  for (const kind of route.args) {
    const arg = args[i++];
    if (kind === 'path') {
      if (typeof arg !== 'string' && typeof arg !== 'number')
        throw new ProxyctlError('ERR_INTERNAL', `${op}: path parameter ${i} is not a string`);
      path = path.replace(/\{[^}]+\}/, encodeSegment(String(arg)));
    } else if (kind === 'query') {
      query = queryString(arg as Record<string, unknown> | undefined);
    } else if (kind === 'body') {
      body = arg ?? {};
    } else if (arg !== undefined) {
      if (typeof arg !== 'number' || !Number.isSafeInteger(arg) || arg < 0)
        throw usage(`an expected version is a whole number (found ${JSON.stringify(arg)})`);
      // A strong entity tag, as the relay's answers carry it.
      headers['if-match'] = `"${arg}"`;
    }
  }
  if (/\{[^}]+\}/.test(path) || route.args.filter((a) => a === 'path').length !== params)
    throw new ProxyctlError('ERR_INTERNAL', `${op}: the route's path parameters and args differ`);
  headers['accept'] = 'application/json';
  if (body !== undefined) headers['content-type'] = 'application/json';
  return {
    method: route.method,
    path: `${basePath}${API_BASE}${path}${query}`,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    empty: route.status === 204,
  };
}

export class RemoteAdminApi implements AdminApi {
  readonly base: URL;
  private readonly token: string;
  private readonly dispatcher: Dispatcher;
  private readonly ownDispatcher: boolean;
  private readonly maxBytes: number;
  private readonly basePath: string;

  constructor(opts: RemoteAdminOptions) {
    this.base = adminBaseUrl(opts.url);
    // Visible ASCII only: nothing can break out of the Authorization header.
    if (!/^[!-~]+$/.test(opts.token))
      throw new ProxyctlError('ERR_TOKEN_INVALID', 'the administrator token is empty or holds spaces or controls');
    this.token = opts.token;
    this.maxBytes = opts.maxResponseBytes ?? MAX_RESPONSE_BYTES;
    this.basePath = this.base.pathname.replace(/\/+$/, '');
    this.ownDispatcher = !opts.dispatcher;
    this.dispatcher = opts.dispatcher ?? relayAgent(opts.caPem, opts.timeoutMs);
  }

  async close(): Promise<void> {
    if (this.ownDispatcher) await this.dispatcher.close();
  }

  /** GET /api/v1/me: who the relay takes this token for. */
  me(): Promise<{ caller: { subject: string; name: string | null; role: string; via: string }; csrfToken: string }> {
    return this.send({ method: 'GET', path: `${this.basePath}${API_BASE}/me`, headers: {}, empty: false });
  }

  /** Async all the way: a bad argument is a rejection, as a refusal is. */
  private async call<T>(op: Operation, ...args: unknown[]): Promise<T> {
    return this.send<T>(buildRequest(this.basePath, op, args));
  }

  private async send<T>(req: Request): Promise<T> {
    const what = `${req.method} ${req.path.replace(/\?.*$/, '')}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.dispatcher.request({
        origin: this.base.origin,
        path: req.path,
        method: req.method,
        headers: {
          ...req.headers,
          authorization: `Bearer ${this.token}`,
          'user-agent': `proxyctl/${VERSION}`,
        },
        ...(req.body !== undefined ? { body: req.body } : {}),
      });
    } catch (err) {
      throw classifyNetworkError(err, this.base.href);
    }
    const text = await this.readBody(res, what);
    if (res.statusCode >= 200 && res.statusCode < 300) {
      if (res.statusCode === 204 || (req.empty && text === '')) return undefined as T;
      return this.parse<T>(res, text, what);
    }
    throw this.refusal(res, text, what);
  }

  private async readBody(res: Dispatcher.ResponseData, what: string): Promise<string> {
    const tooLarge = () =>
      new ProxyctlError(
        'ERR_BODY_TOO_LARGE',
        `the relay's answer to ${what} is larger than ${this.maxBytes} bytes; nothing was read`,
        { status: 502 },
      );
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > this.maxBytes) {
      res.body.destroy();
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        size += buf.length;
        if (size > this.maxBytes) {
          res.body.destroy();
          throw tooLarge();
        }
        chunks.push(buf);
      }
    } catch (err) {
      if (err instanceof ProxyctlError) throw err;
      throw classifyNetworkError(err, this.base.href);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  private parse<T>(res: Dispatcher.ResponseData, text: string, what: string): T {
    const type = String(res.headers['content-type'] ?? '');
    try {
      if (!/^application\/([\w.+-]+\+)?json\b/i.test(type)) throw new Error(type || 'no content type');
      return JSON.parse(text) as T;
    } catch (err) {
      throw new ProxyctlError(
        'ERR_RELAY_REFUSED',
        `the relay answered ${what} with HTTP ${res.statusCode} and a body that is not JSON (${type || 'no content type'}); is ${this.base.origin} the relay's admin API?`,
        { status: 502, cause: err },
      );
    }
  }

  private refusal(res: Dispatcher.ResponseData, text: string, what: string): ProxyctlError {
    let remote: ApiErrorBody['error'] | undefined;
    try {
      const parsed = (JSON.parse(text) as Partial<ApiErrorBody>).error;
      if (parsed && typeof parsed.code === 'string' && typeof parsed.message === 'string') remote = parsed;
    } catch {
      remote = undefined;
    }
    if (!remote) {
      const hint =
        res.statusCode >= 300 && res.statusCode < 400
          ? ` (a redirect to ${String(res.headers['location'] ?? '?')}; give the admin API's own URL)`
          : res.statusCode === 404
            ? `; is ${this.base.origin} the relay's admin API?`
            : '';
      return new ProxyctlError('ERR_RELAY_REFUSED', `the relay answered ${what} with HTTP ${res.statusCode}${hint}`, {
        status: res.statusCode,
      });
    }
    const issues = Array.isArray(remote.issues) ? remote.issues : [];
    let message = remote.message;
    // Name the fields when the message does not already.
    const first = issues[0];
    if (first && !message.includes(first.path))
      message += `: ${issues
        .slice(0, 3)
        .map((i) => `${i.path}: expected ${i.expected}, found ${i.found}`)
        .join('; ')}${issues.length > 3 ? `; and ${issues.length - 3} more` : ''}`;
    if (res.statusCode === 401) message += `; run proxyctl login --relay ${this.base.origin}`;
    return new ProxyctlError(remote.code as ErrorCode, message, {
      status: res.statusCode,
      details: { remote: true, ...(issues.length ? { issues } : {}) },
    });
  }

  overview(): Promise<Overview> {
    return this.call('overview');
  }

  listApps(): Promise<ObjectView[]> {
    return this.call('listApps');
  }
  getApp(name: string): Promise<ObjectView> {
    return this.call('getApp', name);
  }
  publishApp(spec: Record<string, unknown>): Promise<ObjectView> {
    return this.call('publishApp', spec);
  }
  updateApp(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView> {
    return this.call('updateApp', name, spec, expectedVersion);
  }
  removeApp(name: string, expectedVersion?: number): Promise<void> {
    return this.call('removeApp', name, expectedVersion);
  }

  listPolicies(): Promise<ObjectView[]> {
    return this.call('listPolicies');
  }
  getPolicy(name: string): Promise<ObjectView> {
    return this.call('getPolicy', name);
  }
  putPolicy(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView> {
    return this.call('putPolicy', name, spec, expectedVersion);
  }
  removePolicy(name: string, expectedVersion?: number): Promise<void> {
    return this.call('removePolicy', name, expectedVersion);
  }
  whatIf(input: WhatIfInput): Promise<WhatIfResult> {
    return this.call('whatIf', input);
  }

  listLocations(): Promise<ObjectView[]> {
    return this.call('listLocations');
  }
  getLocation(name: string): Promise<ObjectView> {
    return this.call('getLocation', name);
  }
  putLocation(name: string, spec: Record<string, unknown>, expectedVersion?: number): Promise<ObjectView> {
    return this.call('putLocation', name, spec, expectedVersion);
  }
  removeLocation(name: string, expectedVersion?: number): Promise<void> {
    return this.call('removeLocation', name, expectedVersion);
  }

  listConnectors(): Promise<ConnectorView[]> {
    return this.call('listConnectors');
  }
  getConnector(idOrName: string): Promise<ConnectorDetail> {
    return this.call('getConnector', idOrName);
  }
  revokeConnector(idOrName: string): Promise<ConnectorView> {
    return this.call('revokeConnector', idOrName);
  }
  deleteConnector(idOrName: string): Promise<void> {
    return this.call('deleteConnector', idOrName);
  }

  listGroups(): Promise<GroupView[]> {
    return this.call('listGroups');
  }
  getGroup(name: string): Promise<GroupView> {
    return this.call('getGroup', name);
  }
  createGroup(input: { name: string; description?: string }): Promise<GroupView> {
    return this.call('createGroup', input);
  }
  removeGroup(name: string): Promise<void> {
    return this.call('removeGroup', name);
  }

  listUsers(): Promise<UserView[]> {
    return this.call('listUsers');
  }
  getUser(username: string): Promise<UserView> {
    return this.call('getUser', username);
  }
  addUser(input: NewUserInput): Promise<{ user: UserView; password: string | null }> {
    return this.call('addUser', input);
  }
  updateUser(username: string, input: UserUpdateInput): Promise<UserView> {
    return this.call('updateUser', username, input);
  }
  setPassword(username: string, input: { password?: string }): Promise<{ password: string | null }> {
    return this.call('setPassword', username, input);
  }
  enrollTotp(username: string): Promise<{ uri: string }> {
    return this.call('enrollTotp', username);
  }
  removeUser(username: string): Promise<void> {
    return this.call('removeUser', username);
  }

  signIns(filter: SignInFilter): Promise<Page<SignInView>> {
    return this.call('signIns', filter);
  }
  signIn(id: number): Promise<SignInView> {
    return this.call('signIn', id);
  }
  audit(filter: AuditFilter): Promise<Page<AuditView>> {
    return this.call('audit', filter);
  }
  events(input: { after?: string; limit?: number }): Promise<EventsPage> {
    return this.call('events', input);
  }

  riskUsers(input: { all?: boolean; since?: string }): Promise<RiskUserView[]> {
    return this.call('riskUsers', input);
  }
  riskDetections(filter: DetectionFilter): Promise<Page<DetectionView>> {
    return this.call('riskDetections', filter);
  }
  dismissRisk(user: string): Promise<RiskUserView> {
    return this.call('dismissRisk', user);
  }
  confirmRisk(user: string): Promise<RiskUserView> {
    return this.call('confirmRisk', user);
  }

  listKeys(): Promise<KeyView[]> {
    return this.call('listKeys');
  }
  rotateKeys(input: { purpose: 'session' | 'assertion' | 'all' }): Promise<KeyView[]> {
    return this.call('rotateKeys', input);
  }
}

function usage(message: string): ProxyctlError {
  return new ProxyctlError('ERR_USAGE', message, { status: 400 });
}
