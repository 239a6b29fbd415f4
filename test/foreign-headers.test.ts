// Other proxies' identity and routing headers (oauth2-proxy, Pomerium, Teleport,
// path overrides…) sent by a client never reach a backend, in any spelling,
// unless the app opts a header back in; the relay's own headers can never be
// opted in. Also the plain identity headers' encoding.
import t from 'tap';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { foreignHeaderKey, isForeignProxyHeader } from '../src/net/foreign-headers.js';
import { headerValue } from '../src/relay/edge/request-path.js';
import { startHarness } from './helpers/harness.js';

const FOREIGN = [
  'X-Forwarded-User',
  'X-Forwarded-Email',
  'X-Forwarded-Groups',
  'X-Forwarded-Preferred-Username',
  'X-Forwarded-Access-Token',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
  'X-Auth-Request-Access-Token',
  'X-Auth-Request-Preferred-Username',
  'X-Pomerium-Jwt-Assertion',
  'X-Pomerium-Claim-Email',
  'X-Pomerium-Claim-Groups',
  'Teleport-Jwt-Assertion',
  'X-Original-URL',
  'X-Rewrite-URL',
  'X-Original-URI',
  'X-Forwarded-Uri',
  'X-Forwarded-Prefix',
  'X-Forwarded-Path',
  'X-Forwarded-Port',
  'X-Forwarded-Scheme',
  'X-Goog-Authenticated-User-Email',
  'X-Goog-Iap-Jwt-Assertion',
  'Cf-Access-Jwt-Assertion',
  'Cf-Access-Authenticated-User-Email',
  'X-Amzn-Oidc-Identity',
  'X-Amzn-Oidc-Data',
  'X-Ms-Client-Principal-Name',
  'X-Ms-Client-Principal',
  'X-Remote-User',
  'X-Webauth-User',
];

/** Every spelling a backend could fold back into the header's name. */
function spellings(name: string): string[] {
  const lower = name.toLowerCase();
  const upper = name.toUpperCase();
  const mixed = [...lower].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('');
  return [
    ...new Set([name, lower, upper, mixed, lower.replace(/-/g, '_'), upper.replace(/-/g, '_'), name.replace(/-/, '_')]),
  ];
}

t.test('the list: every spelling of every foreign header is recognised, ordinary headers are not', async (t) => {
  for (const name of FOREIGN) for (const s of spellings(name)) t.ok(isForeignProxyHeader(s), s);
  for (const ok of [
    'x-forwarded-for',
    'x-forwarded-proto',
    'x-forwarded-host',
    'x-request-id',
    'accept',
    'authorization',
    'x-custom',
    'x-user-agent',
    'x-forwarded',
  ]) {
    t.notOk(isForeignProxyHeader(ok), `${ok} is not another proxy's`);
  }
  t.equal(foreignHeaderKey('X_Forwarded_User'), 'x-forwarded-user');
});

t.test('config: forwardHeaders takes only foreign headers', async (t) => {
  const base = (list: string) =>
    `apps:\n  - { name: a, externalUrl: "https://a.test/", internalUrl: "http://127.0.0.1:1/", preauth: passthrough, forwardHeaders: ${list} }\n`;
  const c = parseRelayConfig(base('[X-Forwarded-User, x_original_url]'), undefined);
  t.same(c.apps[0]?.forwardHeaders, ['x-forwarded-user', 'x-original-url']);
  for (const bad of [
    'x-proxyctl-user',
    'X_Proxyctl_Email',
    'x-forwarded-for',
    'authorization',
    'cookie',
    'host',
    'x-request-id',
    'x-proxyctl-jwt-assertion',
  ]) {
    t.throws(
      () => parseRelayConfig(base(`[${bad}]`), undefined),
      { code: 'ERR_CONFIG_INVALID' },
      `${bad} cannot be opted in`,
    );
  }
});

t.test('identity header values are encoded one way only', async (t) => {
  const cases: [string, string][] = [
    ['carol@example.test', 'carol@example.test'],
    ['Domain staff', 'Domain%20staff'],
    ['contractors,staff', 'contractors%2Cstaff'],
    ['100%', '100%25'],
    ['Bücher', 'B%C3%BCcher'],
    ['a\r\nX-Injected: 1', 'a%0D%0AX-Injected:%201'],
    ['\t lead', '%09%20lead'],
    ['', ''],
  ];
  for (const [v, want] of cases) {
    t.equal(headerValue(v), want, JSON.stringify(v));
    t.equal(decodeURIComponent(headerValue(v)), v, `${JSON.stringify(v)} round-trips`);
    t.notOk(headerValue(v).includes(','), 'never a comma');
  }
  const groups = ['contractors,staff', 'Domain staff', 'admins'].map(headerValue).join(',');
  t.same(
    groups.split(',').map(decodeURIComponent),
    ['contractors,staff', 'Domain staff', 'admins'],
    'a list splits back into its names',
  );
});

t.test('foreign headers sent by a client do not reach the backend', async (t) => {
  const seen: IncomingHttpHeaders[] = [];
  const backend = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.end('ok');
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
  const b = `http://127.0.0.1:${(backend.address() as { port: number }).port}`;
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: plain, externalUrl: "https://plain.test/", internalUrl: "${b}/", preauth: passthrough }
  - { name: optin, externalUrl: "https://optin.test/", internalUrl: "${b}/", preauth: passthrough, forwardHeaders: [X-Forwarded-Prefix, x-auth-request-user] }
`,
  });
  await h.addConnector();
  const send = (host: string, headers: [string, string][]) =>
    new Promise<IncomingHttpHeaders>((resolve, reject) => {
      const before = seen.length;
      const req = httpsRequest({
        host: '127.0.0.1',
        port: h.publicPort,
        servername: host,
        ca: h.relay.ca.certPem,
        agent: false,
        path: '/',
        headers: [['Host', `${host}:${h.publicPort}`], ...headers].flat(),
      });
      req.on('error', reject);
      req.on('response', (res) => {
        res.resume();
        res.on('end', () =>
          seen.length > before
            ? resolve(seen[before]!)
            : reject(new Error(`no request reached the backend (${res.statusCode})`)),
        );
      });
      req.end();
    });
  const leaked = (got: IncomingHttpHeaders) => Object.keys(got).filter((k) => isForeignProxyHeader(k));

  for (const name of FOREIGN) {
    const all = spellings(name).map((s, i): [string, string] => [s, `spoofed-${i}`]);
    t.same(leaked(await send('plain.test', all)), [], `${name}: no spelling reaches the backend`);
  }
  // Duplicated, and named in Connection as well.
  const dup = await send('plain.test', [
    ['X-Forwarded-User', 'a'],
    ['X-Forwarded-User', 'b'],
    ['Connection', 'x-original-url'],
    ['X-Original-URL', '/admin'],
  ]);
  t.same(leaked(dup), [], 'duplicates and Connection-named copies too');

  const opted = await send('optin.test', [
    ['X-Forwarded-Prefix', '/base'],
    ['X_Auth_Request_User', 'u'],
    ['X-Forwarded-User', 'mallory'],
    ['X-Original-URL', '/admin'],
  ]);
  t.equal(opted['x-forwarded-prefix'], '/base', 'an opted-in header passes');
  t.equal(opted['x_auth_request_user'], 'u', 'in the spelling the client used');
  t.equal(opted['x-forwarded-user'], undefined, 'headers the app did not opt in to are still dropped');
  t.equal(opted['x-original-url'], undefined);
});
