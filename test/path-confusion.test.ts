// Regression for "a prefixed app's sign-in is skipped through the root app of the
// same host": a root app (passthrough) and prefixed apps (oidc) on one host and one
// backend, and every spelling of a path that a backend could read as another app's.
// Each row asserts the status, the code and the exact path the backend received.
import t from 'tap';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { startHarness } from './helpers/harness.js';

interface Row {
  host: string;
  path: string;
  status: number;
  /** The exact path the backend received, or null: nothing reached it. */
  backend: string | null;
  code?: string;
}

const AMBIGUOUS = { status: 400, backend: null, code: 'ERR_PATH_AMBIGUOUS' } as const;
const SIGN_IN = { status: 401, backend: null, code: 'ERR_SIGNIN_REQUIRED' } as const;

const rows: Row[] = [
  // The root app gets exactly the path it matched: no slash added or removed.
  { host: 'apps.test', path: '/', status: 200, backend: '/' },
  { host: 'apps.test', path: '/hello', status: 200, backend: '/hello' },
  { host: 'apps.test', path: '//hello', status: 200, backend: '//hello' },
  { host: 'apps.test', path: '/hello//world?q=//admin/', status: 200, backend: '/hello//world?q=//admin/' },
  { host: 'apps.test', path: '/hello%2fworld', status: 200, backend: '/hello%2fworld' },
  { host: 'apps.test', path: '/hello;jsessionid=1', status: 200, backend: '/hello;jsessionid=1' },
  { host: 'apps.test', path: '/ADMIN/secret', status: 200, backend: '/ADMIN/secret' },
  { host: 'apps.test', path: '/administrator', status: 200, backend: '/administrator' },
  { host: 'apps.test', path: '/%7Euser/', status: 200, backend: '/%7Euser/' },
  // The prefixed apps themselves ask for a sign-in.
  { host: 'apps.test', path: '/admin/secret', ...SIGN_IN },
  { host: 'apps.test', path: '/admin', ...SIGN_IN },
  { host: 'apps.test', path: '/admin//secret', ...SIGN_IN },
  { host: 'apps.test', path: '/api/v1/items', ...SIGN_IN },
  // Extra slashes in front of another app's prefix.
  { host: 'apps.test', path: '//admin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '///admin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '//admin', ...AMBIGUOUS },
  { host: 'apps.test', path: '/api//v1/items', ...AMBIGUOUS },
  { host: 'apps.test', path: '//api/v1/items', ...AMBIGUOUS },
  // Percent-encoded unreserved characters, once, twice, three times.
  { host: 'apps.test', path: '/%61dmin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%61%64%6D%69%6E/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/adm%69n', ...AMBIGUOUS },
  { host: 'apps.test', path: '/api/%76%31/items', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%2561dmin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%252561dmin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%25252525252561dmin/secret', ...AMBIGUOUS },
  // Encoded slashes.
  { host: 'apps.test', path: '/admin%2fsecret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/admin%2Fsecret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%2fadmin/', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%2Fadmin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/api%2fv1%2fitems', ...AMBIGUOUS },
  { host: 'apps.test', path: '/admin%252fsecret', ...AMBIGUOUS },
  // Encoded dot segments split by an encoded slash.
  { host: 'apps.test', path: '/x/..%2fadmin/', ...AMBIGUOUS },
  { host: 'apps.test', path: '/x/..%2Fadmin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/x/%2e%2e%2fadmin/', ...AMBIGUOUS },
  { host: 'apps.test', path: '/x/.%2e%2Fadmin/', ...AMBIGUOUS },
  { host: 'apps.test', path: '/x/y/..%2f..%2fadmin/', ...AMBIGUOUS },
  { host: 'apps.test', path: '/x%2f..%2fadmin/', ...AMBIGUOUS },
  // Plain dot segments are refused outright.
  { host: 'apps.test', path: '/x/../admin/', status: 400, backend: null, code: 'ERR_BAD_REQUEST' },
  { host: 'apps.test', path: '/x/%2e%2e/admin/', status: 400, backend: null, code: 'ERR_BAD_REQUEST' },
  // Backslashes, raw or encoded.
  { host: 'apps.test', path: '/\\admin/secret', status: 400, backend: null, code: 'ERR_BAD_REQUEST' },
  { host: 'apps.test', path: '/%5cadmin/secret', status: 400, backend: null, code: 'ERR_BAD_REQUEST' },
  // ;path parameters in front of another app's prefix.
  { host: 'apps.test', path: '/admin;x=1/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/admin;/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/;/admin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/;x/admin/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/api;v=2/v1/items', ...AMBIGUOUS },
  { host: 'apps.test', path: '/admin%3bx/secret', ...AMBIGUOUS },
  // NUL anywhere in the path.
  { host: 'apps.test', path: '/admin%00/secret', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%00/admin/', ...AMBIGUOUS },
  { host: 'apps.test', path: '/hello%00', ...AMBIGUOUS },
  { host: 'apps.test', path: '/hello%2500', ...AMBIGUOUS },
  // Relay endpoints in disguise are not forwarded either.
  { host: 'apps.test', path: '//.proxyctl/me', ...AMBIGUOUS },
  { host: 'apps.test', path: '/%2eproxyctl/me', ...AMBIGUOUS },
  { host: 'apps.test', path: '/.proxyctl;x/me', ...AMBIGUOUS },
  { host: 'apps.test', path: '//.well-known/proxyctl/jwks.json', ...AMBIGUOUS },

  // A backend that says it is case-insensitive (and reads names as Windows does).
  { host: 'win.test', path: '/Admin/x', ...SIGN_IN },
  { host: 'win.test', path: '/other/X', status: 200, backend: '/other/X' },
  { host: 'win.test', path: '/admin/x', ...AMBIGUOUS },
  { host: 'win.test', path: '/ADMIN/x', ...AMBIGUOUS },
  { host: 'win.test', path: '/aDmIn', ...AMBIGUOUS },
  { host: 'win.test', path: '/Admin./x', ...AMBIGUOUS },
  { host: 'win.test', path: '/Admin%20/x', ...AMBIGUOUS },
  { host: 'win.test', path: '/%41dmin/x', ...AMBIGUOUS },
  { host: 'win.test', path: '/.PROXYCTL/me', ...AMBIGUOUS },

  // A prefixed app on an internal prefix: the backend path stays under that prefix.
  { host: 'nested.test', path: '/app/x', status: 200, backend: '/inner/x' },
  { host: 'nested.test', path: '/app', status: 200, backend: '/inner/' },
  { host: 'nested.test', path: '/app//x', status: 200, backend: '/inner//x' },
  { host: 'nested.test', path: '/app/x%2fy', status: 200, backend: '/inner/x%2fy' },
  { host: 'nested.test', path: '/app/admin/x', ...SIGN_IN },
  { host: 'nested.test', path: '/app//admin/x', ...AMBIGUOUS },
  { host: 'nested.test', path: '/app/%61dmin/x', ...AMBIGUOUS },
  { host: 'nested.test', path: '/app/..%2fsecret', ...AMBIGUOUS },
  { host: 'nested.test', path: '/app/x/..%2f..%2fsecret', ...AMBIGUOUS },
  { host: 'nested.test', path: '/app%2f..%2fsecret', status: 404, backend: null, code: 'ERR_APP_NOT_FOUND' },
];

t.test('path spellings cannot reach another app through the root app', async (t) => {
  const seen: string[] = [];
  const backend = createServer((req, res) => {
    seen.push(req.url ?? '');
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
  const b = `http://127.0.0.1:${(backend.address() as { port: number }).port}`;
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: site, externalUrl: "https://apps.test/", internalUrl: "${b}/", preauth: passthrough }
  - { name: admin, externalUrl: "https://apps.test/admin/", internalUrl: "${b}/admin/", assignedGroups: [admins] }
  - { name: api, externalUrl: "https://apps.test/api/v1/", internalUrl: "${b}/api/v1/", assignment: any }
  - { name: win, externalUrl: "https://win.test/", internalUrl: "${b}/", preauth: passthrough, caseInsensitivePaths: true }
  - { name: winadmin, externalUrl: "https://win.test/Admin/", internalUrl: "${b}/Admin/", assignment: any }
  - { name: outer, externalUrl: "https://nested.test/app/", internalUrl: "${b}/inner/", preauth: passthrough }
  - { name: inner, externalUrl: "https://nested.test/app/admin/", internalUrl: "${b}/inner/admin/", assignment: any }
`,
  });
  await h.addConnector();
  const ca = h.relay.ca.certPem;
  const get = (host: string, path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest({
        host: '127.0.0.1',
        port: h.publicPort,
        servername: host,
        ca,
        agent: false,
        path,
        headers: { host: `${host}:${h.publicPort}`, accept: 'application/json' },
      });
      req.on('error', reject);
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.end();
    });

  for (const row of rows) {
    const before = seen.length;
    const r = await get(row.host, row.path);
    const reached = seen.slice(before);
    const name = `${row.host}${row.path}`;
    t.equal(r.status, row.status, `${name}: status`);
    t.same(
      reached,
      row.backend === null ? [] : [row.backend],
      `${name}: backend received ${JSON.stringify(row.backend)}`,
    );
    if (row.code) t.match(r.body, `"code":"${row.code}"`, `${name}: ${row.code}`);
  }
  t.ok(rows.length >= 70, `${rows.length} spellings`);
});
