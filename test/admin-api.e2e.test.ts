// The REST API end to end, in-process: a relay with its admin listener and console
// host, a real token provider, a connector and a backend. Publish an app through
// the API and reach it; the loader's own messages for bad input; the file's objects
// read-only; roles; hostile requests; the audit log; the event stream; an object
// published from another process (the CLI on the data directory) reaching the relay.
/* eslint-disable @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument -- the API's JSON answers are what is under test */
import t from 'tap';
import { request } from 'undici';
import { startHarness, type Harness } from './helpers/harness.js';
import { startHeaderEcho } from './helpers/backend.js';
import { waitFor } from './helpers/wait.js';
import { ROUTES } from '../src/admin/api-types.js';
import { AdminOperations } from '../src/admin/operations.js';
import { openStore } from '../src/store/index.js';

const CONSOLE = 'console.localhost';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed JSON, checked by the assertions
  text: string;
}

async function setup(t: { teardown(fn: () => unknown): void }) {
  const backend = await startHeaderEcho(t);
  const h = await startHarness(t, {
    yaml: () => `admin: { listen: "127.0.0.1:0", consoleHost: ${CONSOLE} }
apps:
  - name: wiki
    externalUrl: "https://wiki.localhost/"
    internalUrl: "http://127.0.0.1:${backend}/"
    preauth: passthrough
    assignment: any
namedLocations:
  - name: office
    cidrs: ["10.0.0.0/8"]
policies:
  - name: file-policy
    state: reportOnly
    assignments: { users: { include: [all] } }
    grant: { requireMfa: true }
`,
  });
  const admin = h.relay.adminAddress()!;
  const base = `http://127.0.0.1:${admin.port}/api/v1`;
  const adminToken = await h.idp.adminToken();
  const readerToken = await h.idp.adminToken({ roles: ['ProxyReader'] });
  async function api(
    method: string,
    path: string,
    opts: { token?: string | null; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    const token = opts.token === undefined ? adminToken : opts.token;
    const res = await request(`${base}${path}`, {
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
    return { status: res.statusCode, headers: res.headers, body, text };
  }
  return { h, api, backend, adminToken, readerToken, base };
}

async function reach(h: Harness, host: string, path = '/'): Promise<number> {
  const res = await request(h.url(host, path), { dispatcher: h.client });
  await res.body.dump();
  return res.statusCode;
}

t.test('the API publishes an app that the relay serves at once', async (t) => {
  const { h, api, backend } = await setup(t);
  await h.addConnector();
  await t.rejects(reach(h, 'docs.localhost'), 'nothing published there yet: no certificate names it');
  const spec = {
    name: 'docs',
    externalUrl: 'https://docs.localhost/',
    internalUrl: `http://127.0.0.1:${backend}/`,
    preauth: 'passthrough',
  };
  const created = await api('POST', '/apps', { body: spec });
  t.equal(created.status, 201, created.text);
  t.match(created.body, { name: 'docs', source: 'api', version: 1, inForce: true, spec });
  t.equal(created.headers['etag'], '"1"');
  t.equal(await reach(h, 'docs.localhost'), 200, 'reachable through the relay when the API answered');

  const list = await api('GET', '/apps');
  t.same(
    list.body.map((a: { name: string; source: string }) => [a.name, a.source]),
    [
      ['wiki', 'file'],
      ['docs', 'api'],
    ],
  );
  const again = await api('POST', '/apps', { body: spec });
  t.equal(again.status, 409, 'publishing the same name twice');
  t.equal(again.body.error.code, 'ERR_CONFLICT');

  const stale = await api('PUT', '/apps/docs', {
    body: { ...spec, backendTimeout: '30s' },
    headers: { 'if-match': '"7"' },
  });
  t.equal(stale.status, 409, 'a stale version is refused');
  const updated = await api('PUT', '/apps/docs', {
    body: { ...spec, backendTimeout: '30s' },
    headers: { 'if-match': '"1"' },
  });
  t.equal(updated.status, 200, updated.text);
  t.equal(updated.body.version, 2);

  const audit = await api('GET', '/audit?action=app.');
  t.same(
    audit.body.items.map((e: { action: string; actor: string }) => e.action),
    ['app.update', 'app.publish'],
    'each change audited, newest first',
  );
  t.match(audit.body.items[0], { actor: /^api:/, details: { name: 'docs', beforeVersion: 1 } });

  const removed = await api('DELETE', '/apps/docs');
  t.equal(removed.status, 204);
  t.equal(await reach(h, 'docs.localhost'), 404, 'gone from the relay when the API answered');
  t.equal((await api('GET', '/apps/docs')).status, 404);
});

t.test('bad apps get the config loader’s messages, per field', async (t) => {
  const { api, backend } = await setup(t);
  const base = { externalUrl: 'https://x.localhost/', internalUrl: `http://127.0.0.1:${backend}/` };
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['an ftp internal URL', { ...base, name: 'a1', internalUrl: 'ftp://x/' }, 'internalUrl', /http/],
    ['an unknown key', { ...base, name: 'a2', colour: 'red' }, 'colour', /./],
    ['a bad duration', { ...base, name: 'a3', backendTimeout: 'soon' }, 'backendTimeout', /duration/],
    ['a bad name', { ...base, name: 'Bad Name' }, 'name', /lower-case/],
    [
      'a host the file publishes',
      { ...base, name: 'a4', externalUrl: 'https://wiki.localhost/' },
      'externalUrl',
      /no other app/,
    ],
    ['a secret', { ...base, name: 'a5', clientSecret: 's3cret' }, 'clientSecret', /configuration file/],
    [
      'a file path',
      { ...base, name: 'a6', tls: { certFile: '/etc/passwd', keyFile: '/etc/shadow' } },
      'tls',
      /configuration file/,
    ],
    ['a wrong type', { ...base, name: 'a7', preauth: 42 }, 'preauth', /oidc/],
    ["the console's host", { ...base, name: 'a8', externalUrl: `https://${CONSOLE}/` }, 'externalUrl', /console/],
  ];
  for (const [what, spec, path, expected] of cases) {
    const r = await api('POST', '/apps', { body: spec });
    t.equal(r.status, 422, `${what}: 422 (${r.text})`);
    const issue = (r.body?.error?.issues ?? []).find((i: { path: string }) => i.path === path);
    t.ok(issue, `${what}: an issue at ${path}`);
    t.match(issue?.expected ?? '', expected, `${what}: says what is expected`);
  }
  t.same((await api('GET', '/apps')).body.length, 1, 'nothing was stored');
  const notObject = await api('POST', '/apps', { raw: '[1,2]' });
  t.equal(notObject.status, 400);
  const badJson = await api('POST', '/apps', { raw: '{"name": ' });
  t.equal(badJson.status, 400);
  t.equal(badJson.body.error.code, 'ERR_BAD_REQUEST');
  const big = await api('POST', '/apps', { raw: JSON.stringify({ name: 'x'.repeat(70_000) }) });
  t.equal(big.status, 413, 'a body over 64 KiB');
  const form = await api('POST', '/apps', {
    raw: 'name=x',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(form.status, 415, 'only JSON bodies');
});

t.test('file objects are read-only; API objects refer to them; removal that breaks another is refused', async (t) => {
  const { api } = await setup(t);
  for (const [method, path, body] of [
    ['PUT', '/apps/wiki', { externalUrl: 'https://wiki.localhost/', internalUrl: 'http://127.0.0.1:1/' }],
    ['DELETE', '/apps/wiki', undefined],
    ['PUT', '/policies/file-policy', { assignments: { users: { include: ['all'] } }, grant: { block: true } }],
    ['DELETE', '/locations/office', undefined],
  ] as const) {
    const r = await api(method, path, body === undefined ? {} : { body });
    t.equal(r.status, 409, `${method} ${path}`);
    t.equal(r.body.error.code, 'ERR_READ_ONLY');
    t.match(r.body.error.message, /configuration file/);
  }
  const loc = await api('PUT', '/locations/lab', { body: { cidrs: ['192.0.2.0/24'] } });
  t.equal(loc.status, 200, loc.text);
  const pol = await api('PUT', '/policies/lab-block', {
    body: {
      state: 'on',
      assignments: { users: { include: ['all'] }, apps: { include: ['wiki'] } },
      conditions: { locations: { include: ['lab', 'office'] } },
      grant: { block: true },
    },
  });
  t.equal(pol.status, 200, pol.text);
  const unknownLocation = await api('PUT', '/policies/nowhere', {
    body: {
      assignments: { users: { include: ['all'] } },
      conditions: { locations: { include: ['mars'] } },
      grant: { block: true },
    },
  });
  t.equal(unknownLocation.status, 422);
  t.match(unknownLocation.body.error.issues[0], { path: 'conditions.locations.include[0]', found: /mars/ });
  const breaks = await api('DELETE', '/locations/lab');
  t.equal(breaks.status, 409, 'a location a policy uses stays');
  t.match(breaks.body.error.message, /lab-block/);
  const policies = await api('GET', '/policies');
  t.same(
    policies.body.map((p: { name: string; source: string }) => `${p.name}:${p.source}`),
    ['file-policy:file', 'lab-block:api'],
  );
});

t.test('what-if answers with the policies in force, and with a draft', async (t) => {
  const { api, readerToken } = await setup(t);
  const ask = { app: 'wiki', user: 'alice', ip: '10.1.2.3' };
  const before = await api('POST', '/policies/what-if', { body: ask });
  t.equal(before.status, 200, before.text);
  const draft = {
    name: 'office-block',
    state: 'on',
    assignments: { users: { include: ['all'] } },
    conditions: { locations: { include: ['office'] } },
    grant: { block: true },
  };
  const withDraft = await api('POST', '/policies/what-if', { body: { ...ask, draftPolicies: [draft] } });
  t.equal(withDraft.status, 200, withDraft.text);
  t.not(withDraft.body.decision.result, before.body.decision.result, 'the draft changes the decision');
  t.equal(withDraft.body.decision.result, 'deny');
  t.equal((await api('GET', '/policies/office-block')).status, 404, 'a draft is not saved');
  const reader = await api('POST', '/policies/what-if', { body: ask, token: readerToken });
  t.equal(reader.status, 200, 'what-if is a read');
  const unknown = await api('POST', '/policies/what-if', { body: { ...ask, colour: 'red' } });
  t.equal(unknown.status, 422, 'unknown fields refused');
});

t.test('tokens and roles', async (t) => {
  const { api, h, readerToken } = await setup(t);
  const none = await api('GET', '/apps', { token: null });
  t.equal(none.status, 401);
  t.match(String(none.headers['www-authenticate']), /^Bearer/);
  const wrongAudience = await api('GET', '/apps', { token: await h.idp.adminToken({ audience: 'api://other' }) });
  t.equal(wrongAudience.status, 401);
  t.equal(wrongAudience.body.error.code, 'ERR_TOKEN_AUDIENCE');
  const noRole = await api('GET', '/apps', { token: await h.idp.adminToken({ roles: ['Staff'] }) });
  t.equal(noRole.status, 403);
  const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(
    JSON.stringify({ sub: 'x', aud: 'api://proxyctl', roles: ['ProxyAdministrator'], exp: 9_999_999_999 }),
  ).toString('base64url')}.`;
  const alg = await api('GET', '/apps', { token: unsigned });
  t.equal(alg.status, 401, 'alg none');
  const forged = await h.idp.signToken({
    iss: h.idp.issuer,
    sub: 'x',
    aud: 'api://proxyctl',
    roles: ['ProxyAdministrator'],
    exp: Math.floor(Date.now() / 1000) - 3600,
  });
  t.equal((await api('GET', '/apps', { token: forged })).status, 401, 'expired');
  t.equal((await api('GET', '/apps', { token: readerToken })).status, 200, 'a reader reads');
  for (const r of ROUTES.filter((x) => x.write)) {
    const path = r.path.replace(/\{[a-z]+\}/gi, 'x');
    const res = await api(r.method, path, { token: readerToken, body: r.method === 'DELETE' ? undefined : {} });
    t.equal(res.status, 403, `reader refused: ${r.method} ${r.path}`);
  }
  const me = await api('GET', '/me', { token: readerToken });
  t.match(me.body, { caller: { role: 'reader', via: 'token' }, csrfToken: null });
});

t.test('hostile requests: paths, methods, queries, cursors', async (t) => {
  const { api } = await setup(t);
  t.equal((await api('GET', '/apps/..%2F..%2Fetc%2Fpasswd')).status, 404);
  t.equal((await api('GET', '/apps/%E0%A4%A')).status, 400, 'bad percent-encoding');
  t.equal((await api('GET', '/nothing')).status, 404);
  const method = await api('PATCH', '/apps');
  t.equal(method.status, 405);
  t.match(String(method.headers['allow']), /GET/);
  t.equal((await api('GET', '/signins?limit=0')).status, 400);
  t.equal((await api('GET', '/signins?limit=99999')).status, 400);
  t.equal((await api('GET', '/signins?limit=5&limit=6')).status, 400, 'a parameter given twice');
  t.equal((await api('GET', '/signins?cursor=AAAA')).status, 400, 'a forged cursor');
  t.equal((await api('GET', '/signins?colour=red')).status, 422, 'an unknown filter');
  t.equal((await api('GET', '/signins?since=yesterday')).status, 400);
  t.equal((await api('GET', '/signins/abc')).status, 400);
  const doc = await api('GET', '/openapi.json', { token: null });
  t.equal(doc.status, 200, 'the description is public');
  t.equal(doc.body.openapi, '3.1.0');
  for (const r of ROUTES)
    t.ok(doc.body.paths[`/api/v1${r.path}`]?.[r.method.toLowerCase()], `documented: ${r.method} ${r.path}`);
});

t.test('sign-in log paging and the event stream', async (t) => {
  const { api, h, base, adminToken } = await setup(t);
  const store = h.relay.store;
  for (let i = 0; i < 7; i++)
    await store.signIns.record({
      at: Date.now() - (7 - i) * 1000,
      requestId: null,
      traceId: null,
      kind: 'interactive',
      app: 'wiki',
      subject: `user${i}`,
      ip: '203.0.113.9',
      country: null,
      city: null,
      latitude: null,
      longitude: null,
      asn: null,
      network: null,
      userAgent: 'test',
      browser: null,
      os: null,
      clientType: 'browser',
      methods: ['pwd'],
      result: i % 2 ? 'failure' : 'success',
      reason: null,
      policies: [],
      risk: 'none',
      detections: [],
    });
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const r: Answer = await api('GET', `/signins?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(r.status, 200, r.text);
    seen.push(...r.body.items.map((s: { user: string }) => s.user));
    cursor = r.body.next;
  } while (cursor);
  t.same(seen, ['user6', 'user5', 'user4', 'user3', 'user2', 'user1', 'user0'], 'every row once, newest first');
  const failures = await api('GET', '/signins?result=failure');
  t.same(failures.body.items.length, 3);

  const controller = new AbortController();
  const stream = await request(`${base}/events/stream`, {
    headers: { authorization: `Bearer ${adminToken}`, accept: 'application/x-ndjson' },
    signal: controller.signal,
  });
  t.equal(stream.statusCode, 200);
  t.match(String(stream.headers['content-type']), /ndjson/);
  const lines: { cursor: string; event: { kind: string; data: { action?: string } } }[] = [];
  let buffered = '';
  stream.body.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)));
      buffered = buffered.slice(nl + 1);
    }
  });
  stream.body.on('error', () => undefined);
  await api('PUT', '/locations/streamed', { body: { countries: ['DE'] } });
  await waitFor(() => lines.some((l) => l.event.data.action === 'location.publish'), {
    timeoutMs: 5000,
    what: 'the change on the stream',
  });
  t.equal(lines.filter((l) => l.event.kind === 'signIn').length, 0, 'the stream starts at the head');
  controller.abort();
});

t.test('an object published from another process reaches the running relay', async (t) => {
  const { h, backend, api } = await setup(t);
  await h.addConnector();
  const store = await openStore({ kind: 'sqlite', dataDir: h.config.dataDir });
  t.teardown(() => store.close());
  const cli = new AdminOperations({
    store,
    config: h.config,
    caller: { subject: 'cli:tester', name: null, role: 'admin', via: 'local' },
  });
  await cli.publishApp({
    name: 'from-cli',
    externalUrl: 'https://cli.localhost/',
    internalUrl: `http://127.0.0.1:${backend}/`,
    preauth: 'passthrough',
  });
  await waitFor(async () => (await reach(h, 'cli.localhost').catch(() => 0)) === 200, {
    timeoutMs: 5000,
    what: 'the relay to serve the app published by the CLI',
  });
  t.pass('served');
  const listed = await api('GET', '/apps/from-cli');
  t.match(listed.body, { source: 'api', updatedBy: 'cli:tester' });
});

t.test('the console host answers the API to bearer tokens', async (t) => {
  const { h, adminToken } = await setup(t);
  const res = await request(h.url(CONSOLE, '/api/v1/apps'), {
    dispatcher: h.client,
    headers: { authorization: `Bearer ${adminToken}` },
  });
  t.equal(res.statusCode, 200);
  t.equal(((await res.body.json()) as unknown[]).length, 1);
  const page = await request(h.url(CONSOLE, '/'), { dispatcher: h.client, headers: { accept: 'text/html' } });
  await page.body.dump();
  t.equal(page.statusCode, 302, 'the console itself signs in first');
  const json = await request(h.url(CONSOLE, '/api/v1/apps'), {
    dispatcher: h.client,
    headers: { accept: 'application/json' },
  });
  await json.body.dump();
  t.equal(json.statusCode, 401, 'no session, no token: 401');
});
