// The API as the console calls it: a signed-in session (as the console host hands it
// over after the relay's sign-in) against real operations on a real store. Every
// write needs the session's anti-CSRF token and the console's Origin, whatever else
// it carries; a reader session changes nothing; the event stream speaks SSE and
// resumes at Last-Event-ID. The composition: the file wins, the rest stays.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { silentLogger } from '../src/log.js';
import { AdminOperations } from '../src/admin/operations.js';
import { composeConfig } from '../src/admin/compose.js';
import type { Caller } from '../src/admin/api-types.js';
import { createApiHandler, csrfToken, type ApiAuth } from '../src/relay/admin/api.js';
import { consoleCaller } from '../src/relay/admin/console.js';
import { identityFromClaims } from '../src/relay/auth/identity.js';
import { openSqliteStore, type ManagedObject } from '../src/store/index.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const ORIGIN = 'https://admin.localhost:8443';
const SID = 'session-1234';

async function setup(t: { teardown(fn: () => unknown): void }, role: Caller['role'] = 'admin') {
  const dir = tempDir(t);
  const config = parseRelayConfig(
    `dataDir: ./data
apps:
  - name: wiki
    externalUrl: "https://wiki.localhost/"
    internalUrl: "http://127.0.0.1:9/"
`,
    path.join(dir, 'relay.yaml'),
  );
  const store = openSqliteStore(config.dataDir);
  t.teardown(() => store.close());
  const listeners = new Set<() => void>();
  const api = createApiHandler({
    operations: (caller) => new AdminOperations({ store, config, caller }),
    verifyToken: () => Promise.reject(new Error('no tokens here')),
    loginInfo: () => ({ issuer: 'https://idp.invalid', cliClientId: undefined, adminAudience: 'api://proxyctl' }),
    log: silentLogger,
    onStoreChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  });
  const caller: Caller = { subject: 'alice', name: 'Alice', role, via: 'session' };
  const auth: ApiAuth = { kind: 'session', caller, sid: SID, origin: ORIGIN };
  const server = createServer((req, res) => void api.handle(req, res, auth));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  server.on('connection', (s) => t.teardown(() => s.destroy()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
  const call = async (method: string, p: string, headers: Record<string, string> = {}, body?: unknown) => {
    const res = await request(`${base}${p}`, {
      method: method as 'GET',
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined };
  };
  return { store, call, base, wake: () => listeners.forEach((l) => l()), config };
}

const location = { countries: ['DE'] };

t.test('console writes need the anti-CSRF token and the Origin', async (t) => {
  const { call, store } = await setup(t);
  const me = await call('GET', '/me');
  t.equal(me.status, 200);
  t.equal((me.body as { csrfToken: string }).csrfToken, csrfToken(SID), 'the session hands out its token');
  const token = csrfToken(SID);
  const refusals: [string, Record<string, string>][] = [
    ['no token, no Origin', {}],
    ['no token', { origin: ORIGIN }],
    ['a wrong token', { origin: ORIGIN, 'x-proxyctl-csrf': csrfToken('another-session') }],
    ['a token of another length', { origin: ORIGIN, 'x-proxyctl-csrf': 'x' }],
    ['another Origin', { origin: 'https://evil.example', 'x-proxyctl-csrf': token }],
    ['Origin null', { origin: 'null', 'x-proxyctl-csrf': token }],
    ['no Origin', { 'x-proxyctl-csrf': token }],
    ['the console origin on another port', { origin: 'https://admin.localhost:9443', 'x-proxyctl-csrf': token }],
  ];
  for (const [what, headers] of refusals) {
    for (const [method, p, body] of [
      ['PUT', '/locations/hq', location],
      ['DELETE', '/apps/wiki', undefined],
      ['POST', '/policies/what-if', { app: 'wiki', user: 'bob' }],
    ] as const) {
      const r = await call(method, p, headers, body);
      t.equal(r.status, 403, `${what}: ${method} ${p} refused`);
      t.equal((r.body?.['error'] as { code?: string })?.code, 'ERR_CSRF');
    }
  }
  t.same(await store.objects.list(), [], 'nothing was written');
  t.same(await store.audit.query({}), [], 'nothing was audited');
  const ok = await call('PUT', '/locations/hq', { origin: ORIGIN, 'x-proxyctl-csrf': token }, location);
  t.equal(ok.status, 200, 'with both, the change is made');
  t.match(await store.audit.query({}), [{ actor: 'console:alice', action: 'location.publish' }]);
  t.equal((await call('GET', '/locations')).status, 200, 'reads need neither');
});

t.test('a reader session changes nothing', async (t) => {
  const { call, store } = await setup(t, 'reader');
  const headers = { origin: ORIGIN, 'x-proxyctl-csrf': csrfToken(SID) };
  t.equal((await call('PUT', '/locations/hq', headers, location)).status, 403);
  t.equal((await call('POST', '/policies/what-if', headers, { app: 'wiki', user: 'bob' })).status, 200);
  t.equal((await call('GET', '/apps')).status, 200);
  t.same(await store.objects.list(), []);
});

t.test('the event stream: SSE, resumable at Last-Event-ID', async (t) => {
  const { base, call, wake } = await setup(t);
  const headers = { origin: ORIGIN, 'x-proxyctl-csrf': csrfToken(SID) };
  const open = async (lastId?: string) => {
    const controller = new AbortController();
    t.teardown(() => controller.abort());
    const res = await request(`${base}/events/stream`, {
      headers: { accept: 'text/event-stream', ...(lastId ? { 'last-event-id': lastId } : {}) },
      signal: controller.signal,
    });
    let text = '';
    res.body.on('data', (c: Buffer) => (text += c.toString('utf8')));
    res.body.on('error', () => undefined);
    return { res, text: () => text, close: () => controller.abort() };
  };
  const first = await open();
  t.equal(first.res.statusCode, 200);
  t.match(String(first.res.headers['content-type']), /^text\/event-stream/);
  await call('PUT', '/locations/one', headers, location);
  wake();
  await waitFor(() => first.text().includes('location.publish'), { timeoutMs: 5000, what: 'the first event' });
  const events = first
    .text()
    .split('\n\n')
    .filter((b) => b.includes('event: audit'));
  t.equal(events.length, 1, 'one event');
  const id = /^id: (\S+)$/m.exec(events[0]!)?.[1];
  t.ok(id, 'with an id to resume at');
  first.close();
  await call('PUT', '/locations/two', headers, location);
  const second = await open(id);
  await waitFor(() => second.text().includes('"name":"two"'), { timeoutMs: 5000, what: 'the missed event' });
  t.notOk(second.text().includes('"name":"one"'), 'resumed after what was seen');
  const bad = await request(`${base}/events/stream`, { headers: { 'last-event-id': 'forged' } });
  t.equal(bad.statusCode, 400, 'a forged cursor is refused before the stream opens');
  await bad.body.dump();
});

t.test('console roles come only from the administration values of the roles claim', async (t) => {
  const cfg = parseRelayConfig('{}', undefined).identity;
  const who = (claims: Record<string, unknown>) => identityFromClaims({ sub: 'u', ...claims }, cfg, Date.now());
  t.same(who({ roles: ['ProxyAdministrator', 'Staff'] }).roles, ['ProxyAdministrator'], 'other values are not kept');
  t.equal(consoleCaller(who({ roles: ['ProxyAdministrator'] }), cfg)?.role, 'admin');
  t.equal(consoleCaller(who({ roles: 'ProxyReader' }), cfg)?.role, 'reader', 'a single string is one value');
  t.equal(consoleCaller(who({ roles: ['ProxyReader', 'ProxyAdministrator'] }), cfg)?.role, 'admin');
  t.equal(consoleCaller(who({ roles: ['proxyadministrator'] }), cfg), undefined, 'case matters');
  t.equal(consoleCaller(who({ roles: [{ value: 'ProxyAdministrator' }] }), cfg), undefined, 'non-strings are dropped');
  t.equal(consoleCaller(who({ groups: ['ProxyAdministrator'] }), cfg), undefined, 'only the roles claim');
  t.equal(consoleCaller(who({}), cfg), undefined);
});

t.test('composition: the file wins, the rest stays', async (t) => {
  const { config } = await setup(t);
  const obj = (kind: ManagedObject['kind'], name: string, spec: Record<string, unknown>): ManagedObject => ({
    kind,
    name,
    spec,
    version: 1,
    createdAt: 0,
    updatedAt: 0,
    updatedBy: 'x',
  });
  const app = (name: string, host: string) =>
    obj('app', name, { externalUrl: `https://${host}/`, internalUrl: 'http://127.0.0.1:9/' });
  const { config: composed, excluded } = composeConfig(config, [
    app('wiki', 'other.localhost'),
    app('same-host', 'wiki.localhost'),
    app('fine', 'fine.localhost'),
    obj('location', 'lab', { cidrs: ['10.0.0.0/8'] }),
    obj('policy', 'needs-gone', {
      assignments: { users: { include: ['all'] }, apps: { include: ['same-host'] } },
      grant: { block: true },
    }),
    obj('policy', 'uses-lab', {
      assignments: { users: { include: ['all'] } },
      conditions: { locations: { include: ['lab'] } },
      grant: { block: true },
    }),
    obj('app', 'secret', { externalUrl: 'https://s.localhost/', internalUrl: 'http://x/', clientSecret: 'x' }),
    obj('connectorGroup', 'eu', {}),
  ]);
  t.same(
    composed.apps.map((a) => a.name),
    ['wiki', 'fine'],
    'the file app, then the API app that validates',
  );
  t.same(
    composed.access.policies.map((p) => p.name),
    ['uses-lab'],
  );
  t.same(composed.managed.map((m) => `${m.kind}:${m.name}`).sort(), ['app:fine', 'location:lab', 'policy:uses-lab']);
  t.same(excluded.map((e) => e.name).sort(), ['needs-gone', 'same-host', 'secret', 'wiki']);
  t.match(excluded.find((e) => e.name === 'wiki')?.problem, /file wins/);
  t.match(excluded.find((e) => e.name === 'needs-gone')?.problem, /same-host/);
  t.equal(composeConfig(composed, []).config.apps.length, 1, 'composing a composed config starts from the file');
});
