// The administration console as built: index.html references hashed assets that
// exist, nothing in it reaches outside the relay (machines have no internet), it
// stays within its size budget, and a rebuild drops stale assets. And its API
// client as the browser uses it, against a real HTTP server: routes from the
// ROUTES table, the CSRF token on unsafe methods, If-Match, refusals with their
// issues, a lost session, and hostile path segments that must never be sent.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { createServer, type IncomingMessage } from 'node:http';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ROUTES } from '../src/admin/api-types.js';
import { ApiError, createClient, queryString } from '../console/src/api.js';
import { tempDir } from './helpers/proc.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/** Budgets for the minified assets (raw and gzip bytes); the first build was 81 KB JS (25 KB gzip), 8 KB CSS. */
const BUDGET = { js: 120_000, jsGzip: 40_000, css: 20_000, html: 2_000 };

/**
 * URLs allowed in the bundle: XML namespace names (identifiers Preact compares, never
 * fetched) and RFC 2606 example hosts in form placeholders.
 */
const ALLOWED_URL = [
  /^http:\/\/www\.w3\.org\/(2000\/svg|1999\/xhtml|1999\/xlink|1998\/Math\/MathML|XML\/1998\/namespace)$/,
  /^https?:\/\/([a-z0-9-]+\.)*example\.com(:\d+)?\/?$/,
];

async function build(out: string): Promise<void> {
  await run(process.execPath, [path.join(ROOT, 'scripts/build-console.mjs'), '--out', out], { cwd: ROOT });
}

t.test('the build: hashed assets, no external URL, within budget', async (t) => {
  const out = tempDir(t, 'proxyctl-console-');
  await build(out);
  const html = readFileSync(path.join(out, 'index.html'), 'utf8');
  const refs = [...html.matchAll(/\b(?:href|src)="([^"]+)"/g)].map((m) => m[1]!).filter((r) => r !== 'data:,');
  t.same(refs.length, 2, 'index.html references a stylesheet and a script');
  for (const ref of refs) {
    t.match(ref, /^\/assets\/app-[A-Z0-9]{8,}\.(js|css)$/, `${ref} is a hashed asset under /assets/`);
    t.ok(existsSync(path.join(out, ref)), `${ref} exists`);
  }
  t.match(html, /<script type="module" src="\/assets\/app-[A-Z0-9]+\.js"><\/script>/, 'the script is a module');
  t.notMatch(html, /<script>|<style>|\son[a-z]+=/i, 'no inline script, style or handler (a strict CSP holds)');

  const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as Record<string, string>;
  t.same(Object.keys(manifest).sort(), ['app.css', 'app.js']);
  t.same(
    Object.values(manifest)
      .map((p) => `/${p}`)
      .sort(),
    [...refs].sort(),
    'the manifest names the assets index.html references',
  );
  t.same(
    readdirSync(path.join(out, 'assets')).sort(),
    Object.values(manifest)
      .map((p) => path.basename(p))
      .sort(),
  );

  const js = readFileSync(path.join(out, manifest['app.js']!));
  const css = readFileSync(path.join(out, manifest['app.css']!));
  for (const [name, text] of [
    ['index.html', html],
    ['app.js', js.toString('utf8')],
    ['app.css', css.toString('utf8')],
  ] as const) {
    const urls = [...text.matchAll(/https?:\/\/[^\s"'`)<>\\]*/g)].map((m) => m[0]);
    t.same(
      urls.filter((u) => !ALLOWED_URL.some((re) => re.test(u))),
      [],
      `${name}: no URL outside the relay`,
    );
    t.notMatch(text, /["'(]\/\/[a-z0-9]/i, `${name}: no protocol-relative URL`);
    t.notMatch(text, /\/\/cdn|@import|url\(\s*["']?(https?:)?\/\//i, `${name}: no CDN, no remote import`);
  }
  t.notMatch(js.toString('utf8'), /\beval\(|new Function\(/, 'no eval: script-src needs no unsafe-eval');

  t.ok(js.length <= BUDGET.js, `app.js ${js.length} B within ${BUDGET.js} B`);
  const gz = gzipSync(js).length;
  t.ok(gz <= BUDGET.jsGzip, `app.js ${gz} B gzipped within ${BUDGET.jsGzip} B`);
  t.ok(css.length <= BUDGET.css, `app.css ${css.length} B within ${BUDGET.css} B`);
  t.ok(html.length <= BUDGET.html, `index.html ${html.length} B within ${BUDGET.html} B`);
});

t.test('a rebuild: the same names for the same sources, stale assets gone', async (t) => {
  const out = tempDir(t, 'proxyctl-console-');
  await build(out);
  const first = readFileSync(path.join(out, 'manifest.json'), 'utf8');
  writeFileSync(path.join(out, 'assets', 'app-STALE000.js'), 'old');
  await build(out);
  t.equal(readFileSync(path.join(out, 'manifest.json'), 'utf8'), first, 'content hashes are stable');
  t.notOk(existsSync(path.join(out, 'assets', 'app-STALE000.js')), 'an asset of an earlier build is removed');
});

t.test('the sources render server text as text only', async (t) => {
  const dir = path.join(ROOT, 'console/src');
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.tsx?$/.test(f));
  t.ok(files.length > 5, 'console sources found');
  for (const f of files) {
    const src = readFileSync(path.join(dir, f), 'utf8');
    t.notMatch(
      src,
      /dangerouslySetInnerHTML|innerHTML|outerHTML|insertAdjacentHTML|document\.write/,
      `${f}: no HTML sink`,
    );
  }
});

// ---- the API client ----

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

async function apiServer(
  t: Test,
  answer: (req: Seen) => { status: number; body?: string; headers?: Record<string, string> },
) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(s);
      const a = answer(s);
      res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
      res.end(a.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { seen, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

const json = (status: number, value: unknown) => ({ status, body: JSON.stringify(value) });

t.test('client: routes, CSRF on unsafe methods, If-Match, query strings', async (t) => {
  const { seen, origin } = await apiServer(t, (req) => {
    if (req.url === '/api/v1/me')
      return json(200, { caller: { subject: 'a', name: 'A', role: 'admin', via: 'session' }, csrfToken: 'tok-1' });
    if (req.method === 'DELETE') return { status: 204 };
    return json(200, { ok: req.url });
  });
  const api = createClient({ origin });
  for (const route of ROUTES) t.equal(typeof api[route.op], 'function', `client has ${route.op}`);

  const me = await api.me();
  t.equal(me.caller.role, 'admin');
  t.equal(api.csrfToken, 'tok-1');

  await api.listApps();
  let last = seen.at(-1)!;
  t.same([last.method, last.url], ['GET', '/api/v1/apps']);
  t.equal(last.headers['x-proxyctl-csrf'], undefined, 'a GET carries no token');

  await api.publishApp({ name: 'web' });
  last = seen.at(-1)!;
  t.same([last.method, last.url], ['POST', '/api/v1/apps']);
  t.equal(last.headers['x-proxyctl-csrf'], 'tok-1');
  t.equal(last.headers['content-type'], 'application/json');
  t.same(JSON.parse(last.body), { name: 'web' });

  await api.updateApp('a b/c', { name: 'a b/c' }, 3);
  last = seen.at(-1)!;
  t.same([last.method, last.url], ['PUT', '/api/v1/apps/a%20b%2Fc'], 'a name is one encoded segment');
  t.equal(last.headers['if-match'], '"3"', 'the version goes as If-Match');

  t.equal(await api.removeApp('web', 4), undefined, '204 resolves to nothing');
  last = seen.at(-1)!;
  t.same([last.method, last.url, last.headers['if-match']], ['DELETE', '/api/v1/apps/web', '"4"']);
  t.equal(last.headers['x-proxyctl-csrf'], 'tok-1');

  await api.removeApp('web');
  t.equal(seen.at(-1)!.headers['if-match'], undefined, 'no version, no If-Match');

  await api.revokeConnector('c-1');
  last = seen.at(-1)!;
  t.same([last.method, last.url, last.body], ['POST', '/api/v1/connectors/c-1/revoke', '{}']);
  t.equal(last.headers['content-type'], 'application/json', 'a POST without input still sends JSON');

  await api.whatIf({ app: 'web', user: 'u', draftPolicies: [{ name: 'p' }] });
  last = seen.at(-1)!;
  t.same([last.method, last.url], ['POST', '/api/v1/policies/what-if']);
  t.equal(last.headers['x-proxyctl-csrf'], 'tok-1', 'what-if (read-only, but a POST) carries the token');

  await api.signIns({ user: 'al ice&x=1', limit: 10, result: undefined, cursor: '' });
  t.equal(
    seen.at(-1)!.url,
    '/api/v1/signins?user=al+ice%26x%3D1&limit=10',
    'query values are encoded, empty ones left out',
  );
  await api.riskUsers({ all: true });
  t.equal(seen.at(-1)!.url, '/api/v1/risk/users?all=true');
  await api.riskUsers({ all: false });
  t.equal(seen.at(-1)!.url, '/api/v1/risk/users');
  await api.signIn(42);
  t.equal(seen.at(-1)!.url, '/api/v1/signins/42');

  t.equal(queryString({ a: { b: 1 } }), '?a=%7B%22b%22%3A1%7D', 'an object value goes as JSON, not [object Object]');
});

t.test('client: refusals become ApiError with their issues', async (t) => {
  const { origin } = await apiServer(t, (req) => {
    if (req.url === '/api/v1/apps')
      return json(422, {
        error: {
          code: 'ERR_CONFIG_INVALID',
          message: 'The app is not valid',
          issues: [
            { path: 'internalUrl', found: '"ftp://x"', expected: 'an http or https URL' },
            { path: 42, found: 'x', expected: 'y' },
            'junk',
            null,
          ],
        },
      });
    if (req.url === '/api/v1/policies')
      return { status: 502, body: '<html>bad gateway</html>', headers: { 'content-type': 'text/html' } };
    if (req.url === '/api/v1/groups') return json(409, { error: 'not an object' });
    if (req.url === '/api/v1/locations') return { status: 200, body: 'not json' };
    return json(404, { error: { code: 'ERR_NOT_FOUND', message: 'no such thing' } });
  });
  const api = createClient({ origin });

  const invalid = await api.publishApp({ name: 'x' }).catch((e: unknown) => e);
  t.type(invalid, ApiError);
  t.match(invalid, { status: 422, code: 'ERR_CONFIG_INVALID', message: 'The app is not valid' });
  t.same(
    (invalid as ApiError).issues,
    [{ path: 'internalUrl', found: '"ftp://x"', expected: 'an http or https URL' }],
    'malformed issues are dropped',
  );

  t.match(
    await api.listPolicies().catch((e: unknown) => e),
    { status: 502, code: 'ERR_HTTP_502' },
    'an HTML error page',
  );
  t.match(
    await api.listGroups().catch((e: unknown) => e),
    { status: 409, code: 'ERR_HTTP_409' },
    'a body without error.code',
  );
  t.match(await api.listLocations().catch((e: unknown) => e), { code: 'ERR_BAD_RESPONSE' }, 'a 200 that is not JSON');
  t.match(await api.getApp('nope').catch((e: unknown) => e), { status: 404, code: 'ERR_NOT_FOUND' });
});

t.test('client: a lost session (401, or a redirect to sign in) is reported once per call', async (t) => {
  const { origin } = await apiServer(t, (req) =>
    req.url === '/api/v1/apps'
      ? json(401, { error: { code: 'ERR_UNAUTHENTICATED', message: 'sign in' } })
      : { status: 302, headers: { location: '/.proxyctl/login' } },
  );
  const api = createClient({ origin });
  let lost = 0;
  api.onUnauthenticated = () => lost++;
  t.match(await api.listApps().catch((e: unknown) => e), { status: 401, code: 'ERR_UNAUTHENTICATED' });
  t.equal(lost, 1);
  t.match(
    await api.overview().catch((e: unknown) => e),
    { status: 401, code: 'ERR_UNAUTHENTICATED' },
    'a redirect is not followed',
  );
  t.equal(lost, 2);
});

t.test('client: hostile path segments are refused before any request', async (t) => {
  const { seen, origin } = await apiServer(t, () => json(200, {}));
  const api = createClient({ origin });
  for (const name of ['', '.', '..']) {
    t.match(
      await api.getApp(name).catch((e: unknown) => e),
      { status: 0, code: 'ERR_BAD_REQUEST' },
      JSON.stringify(name),
    );
    t.match(await api.removeUser(name).catch((e: unknown) => e), { status: 0, code: 'ERR_BAD_REQUEST' });
  }
  t.equal(seen.length, 0, 'nothing was sent');
  for (const [name, url] of [
    ['../users', '/api/v1/apps/..%2Fusers'],
    ['%2e%2e', '/api/v1/apps/%252e%252e'],
    ['a?b#c', '/api/v1/apps/a%3Fb%23c'],
    ['...', '/api/v1/apps/...'],
  ] as const) {
    await api.getApp(name);
    t.equal(seen.at(-1)!.url, url, `${name} stays one segment under /apps`);
  }
});
