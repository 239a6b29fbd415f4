// Every refusal the relay or its embedded provider gives, whatever renders it,
// carries one set of security headers: CSP with frame-ancestors 'none',
// X-Frame-Options DENY, nosniff, Referrer-Policy and Cache-Control no-store.
// Pages and JSON over HTTP, raw-socket answers (parser errors, refused upgrades
// on the public listener and on the connector API), connector API errors,
// identity-provider errors and the sign-out pages.
import t from 'tap';
import { connect as tlsConnect } from 'node:tls';
import { Agent, request } from 'undici';
import { startBackend } from './helpers/backend.js';
import { startHarness } from './helpers/harness.js';

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Raw bytes on a TLS connection; the relay answers and closes. */
function raw(port: number, ca: string, servername: string, payload: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      ca,
      servername,
      ALPNProtocols: ['http/1.1'],
      checkServerIdentity: () => undefined,
    });
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer: ${buf.slice(0, 200)}`));
    }, 5000);
    s.once('secureConnect', () => s.write(payload));
    s.on('data', (d: Buffer) => (buf += d.toString('latin1')));
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      const end = buf.indexOf('\r\n\r\n');
      const lines = buf.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0),
        headers,
        body: buf.slice(end + 4),
      });
    });
  });
}

async function http(
  url: string,
  dispatcher: Agent,
  headers: Record<string, string> = {},
  method: 'GET' | 'POST' = 'GET',
): Promise<Answer> {
  const r = await request(url, { dispatcher, headers, method });
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) flat[k] = Array.isArray(v) ? v.join(', ') : String(v);
  return { status: r.statusCode, headers: flat, body: await r.body.text() };
}

t.test('one set of security headers on every refusal', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const h = await startHarness(t, {
    embedded: true,
    yaml: () => `apps:
  - { name: web, externalUrl: "https://web.test/", internalUrl: "${backend.origin}/", assignment: any }
  - { name: lonely, externalUrl: "https://lonely.test/", internalUrl: "${backend.origin}/", preauth: passthrough, connectorGroup: nobody }
`,
  });
  await h.addConnector();
  const port = h.publicPort;
  const ca = h.relay.ca.certPem;
  const api = new Agent({ connect: { ca } });
  t.teardown(() => api.close());
  const idp = `login.localhost:${port}`;

  const cases: [string, () => Promise<Answer>, number][] = [
    ['relay page: no app at this host (HTML)', () => http(h.url('localhost', '/'), h.client as Agent), 404],
    [
      'relay JSON: sign-in required',
      () => http(h.url('web.test', '/x'), h.client as Agent, { accept: 'application/json' }),
      401,
    ],
    [
      'relay page: relay-owned path that does not exist',
      () => http(h.url('web.test', '/.proxyctl/nope'), h.client as Agent),
      404,
    ],
    ['relay page: no connector for the app (the queue)', () => http(h.url('lonely.test', '/'), h.client as Agent), 503],
    [
      'relay page: sign-out by GET is a confirmation page',
      () => http(h.url('web.test', '/.proxyctl/logout'), h.client as Agent),
      200,
    ],
    ['relay page: the signed-out page', () => http(h.url('web.test', '/.proxyctl/signed-out'), h.client as Agent), 200],
    [
      'relay page: cross-site sign-out refused',
      () => http(h.url('web.test', '/.proxyctl/logout'), h.client as Agent, { origin: 'https://evil.test' }, 'POST'),
      403,
    ],
    [
      'raw: the HTTP parser refuses the request',
      () => raw(port, ca, 'web.test', `GET / HTTP/1.1\r\nHost: web.test\r\nX-Folded: a\r\n b\r\n\r\n`),
      400,
    ],
    [
      'raw: the HTTP parser refuses oversized headers',
      () => raw(port, ca, 'web.test', `GET / HTTP/1.1\r\nHost: web.test\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`),
      431,
    ],
    [
      'raw: a WebSocket upgrade without a session',
      () =>
        raw(
          port,
          ca,
          'web.test',
          `GET /ws HTTP/1.1\r\nHost: web.test:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
        ),
      401,
    ],
    [
      'raw: an upgrade that is not WebSocket',
      () =>
        raw(
          port,
          ca,
          'web.test',
          `GET / HTTP/1.1\r\nHost: web.test:${port}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
        ),
      400,
    ],
    ['connector API: no such endpoint (JSON)', () => http(`${h.apiUrl}/nope`, api), 404],
    [
      'connector API raw: channel without a certificate',
      () =>
        raw(
          h.relay.connectorApiAddress().port,
          ca,
          'localhost',
          `GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
        ),
      404,
    ],
    [
      'identity provider: an authorization request from an unknown client',
      () => http(`https://${idp}/auth?client_id=nobody&response_type=code&scope=openid`, h.client as Agent),
      400,
    ],
    [
      'identity provider: an expired sign-in interaction',
      () => http(`https://${idp}/interaction/abc`, h.client as Agent),
      400,
    ],
  ];
  for (const [what, run, status] of cases) {
    const r = await run();
    t.equal(r.status, status, `${what}: status ${status} (${r.body.slice(0, 120)})`);
    const csp = r.headers['content-security-policy'] ?? '';
    t.match(csp, /(^|;\s*)frame-ancestors 'none'(;|$)/, `${what}: CSP frame-ancestors 'none'`);
    t.match(csp, /(^|;\s*)default-src 'none'(;|$)/, `${what}: CSP default-src 'none'`);
    t.equal(r.headers['x-frame-options'], 'DENY', `${what}: X-Frame-Options`);
    t.equal(r.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
    t.equal(r.headers['referrer-policy'], 'same-origin', `${what}: Referrer-Policy`);
    t.equal(r.headers['cache-control'], 'no-store', `${what}: Cache-Control no-store`);
    if (r.status >= 400) {
      t.match(r.headers['x-request-id'], /^[0-9a-f-]{36}$/, `${what}: a request id`);
      t.ok(r.body.includes(r.headers['x-request-id'] ?? '-'), `${what}: the body quotes the request id`);
    }
  }
});
