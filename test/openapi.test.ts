// The OpenAPI document of the REST API: valid OpenAPI 3.1 (the official schema, through
// @seriousme/openapi-schema-validator, plus structural checks written here) whose schemas
// each compile as JSON Schema 2020-12 in Ajv's strict mode; every route
// documented; and the document telling the truth: every operation is run against a
// real relay and each answer, refusals included, is validated against the schema the
// document gives for its status (objects closed, so an undocumented field fails too).
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument -- the document and the API's answers are JSON under test */
import t from 'tap';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Validator } from '@seriousme/openapi-schema-validator';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { API_BASE, ROUTES } from '../src/admin/api-types.js';
import { AdminOperations } from '../src/admin/operations.js';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { ProxyctlError } from '../src/errors.js';
import { createApiHandler } from '../src/relay/admin/api.js';
import { openApiDocument } from '../src/relay/admin/openapi.js';
import { startHeaderEcho } from './helpers/backend.js';
import { relayYaml, startHarness, testLogger } from './helpers/harness.js';
import { signInRecord } from './helpers/sign-ins.js';
import { waitFor } from './helpers/wait.js';

/* eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed JSON */
type Any = any;

const doc = openApiDocument() as Any;
const EXTRA = [
  ['GET', '/me', 'me'],
  ['GET', '/login-info', 'loginInfo'],
  ['GET', '/openapi.json', 'openApiDocument'],
  ['GET', '/events/stream', 'eventStream'],
] as const;
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The value at a local JSON pointer ("#/components/schemas/X") of the document, or undefined. */
function resolve(pointer: string): unknown {
  if (!pointer.startsWith('#/')) return undefined;
  let at: unknown = doc;
  for (const part of pointer.slice(2).split('/')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (at === null || typeof at !== 'object' || !Object.hasOwn(at, key)) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}

function* walk(value: unknown, where: string): Generator<[Record<string, unknown>, string]> {
  if (Array.isArray(value)) for (const [i, v] of value.entries()) yield* walk(v, `${where}/${i}`);
  else if (value !== null && typeof value === 'object') {
    yield [value as Record<string, unknown>, where];
    for (const [k, v] of Object.entries(value)) yield* walk(v, `${where}/${k}`);
  }
}

// Keywords whose meaning is the same in JSON Schema draft-07 and 2020-12 (items only as a schema, $ref alone).
const SCHEMA_KEYWORDS = new Set([
  'type',
  'enum',
  'const',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'anyOf',
  'oneOf',
  'allOf',
  'not',
  'description',
  'title',
  'format',
  'pattern',
  'minLength',
  'maxLength',
  'minimum',
  'maximum',
  'minItems',
  'maxItems',
  'default',
  'examples',
  '$ref',
]);

/** Problems of one schema (and its subschemas) as a 2020-12 and draft-07 schema alike. */
function schemaProblems(schema: unknown, where: string): string[] {
  const out: string[] = [];
  const visit = (s: unknown, at: string): void => {
    if (typeof s === 'boolean') return;
    if (s === null || typeof s !== 'object' || Array.isArray(s)) return void out.push(`${at}: not a schema`);
    const o = s as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!SCHEMA_KEYWORDS.has(k)) out.push(`${at}: keyword ${k}`);
    if ('$ref' in o && Object.keys(o).length > 1) out.push(`${at}: $ref with siblings`);
    if (typeof o['$ref'] === 'string' && resolve(o['$ref']) === undefined) out.push(`${at}: $ref ${o['$ref']}`);
    if (Array.isArray(o['items'])) out.push(`${at}: items as an array`);
    else if ('items' in o) visit(o['items'], `${at}/items`);
    for (const [k, v] of Object.entries((o['properties'] as object | undefined) ?? {}))
      visit(v, `${at}/properties/${k}`);
    if (typeof o['additionalProperties'] === 'object') visit(o['additionalProperties'], `${at}/additionalProperties`);
    for (const k of ['anyOf', 'oneOf', 'allOf'])
      if (k in o) (o[k] as unknown[]).forEach((v, i) => visit(v, `${at}/${k}/${i}`));
    if ('not' in o) visit(o['not'], `${at}/not`);
    if (Array.isArray(o['required']))
      for (const r of o['required'] as string[])
        if (o['properties'] && !Object.hasOwn(o['properties'], r)) out.push(`${at}: required ${r} is not a property`);
  };
  visit(schema, where);
  return out;
}

/** The structural rules of OpenAPI 3.1 this document could break. */
function openApiProblems(): string[] {
  const out: string[] = [];
  const fail = (m: string): void => void out.push(m);
  if (!/^3\.1\.\d+$/.test(doc.openapi)) fail(`openapi ${doc.openapi}`);
  if (typeof doc.info?.title !== 'string' || typeof doc.info?.version !== 'string') fail('info title/version');
  const allowedTop = ['openapi', 'info', 'jsonSchemaDialect', 'servers', 'paths', 'webhooks', 'components'];
  for (const k of Object.keys(doc))
    if (![...allowedTop, 'security', 'tags', 'externalDocs'].includes(k)) fail(`top ${k}`);
  const schemes = doc.components?.securitySchemes ?? {};
  for (const [name, s] of Object.entries<Any>(schemes))
    if (
      !['apiKey', 'http', 'mutualTLS', 'oauth2', 'openIdConnect'].includes(s.type) ||
      (s.type === 'http' && !s.scheme)
    )
      fail(`securityScheme ${name}`);
  const checkSecurity = (sec: unknown, at: string): void => {
    if (!Array.isArray(sec)) return fail(`${at}: security is not a list`);
    for (const req of sec) for (const name of Object.keys(req)) if (!schemes[name]) fail(`${at}: scheme ${name}`);
  };
  checkSecurity(doc.security ?? [], 'top');
  const tags = new Set((doc.tags ?? []).map((x: { name: string }) => x.name));
  if (tags.size !== (doc.tags ?? []).length) fail('duplicate tags');
  for (const group of ['schemas', 'responses', 'parameters', 'securitySchemes'])
    for (const k of Object.keys(doc.components?.[group] ?? {}))
      if (!/^[a-zA-Z0-9._-]+$/.test(k)) fail(`components.${group}.${k}: name`);
  const ids = new Set<string>();
  for (const [p, item] of Object.entries<Any>(doc.paths)) {
    if (!p.startsWith('/')) fail(`${p}: not starting with /`);
    const template = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const k of Object.keys(item))
      if (![...METHODS, 'summary', 'description', 'servers', 'parameters', '$ref'].includes(k)) fail(`${p}: ${k}`);
    for (const method of METHODS.filter((m) => item[m])) {
      const op = item[method];
      const at = `${method.toUpperCase()} ${p}`;
      if (typeof op.operationId !== 'string' || ids.has(op.operationId)) fail(`${at}: operationId`);
      ids.add(op.operationId);
      for (const tag of op.tags ?? []) if (!tags.has(tag)) fail(`${at}: tag ${tag} not declared`);
      if (op.security !== undefined) checkSecurity(op.security, at);
      const params: Any[] = op.parameters ?? [];
      const seen = new Set<string>();
      for (const prm of params) {
        const key = `${prm.in}:${prm.in === 'header' ? String(prm.name).toLowerCase() : prm.name}`;
        if (seen.has(key)) fail(`${at}: parameter ${key} twice`);
        seen.add(key);
        if (!['query', 'header', 'path', 'cookie'].includes(prm.in)) fail(`${at}: parameter in ${prm.in}`);
        if (typeof prm.name !== 'string' || !prm.name) fail(`${at}: parameter name`);
        if ((prm.schema === undefined) === (prm.content === undefined)) fail(`${at}: ${prm.name}: schema xor content`);
        if (prm.in === 'path' && prm.required !== true) fail(`${at}: path parameter ${prm.name} not required`);
        if (prm.in === 'path' && !template.includes(prm.name)) fail(`${at}: ${prm.name} not in the path`);
        if (prm.in === 'header' && ['accept', 'content-type', 'authorization'].includes(prm.name.toLowerCase()))
          fail(`${at}: header ${prm.name} is ignored by OpenAPI`);
      }
      for (const name of template)
        if (!params.some((x) => x.in === 'path' && x.name === name)) fail(`${at}: path parameter ${name} missing`);
      if (op.requestBody && (typeof op.requestBody.content !== 'object' || !Object.keys(op.requestBody.content).length))
        fail(`${at}: requestBody without content`);
      const responses = Object.entries<Any>(op.responses ?? {});
      if (responses.length === 0) fail(`${at}: no responses`);
      for (const [status, r] of responses) {
        if (!/^([1-5](\d\d|XX)|default)$/.test(status)) fail(`${at}: response ${status}`);
        const resolved = r.$ref ? resolve(r.$ref) : r;
        if (!resolved || typeof resolved.description !== 'string') fail(`${at}: response ${status} description`);
        for (const [type, media] of Object.entries<Any>(resolved?.content ?? {})) {
          if (!/^[a-z]+\/[a-z0-9.+-]+$/.test(type)) fail(`${at}: media type ${type}`);
          if (media.schema === undefined) fail(`${at}: ${status} ${type} without a schema`);
        }
      }
    }
  }
  for (const [obj, where] of walk(doc, '#'))
    if (typeof obj['$ref'] === 'string' && resolve(obj['$ref']) === undefined) fail(`${where}: $ref ${obj['$ref']}`);
  return out;
}

// ---- validation of answers -----------------------------------------------------------

const ROOT = 'https://proxyctl.invalid/openapi.json';

/**
 * A schema for Ajv: references made absolute (to the definitions added under ROOT) and, when
 * `closed`, every object schema with properties closed, so an undocumented field fails.
 */
function rewrite(schema: unknown, closed: boolean): unknown {
  if (Array.isArray(schema)) return schema.map((s) => rewrite(s, closed));
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$ref' && typeof v === 'string') out[k] = v.replace('#/components/schemas/', `${ROOT}#/$defs/`);
    else if (k === 'properties')
      out[k] = Object.fromEntries(Object.entries(v as object).map(([name, s]) => [name, rewrite(s, closed)]));
    else out[k] = rewrite(v, closed);
  }
  if (closed && out['properties'] && out['additionalProperties'] === undefined) out['additionalProperties'] = false;
  return out;
}
const strict = (schema: unknown) => rewrite(schema, true);

function newAjv() {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  addFormats.default(ajv);
  return ajv;
}

const ajv = newAjv();
ajv.addSchema({ $id: ROOT, $defs: strict(doc.components.schemas) });

function validate(schema: unknown, value: unknown): string[] {
  const check = ajv.compile(strict(schema) as object);
  if (check(value)) return [];
  return (check.errors ?? []).map(
    (e) => `${e.instancePath || '(root)'} ${e.message ?? ''} ${JSON.stringify(e.params)}`,
  );
}

/** The documented operation of a concrete request. */
function operationOf(method: string, target: string): { op: Any; template: string } | undefined {
  const pathname = target.split('?')[0]!;
  for (const [template, item] of Object.entries<Any>(doc.paths)) {
    const pattern = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (pattern.test(pathname) && item[method.toLowerCase()]) return { op: item[method.toLowerCase()], template };
  }
  return undefined;
}

t.test('the document is well-formed OpenAPI 3.1', async (t) => {
  const official = new Validator();
  const verdict = await official.validate(structuredClone(doc));
  t.same(verdict, { valid: true }, 'valid against the OpenAPI 3.1 schema');
  t.equal(official.version, '3.1');
  t.same(openApiProblems(), [], 'no structural problem');
  t.equal(doc.openapi, '3.1.0');
  const names = Object.keys(doc.components.schemas);
  const asGiven = newAjv();
  asGiven.addSchema({ $id: ROOT, $defs: rewrite(doc.components.schemas, false) });
  for (const name of [
    'ObjectView',
    'ConnectorView',
    'ConnectorDetail',
    'GroupView',
    'UserView',
    'NewUserInput',
    'UserUpdateInput',
    'SignInView',
    'AuditView',
    'DetectionView',
    'RiskUserView',
    'KeyView',
    'SignInPage',
    'AuditPage',
    'DetectionPage',
    'SecurityEventView',
    'EventsPage',
    'WhatIfInput',
    'WhatIfResult',
    'Overview',
    'ReplicaView',
    'Caller',
    'Error',
    'AppSpec',
    'PolicySpec',
    'LocationSpec',
  ])
    t.ok(names.includes(name), `components.schemas.${name}`);
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    t.same(schemaProblems(schema, name), [], `${name}: keywords of draft-07 and 2020-12 alike`);
    // As the document gives it (not closed): valid against the draft-07 meta-schema, keywords and formats known.
    t.doesNotThrow(() => asGiven.compile(rewrite(schema, false) as object), `${name} compiles`);
  }
  for (const [obj, where] of walk(doc.paths, '#/paths'))
    if (obj['schema'] && typeof obj['schema'] === 'object')
      t.same(schemaProblems(obj['schema'], where), [], `${where}: schema`);
  // Inputs are closed, as the server refuses unknown fields.
  for (const name of names.filter((n) => /Input$|Replacement$|Spec$/.test(n)))
    t.equal(doc.components.schemas[name].additionalProperties, false, `${name} refuses unknown fields`);
});

t.test('every route and extra endpoint is documented, each with its role and refusals', async (t) => {
  for (const r of ROUTES) {
    const op = doc.paths[`${API_BASE}${r.path}`]?.[r.method.toLowerCase()];
    t.equal(op?.operationId, r.op, `${r.method} ${r.path}`);
    t.equal(op?.['x-proxyctl-role'], r.write ? 'admin' : 'reader', `${r.op}: role`);
    t.ok(op?.responses[String(r.status ?? 200)], `${r.op}: success status ${r.status ?? 200}`);
    t.equal(Boolean(op?.requestBody), r.args.includes('body'), `${r.op}: a body exactly when it takes one`);
    for (const s of ['400', '401', '403']) t.ok(op?.responses[s], `${r.op}: ${s}`);
    if (r.method === 'POST' || r.method === 'PUT')
      for (const s of ['413', '415']) t.ok(op?.responses[s], `${r.op}: ${s}`);
    const ifMatch = (op?.parameters ?? []).some((p: Any) => p.in === 'header' && p.name === 'If-Match');
    t.equal(ifMatch, r.args.includes('ifMatch'), `${r.op}: If-Match exactly when it takes a version`);
    if (r.args.includes('query'))
      t.ok(
        (op?.parameters ?? []).some((p: Any) => p.in === 'query'),
        `${r.op}: query`,
      );
  }
  for (const [method, p, id] of EXTRA)
    t.equal(doc.paths[`${API_BASE}${p}`]?.[method.toLowerCase()]?.operationId, id, `${method} ${p}`);
  t.same(doc.paths[`${API_BASE}/login-info`].get.security, [], 'login-info is public');
  t.same(doc.paths[`${API_BASE}/openapi.json`].get.security, [], 'the document is public');
  const stream = doc.paths[`${API_BASE}/events/stream`].get;
  t.same(Object.keys(stream.responses['200'].content).sort(), ['application/x-ndjson', 'text/event-stream']);
  t.same(stream.parameters.map((p: Any) => `${p.in}:${p.name}`).sort(), ['header:Last-Event-ID', 'query:after']);
  const limit = doc.paths[`${API_BASE}/signins`].get.parameters.find((p: Any) => p.name === 'limit');
  t.match(limit.schema, { type: 'integer', minimum: 1, maximum: 1000 });
  let refs = 0;
  for (const [obj, where] of walk(doc, '#')) {
    if (typeof obj['$ref'] !== 'string') continue;
    refs++;
    t.not(resolve(obj['$ref']), undefined, `${where}: ${obj['$ref']} resolves`);
  }
  t.ok(refs > 100, `${refs} references checked`);
  t.equal(doc.components.securitySchemes.bearer.bearerFormat, 'JWT');
  t.match(doc.info.description, /x-proxyctl-csrf/);
});

// ---- conformance against a running relay ------------------------------------------------

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Any;
  text: string;
}

t.test('the relay answers as the document says', async (t) => {
  const backend = await startHeaderEcho(t);
  const h = await startHarness(t, {
    yaml: () => `admin: { listen: "127.0.0.1:0" }
apps:
  - name: wiki
    externalUrl: "https://wiki.localhost/"
    internalUrl: "http://127.0.0.1:${backend}/"
    preauth: passthrough
    assignment: any
    cookie: { sameSite: Strict }
namedLocations:
  - name: office
    cidrs: ["10.0.0.0/8"]
policies:
  - name: file-policy
    state: reportOnly
    assignments: { users: { include: [all] } }
    conditions: { locations: { include: [office] }, signInRisk: [high] }
    grant: { requireMfa: true }
`,
  });
  const adminToken = await h.idp.adminToken();
  const readerToken = await h.idp.adminToken({ roles: ['ProxyReader'] });
  const relayBase = `http://127.0.0.1:${h.relay.adminAddress()!.port}`;

  // Users live at the embedded provider: the same handler and operations over the relay's
  // store with a configuration without an external issuer (only the token check is faked).
  const embedded = parseRelayConfig(relayYaml(undefined, ''), path.join(h.dir, 'embedded.yaml'));
  const handler = createApiHandler({
    operations: (caller) => new AdminOperations({ store: h.relay.store, config: embedded, caller }),
    verifyToken: async (token) => {
      if (token !== 'embedded-admin') throw new ProxyctlError('ERR_UNAUTHENTICATED', 'unknown token', { status: 401 });
      return { subject: 'tester', name: undefined, role: 'admin' };
    },
    loginInfo: () => ({ issuer: 'https://relay.localhost', cliClientId: 'proxyctl-cli', adminAudience: 'api://x' }),
    log: testLogger(),
  });
  const server = createServer((req, res) => void handler.handle(req, res, { kind: 'token' }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const embeddedBase = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const answered = new Map<string, Set<number>>();
  async function call(
    method: string,
    target: string,
    opts: {
      token?: string | null;
      body?: unknown;
      raw?: string;
      headers?: Record<string, string>;
      base?: string;
    } = {},
  ): Promise<Answer> {
    const token = opts.token === undefined ? adminToken : opts.token;
    const res = await request(`${opts.base ?? relayBase}${API_BASE}${target}`, {
      method: method as 'GET',
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(opts.body !== undefined || opts.raw !== undefined ? { 'content-type': 'application/json' } : {}),
        ...opts.headers,
      },
      ...(opts.raw !== undefined
        ? { body: opts.raw }
        : opts.body !== undefined
          ? { body: JSON.stringify(opts.body) }
          : {}),
    });
    const text = await res.body.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    const answer = { status: res.statusCode, headers: res.headers, body, text };
    conform(method, target, answer);
    return answer;
  }

  /** The answer's status is documented for the operation, and its body matches that status's schema. */
  function conform(method: string, target: string, a: Answer): void {
    const found = operationOf(method, `${API_BASE}${target}`);
    const what = `${method} ${target.slice(0, 60)} → ${a.status}`;
    if (!found) return void t.fail(`${what}: not documented`);
    const { op } = found;
    let response = op.responses[String(a.status)];
    if (!response) return void t.fail(`${what}: status not documented for ${op.operationId} (${a.text.slice(0, 200)})`);
    if (response.$ref) response = resolve(response.$ref);
    const schema = response.content?.['application/json']?.schema;
    if (schema === undefined) t.equal(a.text, '', `${what}: no body`);
    else t.same(validate(schema, a.body), [], `${what}: matches ${op.operationId}'s ${a.status} schema`);
    if (a.headers['etag'] !== undefined)
      t.ok(response.headers?.['ETag'], `${what}: the ETag header is documented for ${op.operationId}`);
    if (a.status < 300) {
      if (!answered.has(op.operationId)) answered.set(op.operationId, new Set());
      answered.get(op.operationId)!.add(a.status);
    }
  }

  const ok = (a: Answer, status = 200) => t.equal(a.status, status, a.text.slice(0, 300));

  // Data: the cursor at the head first, then sign-ins, a detection, a connector and changes after it.
  const head = await call('GET', '/events');
  ok(head);
  const store = h.relay.store;
  const now = Date.now();
  const full = signInRecord({
    at: now - 5000,
    requestId: 'req-1',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    kind: 'interactive',
    app: 'wiki',
    subject: 'alice',
    ip: '203.0.113.9',
    country: 'DE',
    city: 'Berlin',
    latitude: 52.5,
    longitude: 13.4,
    asn: 64500,
    network: 'Example Net',
    userAgent: 'Mozilla/5.0',
    browser: 'Firefox',
    os: 'Linux',
    clientType: 'browser',
    methods: ['pwd', 'otp'],
    result: 'stepUp',
    reason: 'policy file-policy',
    policies: [{ name: 'file-policy', result: 'unsatisfied' }],
    risk: 'high',
    detections: [
      { type: 'impossibleTravel', level: 'high', detail: 'from US' },
      { type: 'tor', level: 'low' },
    ],
  });
  const signInId = await store.signIns.record(full);
  for (let i = 0; i < 3; i++) await store.signIns.record(signInRecord({ at: now - 4000 + i }));
  await store.risk.addDetection({
    at: now - 4000,
    subject: 'alice',
    ip: '203.0.113.9',
    app: 'wiki',
    type: 'impossibleTravel',
    level: 'high',
    signInId,
    requestId: 'req-1',
    details: { from: 'US' },
  });
  await store.risk.addDetection({
    at: now - 3000,
    subject: null,
    ip: '198.51.100.7',
    app: null,
    type: 'passwordSpray',
    level: 'medium',
    signInId: null,
    requestId: null,
    details: {},
  });
  await h.addConnector({ name: 'edge-1' });

  // Every read.
  ok(await call('GET', '/overview'));
  ok(await call('GET', '/apps'));
  ok(await call('GET', '/apps/wiki'));
  ok(await call('GET', '/policies'));
  ok(await call('GET', '/policies/file-policy'));
  ok(await call('GET', '/locations'));
  ok(await call('GET', '/locations/office'));
  const connectors = await call('GET', '/connectors');
  ok(connectors);
  const connectorId: string = connectors.body[0].id;
  const detail = await call('GET', `/connectors/${connectorId}`);
  ok(detail);
  t.ok(detail.body.channels.length > 0, 'the live channels are shown');
  ok(await call('GET', '/groups'));
  ok(await call('GET', '/groups/default'));
  const signIns = await call('GET', '/signins?limit=2');
  ok(signIns);
  t.type(signIns.body.next, 'string', 'a next page');
  ok(await call('GET', `/signins?cursor=${signIns.body.next}&result=failure&since=1h`));
  const one = await call('GET', `/signins?user=alice`);
  ok(await call('GET', `/signins/${one.body.items[0].id}`));
  ok(await call('GET', '/audit?action=connector.'));
  ok(await call('GET', '/risk/users?all=true'));
  ok(await call('GET', '/risk/detections?limit=1'));
  ok(await call('GET', '/keys'));
  ok(await call('GET', '/me'));
  ok(await call('GET', '/me', { token: readerToken }));
  ok(await call('GET', '/login-info', { token: null }));
  const served = await call('GET', '/openapi.json', { token: null });
  ok(served);
  t.same(served.body, JSON.parse(JSON.stringify(doc)), 'the served document is this one');

  // Every change, with real data.
  const app = {
    name: 'docs',
    externalUrl: 'https://docs.localhost/',
    internalUrl: `http://127.0.0.1:${backend}/`,
    preauth: 'passthrough',
    assignment: 'any',
    backendTimeout: '30s',
    maxBodyBytes: '1MiB',
    cookie: { persistent: false },
  };
  t.same(validate(doc.components.schemas.AppInput, app), [], 'the app to publish matches AppInput');
  const published = await call('POST', '/apps', { body: app });
  ok(published, 201);
  t.equal(published.headers['etag'], '"1"', 'the documented ETag');
  ok(await call('PUT', '/apps/docs', { body: { ...app, backendTimeout: '60s' }, headers: { 'if-match': '"1"' } }));
  ok(await call('PUT', '/apps/docs', { body: { ...app, expectedVersion: 2 } }));
  const location = { cidrs: ['192.0.2.0/24'], countries: ['FR'] };
  t.same(validate(doc.components.schemas.LocationInput, location), [], 'LocationInput');
  ok(await call('PUT', '/locations/lab', { body: location }));
  const policy = {
    state: 'on',
    assignments: { users: { include: ['all'] }, apps: { include: ['docs'] } },
    conditions: { locations: { include: ['lab'] }, platforms: { include: ['linux'] } },
    grant: { block: true },
    session: { signInFrequency: '1h' },
  };
  t.same(validate(doc.components.schemas.PolicyInput, policy), [], 'PolicyInput');
  ok(await call('PUT', '/policies/lab-block', { body: policy }));
  ok(await call('GET', '/policies/lab-block'));
  const ask = { app: 'wiki', user: 'alice', ip: '10.1.2.3', platform: 'linux', mfa: false };
  ok(await call('POST', '/policies/what-if', { body: ask }));
  const draft = {
    name: 'mfa-draft',
    state: 'on',
    assignments: { users: { include: ['all'] } },
    grant: { requireMfa: true },
  };
  const stepUp = await call('POST', '/policies/what-if', {
    body: { ...ask, draftPolicies: [draft] },
    token: readerToken,
  });
  ok(stepUp);
  t.equal(stepUp.body.decision.result, 'stepUp', 'the draft asks for step-up');
  const group = await call('POST', '/groups', { body: { name: 'spare', description: 'for later' } });
  ok(group, 201);
  ok(await call('GET', '/groups/spare'));
  ok(await call('POST', `/connectors/${connectorId}/revoke`, {}));
  ok(await call('DELETE', `/connectors/${connectorId}`), 204);
  ok(await call('POST', '/risk/users/alice/confirm'));
  ok(await call('POST', '/risk/users/alice/dismiss'));
  ok(await call('POST', '/keys/rotate', { body: { purpose: 'session' } }));
  ok(await call('POST', '/keys/rotate'));
  ok(await call('DELETE', '/policies/lab-block', { headers: { 'if-match': '1' } }), 204);
  ok(await call('DELETE', '/locations/lab'), 204);
  ok(await call('DELETE', '/apps/docs'), 204);
  ok(await call('DELETE', '/groups/spare'), 204);

  // The events after the head: sign-ins, detections and audit entries.
  const events = await call('GET', `/events?after=${head.body.cursor}&limit=1000`);
  ok(events);
  t.same(
    [...new Set(events.body.events.map((e: { kind: string }) => e.kind))].sort(),
    ['audit', 'riskDetection', 'signIn'],
    'every kind of event was validated',
  );

  // Users, at the embedded provider.
  const users = { base: embeddedBase, token: 'embedded-admin' };
  ok(await call('GET', '/users', users));
  const added = await call('POST', '/users', {
    ...users,
    body: { username: 'Bob', email: 'bob@example.com', name: 'Bob', groups: ['staff'], roles: ['ops'] },
  });
  ok(added, 201);
  t.type(added.body.password, 'string', 'a generated password');
  ok(await call('GET', '/users/bob', users));
  ok(await call('PUT', '/users/bob', { ...users, body: { email: null, name: 'Robert', groups: [] } }));
  ok(await call('POST', '/users/bob/password', users));
  ok(await call('POST', '/users/bob/password', { ...users, body: { password: 'correct horse battery staple 42' } }));
  ok(await call('POST', '/users/bob/totp', users));
  ok(await call('DELETE', '/users/bob', users), 204);
  ok(await call('GET', '/me', users));
  ok(await call('GET', '/login-info', { ...users, token: null }));

  // Refusals: each status documented for its operation, each body an Error.
  const refusals: [number, Answer][] = [
    [401, await call('GET', '/apps', { token: null })],
    [401, await call('GET', '/events/stream', { token: 'not-a-token' })],
    [403, await call('POST', '/apps', { token: readerToken, body: app })],
    [403, await call('GET', '/apps', { token: await h.idp.adminToken({ roles: ['Staff'] }) })],
    [404, await call('GET', '/apps/nothing')],
    [404, await call('GET', `/signins/999999`)],
    [404, await call('GET', '/connectors/nothing')],
    [409, await call('PUT', '/apps/wiki', { body: { externalUrl: 'https://w.localhost/', internalUrl: 'http://x/' } })],
    [409, await call('DELETE', '/locations/office')],
    [409, await call('GET', '/users')],
    [413, await call('POST', '/apps', { raw: JSON.stringify({ name: 'x'.repeat(70_000) }) })],
    [
      415,
      await call('POST', '/apps', { raw: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
    ],
    [422, await call('POST', '/apps', { body: { ...app, name: 'other', colour: 'red' } })],
    [422, await call('POST', '/policies/what-if', { body: { ...ask, colour: 'red' } })],
    [422, await call('GET', '/signins?colour=red')],
    [400, await call('GET', '/signins?limit=0')],
    [400, await call('POST', '/apps', { raw: '{"name": ' })],
    [400, await call('PUT', '/apps/wiki', { body: app, headers: { 'if-match': 'soon' } })],
    [400, await call('GET', '/events/stream?colour=red')],
  ];
  for (const [status, a] of refusals) t.equal(a.status, status, `refused with ${status}: ${a.text.slice(0, 120)}`);

  // The event stream, both ways, each event as documented.
  const streamSchema = doc.paths[`${API_BASE}/events/stream`].get.responses['200'].content;
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const open = async (accept: string) => {
    const res = await request(`${relayBase}${API_BASE}/events/stream?after=${head.body.cursor}`, {
      headers: { authorization: `Bearer ${adminToken}`, accept },
      signal: controller.signal,
    });
    let text = '';
    res.body.on('data', (c: Buffer) => (text += c.toString('utf8')));
    res.body.on('error', () => undefined);
    return { res, text: () => text };
  };
  const ndjson = await open('application/x-ndjson');
  t.equal(ndjson.res.statusCode, 200);
  t.match(String(ndjson.res.headers['content-type']), /^application\/x-ndjson/);
  await waitFor(() => ndjson.text().split('\n').length > 3, { timeoutMs: 5000, what: 'NDJSON lines' });
  const lines = ndjson.text().split('\n').slice(0, -1);
  for (const line of lines.slice(0, 20))
    t.same(validate(streamSchema['application/x-ndjson'].schema, JSON.parse(line)), [], 'an NDJSON line');
  const sse = await open('text/event-stream');
  t.match(String(sse.res.headers['content-type']), /^text\/event-stream/);
  await waitFor(() => sse.text().split('\n\n').length > 3, { timeoutMs: 5000, what: 'SSE events' });
  const frames = sse
    .text()
    .split('\n\n')
    .filter((f) => f.startsWith('id: '))
    .slice(0, 20);
  t.ok(frames.length > 0, 'SSE events');
  for (const frame of frames) {
    const fields = Object.fromEntries(
      frame.split('\n').map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]),
    );
    const data = JSON.parse(fields['data']!);
    t.same(validate(ref('SecurityEventView'), data), [], 'an SSE data line is a SecurityEventView');
    t.equal(fields['event'], data.kind, 'event: the kind');
  }
  answered.set('eventStream', new Set([200]));
  controller.abort();

  // Every documented operation was answered with success at least once.
  const documented = Object.values<Any>(doc.paths).flatMap((item) =>
    METHODS.filter((m) => item[m]).map((m) => item[m].operationId as string),
  );
  t.same(
    documented.filter((id) => !answered.has(id)),
    [],
    'every operation was seen to succeed',
  );
});

t.test('the documented keys of apps, policies and locations are the loader’s', async (t) => {
  const h = await startHarness(t, { yaml: () => 'admin: { listen: "127.0.0.1:0" }\n' });
  const base = `http://127.0.0.1:${h.relay.adminAddress()!.port}${API_BASE}`;
  const token = await h.idp.adminToken();
  /** The loader's list of known keys at `at`, read from its refusal of an unknown key there. */
  async function known(method: 'POST' | 'PUT', target: string, body: Record<string, unknown>, at: string) {
    const res = await request(`${base}${target}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = (await res.body.json()) as Any;
    const issue = (answer.error?.issues ?? []).find((i: { path: string }) => i.path === `${at}colour`);
    const m = /known keys: ([^)]*)\)/.exec(issue?.expected ?? '');
    return m ? m[1]!.split(', ').sort() : [`no list: ${JSON.stringify(answer)}`];
  }
  const keys = (schema: Any) => Object.keys(schema.properties).sort();
  const S = doc.components.schemas;
  const app = { name: 'a', externalUrl: 'https://a.localhost/', internalUrl: 'http://127.0.0.1:1/', colour: 1 };
  t.same(await known('POST', '/apps', app, ''), keys(S.AppSpec), 'app keys');
  t.same(
    await known('POST', '/apps', { ...app, colour: undefined, cookie: { colour: 1 } }, 'cookie.'),
    keys(S.AppSpec.properties.cookie),
    'app cookie keys',
  );
  const policy = { assignments: { users: { include: ['all'] } }, grant: { block: true } };
  t.same(await known('PUT', '/policies/p', { ...policy, colour: 1 }, ''), keys(S.PolicySpec), 'policy keys');
  for (const part of ['assignments', 'conditions', 'grant', 'session'] as const) {
    const body = { ...policy, [part]: { ...(policy as Record<string, object>)[part], colour: 1 } };
    t.same(
      await known('PUT', '/policies/p', body, `${part}.`),
      keys(S.PolicySpec.properties[part]),
      `policy ${part} keys`,
    );
  }
  t.same(
    await known(
      'PUT',
      '/policies/p',
      { ...policy, conditions: { time: { from: '08:00', to: '18:00', colour: 1 } } },
      'conditions.time.',
    ),
    keys(S.PolicySpec.properties.conditions.properties.time),
    'policy time keys',
  );
  t.same(
    await known(
      'PUT',
      '/policies/p',
      { ...policy, assignments: { users: { include: ['all'], colour: 1 } } },
      'assignments.users.',
    ),
    keys(S.PolicySpec.properties.assignments.properties.users),
    'include/exclude keys',
  );
  t.same(
    await known('PUT', '/locations/l', { cidrs: ['10.0.0.0/8'], colour: 1 }, ''),
    keys(S.LocationSpec),
    'location keys',
  );
  t.same(
    keys(S.AppInput).concat(['clientSecret', 'clientSecretFile', 'tls']).sort(),
    keys(S.AppSpec),
    'an app input is the app without the file-only keys',
  );
});
