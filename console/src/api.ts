// The console's one way to the administration API: every AdminApi operation is
// called through its ROUTES entry, so the console cannot drift from the route
// table. Writes carry the CSRF token read from /me; refusals become ApiError with
// the server's code and issues. Free of DOM types so Node tests can drive it.
import {
  API_BASE,
  ROUTES,
  type AdminApi,
  type ApiErrorBody,
  type Caller,
  type RouteSpec,
} from '../../src/admin/api-types.js';

export type Issue = NonNullable<ApiErrorBody['error']['issues']>[number];

/** A refusal from the API (status ≥ 400), or a request the client would not send (status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly issues: Issue[];

  constructor(status: number, code: string, message: string, issues: Issue[] = []) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.issues = issues;
  }
}

export interface Me {
  caller: Caller;
  csrfToken: string | null;
}

export type Client = AdminApi & {
  me(): Promise<Me>;
  /** The token sent as x-proxyctl-csrf; me() sets it. */
  csrfToken: string | null;
  /** Called on every 401 (or redirect to a sign-in page), before the promise rejects: the session is gone. */
  onUnauthenticated: (() => void) | undefined;
};

export interface ClientOptions {
  /** Origin to prefix (tests); '' in the browser, where /api/v1 is same-origin. */
  origin?: string;
  fetch?: typeof fetch;
}

/** A value as text: strings as they are, numbers and booleans as written, anything else as JSON. */
export function text(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${v}`;
  return JSON.stringify(v) ?? '';
}

/**
 * One path segment, percent-encoded. '.' and '..' pass encodeURIComponent unchanged
 * and URL parsers resolve them, climbing out of /api/v1/<collection>: they are
 * refused, never sent.
 */
export function pathSegment(value: unknown): string {
  const segment = text(value);
  if (segment === '' || segment === '.' || segment === '..')
    throw new ApiError(0, 'ERR_BAD_REQUEST', `${JSON.stringify(segment)} cannot name an object`);
  return encodeURIComponent(segment);
}

/** The query string of a GET: absent, null and empty values are left out; true is "true". */
export function queryString(input: unknown): string {
  if (input === undefined || input === null) return '';
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(input as Record<string, unknown>)) {
    if (v === undefined || v === null || v === '' || v === false) continue;
    q.set(k, text(v));
  }
  const qs = q.toString();
  return qs ? `?${qs}` : '';
}

const isIssue = (x: unknown): x is Issue =>
  !!x && typeof x === 'object' && typeof (x as Issue).path === 'string' && typeof (x as Issue).expected === 'string';

async function refusal(res: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  const e = (body as Partial<ApiErrorBody> | undefined)?.error;
  if (e && typeof e.code === 'string') {
    const issues = Array.isArray(e.issues) ? e.issues.filter(isIssue) : [];
    return new ApiError(res.status, e.code, typeof e.message === 'string' ? e.message : e.code, issues);
  }
  return new ApiError(res.status, `ERR_HTTP_${res.status}`, `The server answered ${res.status} ${res.statusText}`);
}

export function createClient(options: ClientOptions = {}): Client {
  const origin = options.origin ?? '';
  const doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  let csrfToken: string | null = null;
  const client = { onUnauthenticated: undefined } as Record<string, unknown> & Pick<Client, 'onUnauthenticated'>;

  async function send(method: string, path: string, body?: unknown, ifMatch?: number): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    // Every unsafe method carries the token, what-if (a POST that changes nothing) included:
    // the server's CSRF check goes by method, the role check by route.
    if (method !== 'GET') {
      headers['content-type'] = 'application/json';
      if (csrfToken) headers['x-proxyctl-csrf'] = csrfToken;
    }
    if (typeof ifMatch === 'number') headers['if-match'] = `"${ifMatch}"`;
    let res: Response;
    try {
      res = await doFetch(`${origin}${API_BASE}${path}`, {
        method,
        headers,
        credentials: 'same-origin',
        // The API answers JSON; a redirect can only be a sign-in page, i.e. no session.
        redirect: 'manual',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 'ERR_NETWORK', 'The relay could not be reached');
    }
    if (res.type === 'opaqueredirect' || (res.status >= 300 && res.status < 400)) {
      client.onUnauthenticated?.();
      throw new ApiError(401, 'ERR_UNAUTHENTICATED', 'Signed out: sign in again');
    }
    if (!res.ok) {
      const err = await refusal(res);
      if (res.status === 401) client.onUnauthenticated?.();
      throw err;
    }
    if (res.status === 204) return undefined;
    try {
      return await res.json();
    } catch {
      throw new ApiError(res.status, 'ERR_BAD_RESPONSE', 'The server answered something that is not JSON');
    }
  }

  async function call(route: RouteSpec, args: unknown[]): Promise<unknown> {
    let path = route.path;
    let body: unknown;
    let query = '';
    let ifMatch: number | undefined;
    route.args.forEach((kind, i) => {
      const arg = args[i];
      if (kind === 'path') path = path.replace(/\{[^}]+\}/, pathSegment(arg));
      else if (kind === 'body') body = arg;
      else if (kind === 'query') query = queryString(arg);
      else if (typeof arg === 'number') ifMatch = arg;
    });
    // A POST with nothing to say still sends JSON: one content type for every write.
    if (body === undefined && route.method === 'POST') body = {};
    return send(route.method, path + query, body, ifMatch);
  }

  for (const route of ROUTES) client[route.op] = (...args: unknown[]) => call(route, args);
  client['me'] = async () => {
    const me = (await send('GET', '/me')) as Me;
    csrfToken = me.csrfToken;
    return me;
  };
  Object.defineProperty(client, 'csrfToken', {
    get: () => csrfToken,
    set: (v: string | null) => {
      csrfToken = v;
    },
  });
  return client as unknown as Client;
}
