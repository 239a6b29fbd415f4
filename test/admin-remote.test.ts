// RemoteAdminApi against a small node:http(s) server that speaks the contract: each
// operation becomes the request the route table says (hostile names encoded as one path
// segment, filters as a query string, If-Match for versions), refusals keep the relay's
// code, answers are bounded, and a bearer token never goes over plain http off loopback.
import t, { type Test } from 'tap';
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { ROUTES, type AdminApi, type Operation } from '../src/admin/api-types.js';
import { MAX_RESPONSE_BYTES, RemoteAdminApi, adminBaseUrl, encodeSegment } from '../src/admin/remote.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { isProxyctlError, type ProxyctlError } from '../src/errors.js';
import { tempDir } from './helpers/proc.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

type Handler = (req: Seen, res: ServerResponse) => void;

const json = (res: ServerResponse, status: number, value: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
};

/** A contract server: records every request and answers with `handler` (default: 200 {}, 204 for DELETE). */
async function contractServer(t: Test, make: (h: Handler) => Server = (h) => createHttp(wrap(h))) {
  const seen: Seen[] = [];
  let handler: Handler = (req, res) => (req.method === 'DELETE' ? res.writeHead(204).end() : json(res, 200, {}));
  const server = make((req, res) => {
    seen.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  return {
    seen,
    port,
    url: `http://127.0.0.1:${port}`,
    answer: (h: Handler) => {
      handler = h;
    },
  };
}

function wrap(h: Handler) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      h(
        { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') },
        res,
      ),
    );
  };
}

function client(t: Test, url: string, extra: Partial<ConstructorParameters<typeof RemoteAdminApi>[0]> = {}) {
  const api = new RemoteAdminApi({ url, token: 'tok-123', ...extra });
  t.teardown(() => api.close());
  return api;
}

async function refusal(p: Promise<unknown>): Promise<ProxyctlError> {
  try {
    await p;
  } catch (err) {
    if (isProxyctlError(err)) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

t.test('hostile names are one encoded path segment', async (t) => {
  const s = await contractServer(t);
  const api = client(t, s.url);
  const cases: [string, string][] = [
    ['wiki', '/api/v1/apps/wiki'],
    ['../etc/passwd', '/api/v1/apps/..%2Fetc%2Fpasswd'],
    ['..', '/api/v1/apps/%2E%2E'],
    ['.', '/api/v1/apps/%2E'],
    ['a%2Fb', '/api/v1/apps/a%252Fb'],
    ['%2e%2e', '/api/v1/apps/%252e%252e'],
    ['ünïcode-名前', `/api/v1/apps/${encodeURIComponent('ünïcode-名前')}`],
    ['a b?c=d#e', '/api/v1/apps/a%20b%3Fc%3Dd%23e'],
    ['x\r\nHost: evil', '/api/v1/apps/x%0D%0AHost%3A%20evil'],
    ['a/../../admin', '/api/v1/apps/a%2F..%2F..%2Fadmin'],
  ];
  for (const [name, path] of cases) {
    await api.getApp(name);
    t.equal(s.seen.at(-1)!.url, path, JSON.stringify(name));
    t.equal(s.seen.at(-1)!.method, 'GET');
  }
  await api.revokeConnector('../x');
  t.equal(s.seen.at(-1)!.url, '/api/v1/connectors/..%2Fx/revoke');
  t.equal(s.seen.at(-1)!.method, 'POST');
  await api.dismissRisk('alice@example.com/..');
  t.equal(s.seen.at(-1)!.url, '/api/v1/risk/users/alice%40example.com%2F../dismiss');
  const before = s.seen.length;
  t.equal((await refusal(api.getApp(''))).code, 'ERR_USAGE', 'an empty name is refused');
  t.equal(s.seen.length, before, 'and nothing is sent');
  t.equal(encodeSegment('..'), '%2E%2E');
});

t.test('query strings, JSON bodies, If-Match, bearer token, 204', async (t) => {
  const s = await contractServer(t);
  const api = client(t, `${s.url}/prefix/`);
  s.answer((_req, res) => json(res, 200, { items: [], next: null }));
  await api.signIns({ user: 'a&b=c', app: 'wiki', limit: 5, since: '24h', cursor: undefined });
  let r = s.seen.at(-1)!;
  t.equal(r.url, '/prefix/api/v1/signins?user=a%26b%3Dc&app=wiki&limit=5&since=24h', 'a path prefix is kept');
  t.equal(r.headers['authorization'], 'Bearer tok-123');
  t.equal(r.body, '', 'a GET has no body');
  await api.audit({});
  t.equal(s.seen.at(-1)!.url, '/prefix/api/v1/audit', 'no empty query string');
  await api.riskUsers({ all: true });
  t.equal(s.seen.at(-1)!.url, '/prefix/api/v1/risk/users?all=true');

  s.answer((_req, res) => json(res, 200, { name: 'wiki', version: 4 }));
  const spec = { name: 'wiki', externalUrl: 'https://wiki.example.com/', note: 'ünï "q"' };
  await api.updateApp('wiki', spec, 3);
  r = s.seen.at(-1)!;
  t.equal(r.method, 'PUT');
  t.equal(r.url, '/prefix/api/v1/apps/wiki');
  t.equal(r.headers['if-match'], '"3"', 'the version as a strong entity tag');
  t.equal(r.headers['content-type'], 'application/json');
  t.same(JSON.parse(r.body), spec);
  await api.putPolicy('p', { state: 'on' });
  t.equal(s.seen.at(-1)!.headers['if-match'], undefined, 'no version, no If-Match');
  t.equal((await refusal(api.updateApp('wiki', spec, -1))).code, 'ERR_USAGE');
  t.equal((await refusal(api.updateApp('wiki', spec, 1.5))).code, 'ERR_USAGE');

  s.answer((_req, res) => res.writeHead(204).end());
  t.equal(await api.removeApp('wiki', 7), undefined, '204: nothing');
  r = s.seen.at(-1)!;
  t.equal(r.method, 'DELETE');
  t.equal(r.headers['if-match'], '"7"');
  t.equal(r.body, '');
  await api.signIn(42);
  t.equal(s.seen.at(-1)!.url, '/prefix/api/v1/signins/42');
});

t.test('every route of the table is reachable through its method', async (t) => {
  const s = await contractServer(t);
  const api = client(t, s.url);
  const sample: Record<string, unknown> = { path: 'n-1', body: { x: 1 }, query: { limit: 2 }, ifMatch: 5 };
  for (const route of ROUTES) {
    const args = route.args.map((a) => sample[a]);
    const methods = api as unknown as Record<Operation, (...a: unknown[]) => Promise<unknown>>;
    await methods[route.op].call(api, ...args);
    const r = s.seen.at(-1)!;
    const [path, query] = r.url.split('?');
    t.equal(r.method, route.method, `${route.op}: method`);
    t.equal(path, `/api/v1${route.path.replace(/\{[^}]+\}/g, 'n-1')}`, `${route.op}: path`);
    t.equal(query, route.args.includes('query') ? 'limit=2' : undefined, `${route.op}: query`);
    t.same(
      r.body ? (JSON.parse(r.body) as unknown) : undefined,
      route.args.includes('body') ? sample['body'] : undefined,
      `${route.op}: body`,
    );
    t.equal(r.headers['if-match'], route.args.includes('ifMatch') ? '"5"' : undefined, `${route.op}: If-Match`);
  }
  // Compile-time: RemoteAdminApi is an AdminApi.
  const typed: AdminApi = api;
  t.ok(typed);
});

t.test("refusals keep the relay's code, status and issues", async (t) => {
  const s = await contractServer(t);
  const api = client(t, s.url);
  s.answer((_req, res) => json(res, 409, { error: { code: 'ERR_CONFLICT', message: 'app wiki already exists' } }));
  let e = await refusal(api.publishApp({ name: 'wiki' }));
  t.equal(e.code, 'ERR_CONFLICT');
  t.equal(e.status, 409);
  t.equal(e.message, 'app wiki already exists');

  const issues = [{ path: 'internalUrl', found: '"ftp://x"', expected: 'an http(s) URL' }];
  s.answer((_req, res) =>
    json(res, 422, { error: { code: 'ERR_CONFIG_INVALID', message: 'app wiki is not valid', issues } }),
  );
  e = await refusal(api.publishApp({ name: 'wiki' }));
  t.equal(e.code, 'ERR_CONFIG_INVALID');
  t.same(e.details?.['issues'], issues);
  t.match(e.message, /internalUrl: expected an http\(s\) URL, found "ftp:\/\/x"/, 'the fields are named');

  s.answer((_req, res) => json(res, 401, { error: { code: 'ERR_TOKEN_EXPIRED', message: 'the token expired' } }));
  e = await refusal(api.listApps());
  t.equal(e.code, 'ERR_TOKEN_EXPIRED');
  t.match(e.message, /run proxyctl login --relay http:\/\/127\.0\.0\.1:\d+/);

  s.answer((_req, res) => {
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end('<h1>Bad gateway</h1>');
  });
  e = await refusal(api.listApps());
  t.equal(e.code, 'ERR_RELAY_REFUSED', 'an HTML error page');
  t.equal(e.status, 502);

  s.answer((_req, res) => json(res, 403, { error: 'forbidden' }));
  t.equal((await refusal(api.listApps())).code, 'ERR_RELAY_REFUSED', 'an error body not in the contract');

  s.answer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html>login</html>');
  });
  e = await refusal(api.listApps());
  t.equal(e.code, 'ERR_RELAY_REFUSED', 'a 200 that is not JSON');
  t.match(e.message, /not JSON/);

  s.answer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"truncated": ');
  });
  t.equal((await refusal(api.listApps())).code, 'ERR_RELAY_REFUSED', 'broken JSON');

  s.answer((_req, res) => {
    res.writeHead(302, { location: 'https://login.example.com/' });
    res.end();
  });
  const before = s.seen.length;
  e = await refusal(api.listApps());
  t.equal(e.code, 'ERR_RELAY_REFUSED', 'a redirect is not followed');
  t.match(e.message, /redirect to https:\/\/login\.example\.com\//);
  t.equal(s.seen.length, before + 1, 'one request');
});

t.test('answers are bounded', async (t) => {
  const s = await contractServer(t);
  t.equal(MAX_RESPONSE_BYTES, 16 * 1024 * 1024);
  const small = client(t, s.url, { maxResponseBytes: 1024 });
  s.answer((_req, res) => {
    // Chunked: no length announced, the bound holds while reading.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`["${'x'.repeat(800)}",`);
    res.end(`"${'y'.repeat(800)}"]`);
  });
  t.equal((await refusal(small.listApps())).code, 'ERR_BODY_TOO_LARGE', 'chunked');
  s.answer((_req, res) => json(res, 200, ['z'.repeat(2000)]));
  t.equal((await refusal(small.listApps())).code, 'ERR_BODY_TOO_LARGE', 'content-length');
  s.answer((_req, res) => json(res, 200, ['z'.repeat(900)]));
  t.same(await small.listApps(), ['z'.repeat(900)], 'under the bound');

  const big = client(t, s.url);
  const chunk = Buffer.alloc(1024 * 1024, 0x61);
  s.answer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    for (let i = 0; i < 16; i++) res.write(chunk);
    res.end('!');
  });
  t.equal((await refusal(big.listApps())).code, 'ERR_BODY_TOO_LARGE', 'the default bound: 16 MiB');
});

t.test('a bearer token never goes over plain http off loopback', async (t) => {
  for (const url of [
    'http://relay.example.com/',
    'http://10.0.0.1:9443',
    'http://[2001:db8::1]:9443',
    'http://127.0.0.1.nip.io/',
    'http://0.0.0.0:9443',
    'ftp://127.0.0.1/',
    'https://user:pw@relay.example.com/',
    'https://relay.example.com/?x=1',
    'relay.example.com',
    '',
  ]) {
    let code: string | undefined;
    try {
      new RemoteAdminApi({ url, token: 't' });
    } catch (err) {
      code = (err as ProxyctlError).code;
    }
    t.equal(code, 'ERR_USAGE', `refused: ${url}`);
  }
  for (const url of [
    'https://relay.example.com',
    'http://127.0.0.1:9443',
    'http://127.1.2.3:9443',
    'http://[::1]:9443',
    'http://localhost:9443',
    'http://admin.localhost:9443',
  ])
    t.equal(adminBaseUrl(url).href.startsWith(url.replace(/\/$/, '')), true, `allowed: ${url}`);
  for (const token of ['', 'a b', 'tok\r\nX-Evil: 1'])
    t.throws(() => new RemoteAdminApi({ url: 'https://relay.example.com', token }), { code: 'ERR_TOKEN_INVALID' });
});

t.test('network and TLS failures are classified', async (t) => {
  const probe = createHttp();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const down = client(t, `http://127.0.0.1:${port}`);
  const e = await refusal(down.listApps());
  t.equal(e.code, 'ERR_RELAY_UNREACHABLE');
  t.match(e.message, /cannot reach the relay/);

  const dir = tempDir(t);
  const ca = await loadOrCreateCa(dir);
  const cert = await ca.issueServerCertificate(['127.0.0.1'], 86_400_000);
  const s = await contractServer(t, (h) => createHttps({ cert: cert.certPem, key: cert.keyPem }, wrap(h)));
  s.answer((_req, res) => json(res, 200, []));
  const untrusted = client(t, `https://127.0.0.1:${s.port}`);
  t.equal((await refusal(untrusted.listApps())).code, 'ERR_RELAY_UNTRUSTED', 'no --relay-ca');
  const pinned = client(t, `https://127.0.0.1:${s.port}`, { caPem: ca.certPem });
  t.same(await pinned.listApps(), [], 'with the relay CA');
  t.equal(s.seen.at(-1)!.headers['authorization'], 'Bearer tok-123');
});

t.test('login finds the admin API, or falls back to the connector API', async (t) => {
  const { identityInfo } = await import('../src/commands/login.js');
  const { relayAgent } = await import('../src/admin/remote.js');
  const agent = relayAgent(undefined);
  t.teardown(() => agent.close());
  const info = { issuer: 'https://login.example.com', cliClientId: 'proxyctl-cli', adminAudience: 'api://proxyctl' };
  const s = await contractServer(t);
  s.answer((req, res) =>
    req.url === '/api/v1/login-info' ? json(res, 200, info) : json(res, 404, { error: { code: 'ERR_NOT_FOUND' } }),
  );
  t.same(await identityInfo(s.url, agent), info, 'the admin API');
  t.same(
    s.seen.map((r) => r.url),
    ['/api/v1/login-info'],
  );
  s.answer((req, res) =>
    req.url === '/v1/identity' ? json(res, 200, info) : json(res, 404, { error: { code: 'ERR_NOT_FOUND' } }),
  );
  t.same(await identityInfo(`${s.url}/`, agent), info, 'the connector API');
  s.answer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html></html>');
  });
  await t.rejects(identityInfo(s.url, agent), { code: 'ERR_RELAY_REFUSED' }, 'neither');
  s.answer((_req, res) => json(res, 200, { issuer: 42 }));
  await t.rejects(identityInfo(s.url, agent), { code: 'ERR_RELAY_REFUSED' }, 'not an identity document');
});
