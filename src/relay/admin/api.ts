// The REST API (/api/v1) over the administration operations: routing from the one
// route table, authentication (a bearer token checked as registration tokens are, or
// the console's session with its anti-CSRF token and Origin), roles, bounded JSON
// bodies with unknown fields refused, refusals as JSON, and the event stream
// (Server-Sent Events or NDJSON). Served on the admin listener (tokens only) and on
// the console's host of the public listener.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ProxyctlError, isProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { API_BASE, ROUTES, type AdminApi, type Caller, type RouteSpec } from '../../admin/api-types.js';
import type { AdminOperations } from '../../admin/operations.js';
import type { IdentityInfo } from '../../protocol/connector-api.js';
import { systemClock, type Clock } from '../../clock.js';
import { openApiDocument } from './openapi.js';

/** Request bodies larger than this are refused (413): every object fits many times over. */
export const MAX_API_BODY = 64 * 1024;
const MAX_STREAMS = 64;
const STREAM_POLL_MS = 1000;
const STREAM_KEEPALIVE_MS = 15_000;

/** How a request proved who it is. */
export type ApiAuth =
  | { kind: 'token' }
  /** The console: a signed-in session, its id (for the anti-CSRF token) and the origin it is served on. */
  | { kind: 'session'; caller: Caller; sid: string; origin: string };

export interface ApiDeps {
  /** The operations as `caller` may run them. */
  operations: (caller: Caller) => AdminOperations;
  /** Checks an administrator's bearer token; undefined while the relay cannot check tokens yet. */
  verifyToken: (token: string) => Promise<{ subject: string; name: string | undefined; role: 'admin' | 'reader' }>;
  /** What `proxyctl login` needs to get a token (unauthenticated). */
  loginInfo: () => IdentityInfo;
  log: Logger;
  clock?: Clock;
  /** Wakes open event streams (new rows were committed); returns the unsubscribe. */
  onStoreChange?: (listener: () => void) => () => void;
}

interface CompiledRoute {
  spec: RouteSpec;
  pattern: RegExp;
}

const compiled: CompiledRoute[] = ROUTES.map((spec) => ({
  spec,
  pattern: new RegExp(`^${spec.path.replace(/\{[a-z]+\}/gi, '([^/]+)')}$`),
}));

/** The client's kinds of error that carry no HTTP status of their own (ProxyctlError's default is 500). */
const CLIENT_STATUS: Partial<Record<ProxyctlError['code'], number>> = { ERR_USAGE: 400, ERR_CONFIG_INVALID: 422 };

/** The status of a refusal: the error's own, or its kind's when it has none. */
function statusOf(err: ProxyctlError): number {
  if (err.status === 500) return CLIENT_STATUS[err.code] ?? 500;
  return err.status >= 400 && err.status < 600 ? err.status : (CLIENT_STATUS[err.code] ?? 400);
}

/** The anti-CSRF token of a console session: only the holder of the (HttpOnly, encrypted) session knows its id. */
export function csrfToken(sid: string): string {
  return createHmac('sha256', sid).update('proxyctl-console-csrf').digest('base64url');
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function fail(code: ConstructorParameters<typeof ProxyctlError>[0], status: number, message: string): ProxyctlError {
  return new ProxyctlError(code, message, { status });
}

export function createApiHandler(deps: ApiDeps) {
  const clock = deps.clock ?? systemClock;
  let streams = 0;
  const document = () => openApiDocument();

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = status === 204 ? '' : JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...(status === 204 ? {} : { 'content-length': String(Buffer.byteLength(text)) }),
      ...headers,
    });
    res.end(text);
  }

  function refuse(res: ServerResponse, err: unknown, requestId: string | undefined): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    let status = 500;
    let body: { code: string; message: string; issues?: unknown };
    if (isProxyctlError(err)) {
      status = statusOf(err);
      body = { code: err.code, message: err.message };
      const issues = err.details?.['issues'];
      if (Array.isArray(issues)) body.issues = issues;
    } else {
      deps.log.error(
        { err: (err as Error)?.stack ?? String(err), request_id: requestId },
        'admin API: unexpected failure',
      );
      body = { code: 'ERR_INTERNAL', message: 'the relay failed to answer; see its log' };
    }
    const headers: Record<string, string> = {};
    if (status === 401) headers['www-authenticate'] = 'Bearer realm="proxyctl", error="invalid_token"';
    send(res, status, { error: body }, headers);
  }

  async function readBody(req: IncomingMessage): Promise<unknown> {
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > MAX_API_BODY) {
      req.resume();
      throw fail(
        'ERR_BODY_TOO_LARGE',
        413,
        `the request body is ${length} bytes; at most ${MAX_API_BODY} are accepted`,
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_API_BODY)
        throw fail('ERR_BODY_TOO_LARGE', 413, `the request body is over the ${MAX_API_BODY} bytes accepted`);
      chunks.push(chunk);
    }
    if (size === 0) return undefined;
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json')
      throw fail(
        'ERR_BAD_REQUEST',
        415,
        `a request body must be application/json; found ${JSON.stringify(type || '(none)')}`,
      );
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw fail('ERR_BAD_REQUEST', 400, 'the request body is not valid JSON');
    }
  }

  function queryOf(url: URL): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of url.searchParams) {
      if (Object.hasOwn(out, k)) throw fail('ERR_USAGE', 400, `query parameter ${JSON.stringify(k)} is given twice`);
      out[k] = v;
    }
    return out;
  }

  /** Who is calling: the session's caller, or the bearer token's (checked on every request). */
  async function callerOf(req: IncomingMessage, auth: ApiAuth): Promise<Caller> {
    if (auth.kind === 'session') return auth.caller;
    const header = req.headers.authorization ?? '';
    const m = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header);
    if (!m)
      throw fail(
        'ERR_UNAUTHENTICATED',
        401,
        header
          ? 'the Authorization header is not "Bearer <token>"'
          : 'send an administrator token: Authorization: Bearer <token> (proxyctl login)',
      );
    const who = await deps.verifyToken(m[1]!);
    return { subject: who.subject, name: who.name ?? null, role: who.role, via: 'token' };
  }

  /** A console write must come from the console: same Origin and the session's anti-CSRF token. */
  function checkCsrf(req: IncomingMessage, auth: ApiAuth & { kind: 'session' }): void {
    const origin = req.headers.origin;
    if (origin !== auth.origin)
      throw fail(
        'ERR_CSRF',
        403,
        `a change through the console must come from ${auth.origin} (Origin ${origin === undefined ? 'absent' : JSON.stringify(origin)})`,
      );
    const token = req.headers['x-proxyctl-csrf'];
    if (typeof token !== 'string' || !sameToken(token, csrfToken(auth.sid)))
      throw fail('ERR_CSRF', 403, 'the anti-CSRF token (x-proxyctl-csrf) is missing or wrong: reload the console');
  }

  function argsFor(
    spec: RouteSpec,
    params: string[],
    body: unknown,
    query: Record<string, string>,
    req: IncomingMessage,
  ): unknown[] {
    const args: unknown[] = [];
    let p = 0;
    for (const a of spec.args) {
      if (a === 'path') {
        let value: string;
        try {
          value = decodeURIComponent(params[p++]!);
        } catch {
          throw fail('ERR_USAGE', 400, 'a path parameter is not valid percent-encoding');
        }
        args.push(value);
      } else if (a === 'query') args.push(query);
      else if (a === 'body') args.push(body ?? {});
      else args.push(versionOf(req, body));
    }
    if (spec.op === 'signIn') args[0] = Number(args[0]);
    return args;
  }

  async function stream(
    req: IncomingMessage,
    res: ServerResponse,
    ops: AdminOperations,
    query: Record<string, string>,
  ) {
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    const lastId = req.headers['last-event-id'];
    let after: string | undefined = typeof lastId === 'string' && lastId !== '' ? lastId : query['after'];
    for (const k of Object.keys(query))
      if (k !== 'after') throw fail('ERR_USAGE', 400, `unknown query parameter ${JSON.stringify(k)} (after)`);
    // The first read checks the cursor before anything is sent.
    let pageOf = await ops.events(after === undefined ? {} : { after });
    if (streams >= MAX_STREAMS) throw fail('ERR_RATE_LIMITED', 503, 'too many open event streams; try again later');
    streams++;
    res.writeHead(200, {
      'content-type': sse ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no',
    });
    let closed = false;
    let wake: (() => void) | undefined;
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const unsubscribe = deps.onStoreChange?.(() => wake?.());
    const done = () => {
      if (closed) return;
      closed = true;
      streams--;
      unsubscribe?.();
      if (timer) clock.clearTimeout(timer);
      wake?.();
    };
    res.on('close', done);
    res.flushHeaders(); // the client learns the stream is open before the first event
    if (sse) res.write(': proxyctl events\n\n');
    let quietSince = clock.now();
    try {
      while (!closed) {
        for (const e of pageOf.events) {
          const line = sse
            ? `id: ${pageOf.cursor}\nevent: ${e.kind}\ndata: ${JSON.stringify(e)}\n\n`
            : `${JSON.stringify({ cursor: pageOf.cursor, event: e })}\n`;
          res.write(line);
        }
        after = pageOf.cursor;
        if (pageOf.events.length > 0) quietSince = clock.now();
        else if (sse && clock.now() - quietSince >= STREAM_KEEPALIVE_MS) {
          res.write(': keep-alive\n\n');
          quietSince = clock.now();
        }
        if (pageOf.events.length < 100) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            timer = clock.setTimeout(resolve, STREAM_POLL_MS);
          });
          if (timer) clock.clearTimeout(timer);
          wake = undefined;
        }
        if (closed) break;
        pageOf = await ops.events({ after });
      }
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'admin API: an event stream ended on an error');
    } finally {
      done();
      res.end();
    }
  }

  /** Answers one request under /api/v1 (the caller strips nothing: `req.url` is the full target). */
  async function handle(req: IncomingMessage, res: ServerResponse, auth: ApiAuth, requestId?: string): Promise<void> {
    try {
      // Dot segments (also encoded) would be folded away by URL parsing: refused, not resolved.
      if (/(^|\/)(\.|%2e){1,2}(\/|\?|$)/i.test(req.url ?? '/'))
        throw fail('ERR_USAGE', 400, 'a path with "." or ".." segments is not an API path');
      const url = new URL(req.url ?? '/', 'http://relay.invalid');
      const path = url.pathname.startsWith(API_BASE) ? url.pathname.slice(API_BASE.length) : undefined;
      if (path === undefined) throw fail('ERR_NOT_FOUND', 404, 'no such API endpoint');
      if (path === '/openapi.json' || path === '/login-info') {
        if (req.method !== 'GET' && req.method !== 'HEAD')
          return send(res, 405, { error: { code: 'ERR_METHOD_NOT_ALLOWED', message: 'GET only' } }, { allow: 'GET' });
        req.resume();
        return send(res, 200, path === '/openapi.json' ? document() : deps.loginInfo());
      }
      const caller = await callerOf(req, auth);
      const ops = deps.operations(caller);
      if (path === '/me' || path === '/events/stream') {
        if (req.method !== 'GET')
          return send(res, 405, { error: { code: 'ERR_METHOD_NOT_ALLOWED', message: 'GET only' } }, { allow: 'GET' });
        req.resume();
        if (path === '/events/stream') return await stream(req, res, ops, queryOf(url));
        return send(res, 200, { caller, csrfToken: auth.kind === 'session' ? csrfToken(auth.sid) : null });
      }
      let params: string[] | undefined;
      let route: RouteSpec | undefined;
      const allowed: string[] = [];
      for (const c of compiled) {
        const m = c.pattern.exec(path);
        if (!m) continue;
        allowed.push(c.spec.method);
        if (c.spec.method === req.method) {
          route = c.spec;
          params = m.slice(1);
          break;
        }
      }
      if (!route) {
        req.resume();
        if (allowed.length === 0) throw fail('ERR_NOT_FOUND', 404, `no such API endpoint: ${path.slice(0, 200)}`);
        return send(
          res,
          405,
          {
            error: {
              code: 'ERR_METHOD_NOT_ALLOWED',
              message: `${req.method ?? ''} is not allowed here (${allowed.join(', ')})`,
            },
          },
          { allow: allowed.join(', ') },
        );
      }
      if (auth.kind === 'session' && req.method !== 'GET') checkCsrf(req, auth);
      if (route.write && caller.role !== 'admin') {
        req.resume();
        throw fail('ERR_FORBIDDEN', 403, `${caller.subject} has the reader role: it may read but not change anything`);
      }
      const body = req.method === 'GET' || req.method === 'DELETE' ? (req.resume(), undefined) : await readBody(req);
      if (
        route.args.includes('body') &&
        body !== undefined &&
        (body === null || typeof body !== 'object' || Array.isArray(body))
      )
        throw fail('ERR_USAGE', 400, 'the request body must be a JSON object');
      const args = argsFor(route, params!, body, route.args.includes('query') ? queryOf(url) : {}, req);
      if (!route.args.includes('query') && url.search !== '') queryOf(url); // still refuse duplicates
      const call = (ops as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[route.op]!;
      const result = await call.call(ops, ...args);
      const status = route.status ?? 200;
      const etag: Record<string, string> =
        result && typeof result === 'object' && typeof (result as { version?: unknown }).version === 'number'
          ? { etag: `"${(result as { version: number }).version}"` }
          : {};
      send(res, status, status === 204 ? undefined : result, etag);
    } catch (err) {
      refuse(res, err, requestId);
    }
  }

  return { handle };
}

/** The version a change is made against: If-Match ("3" or 3), else the body's expectedVersion. */
function versionOf(req: IncomingMessage, body: unknown): number | undefined {
  let fromBody: number | undefined;
  if (body && typeof body === 'object' && !Array.isArray(body) && 'expectedVersion' in body) {
    const v = (body as Record<string, unknown>)['expectedVersion'];
    delete (body as Record<string, unknown>)['expectedVersion'];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw new ProxyctlError('ERR_USAGE', 'expectedVersion must be a whole number', { status: 400 });
    fromBody = v;
  }
  const header = req.headers['if-match'];
  if (header === undefined) return fromBody;
  const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(header);
  if (!m)
    throw new ProxyctlError('ERR_USAGE', `If-Match ${JSON.stringify(header.slice(0, 40))} is not a version ("3")`, {
      status: 400,
    });
  const fromHeader = Number(m[1]);
  if (fromBody !== undefined && fromBody !== fromHeader)
    throw new ProxyctlError(
      'ERR_USAGE',
      `If-Match names version ${fromHeader} and expectedVersion ${fromBody}: give one, or the same`,
      { status: 400 },
    );
  return fromHeader;
}

export type { AdminApi };
