// HTTP/2 on the public listener, end to end: a node:http2 client through relay → connector →
// backend. ALPN picks h2 (HTTP/1.1 clients keep HTTP/1.1); GET, POST with and without a length,
// a large streamed download, a passthrough app and a signed-in app (bearer token, policy,
// sign-in redirect); pseudo-headers never reach the backend; refusals carry no
// connection-specific headers; the request log names the protocol.
import t from 'tap';
import { request } from 'undici';
import { Readable } from 'node:stream';
import { capturingLogger, startHarness } from './helpers/harness.js';
import { patternSha256, patternStream, startBackend, type EchoBody } from './helpers/backend.js';
import { closeSession, h2Request, h2Session, negotiated } from './helpers/h2-client.js';
import { ERR, RawH2 } from './helpers/h2-raw.js';
import { parseExposition } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait.js';

const MiB = 1024 * 1024;
const CONNECTION_SPECIFIC = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

t.test('HTTP/2 through relay, connector and backend', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const { log, lines } = capturingLogger();
  const h = await startHarness(t, {
    log,
    yaml: () => `apps:
  - { name: open, externalUrl: "https://open.test/", internalUrl: "${backend.origin}/", preauth: passthrough, maxBodyBytes: 10485760 }
  - { name: api, externalUrl: "https://api.test/", internalUrl: "${backend.origin}/", clientId: "urn:proxyctl:api", clientSecret: api-secret, assignment: any, identityHeaders: true }
namedLocations:
  - { name: office, cidrs: ["127.0.0.1/32"] }
policies:
  - name: api-office-only
    assignments: { users: { include: [all] }, apps: { include: [api] } }
    conditions: { locations: { include: [all], exclude: [office] } }
    grant: { block: true }
`,
  });
  h.idp.registerClient({
    clientId: 'urn:proxyctl:api',
    clientSecret: 'api-secret',
    redirectUris: [`https://api.test:${h.publicPort}/.proxyctl/callback`],
  });
  await h.addConnector();
  const ca = h.relay.ca.certPem;
  const open = h2Session({ ca, port: h.publicPort, host: 'open.test' });
  t.teardown(() => closeSession(open));
  const authority = `open.test:${h.publicPort}`;

  await t.test('ALPN: h2 when offered, HTTP/1.1 otherwise', async (t) => {
    const o = { ca, port: h.publicPort, host: 'open.test' };
    t.equal(await negotiated(o, ['h2', 'http/1.1']), 'h2');
    t.equal(await negotiated(o, ['http/1.1', 'h2']), 'h2', 'the server prefers h2');
    t.equal(await negotiated(o, ['http/1.1']), 'http/1.1');
    const r = await request(h.url('open.test', '/echo'), { dispatcher: h.client });
    const echo = (await r.body.json()) as EchoBody;
    t.equal(r.statusCode, 200, 'an HTTP/1.1 client is answered as before');
    t.equal(echo.url, '/echo');
    const m = parseExposition(await h.relay.metrics.registry.metrics());
    t.ok((m.value('proxyctl_relay_connections_total', { protocol: 'h2' }) ?? 0) >= 1, 'h2 connections counted');
    t.ok((m.value('proxyctl_relay_connections_total', { protocol: 'http/1.1' }) ?? 0) >= 1, 'HTTP/1.1 ones too');
  });

  await t.test('GET: :authority is the host; no pseudo-header reaches the backend', async (t) => {
    const r = await h2Request(open, { ':method': 'GET', ':path': '/echo?x=1', 'x-custom': 'yes' });
    t.equal(r.status, 200);
    const echo = JSON.parse(r.body.toString()) as EchoBody;
    t.equal(echo.method, 'GET');
    t.equal(echo.url, '/echo?x=1');
    t.equal(echo.headers['x-custom'], 'yes');
    t.equal(echo.headers['x-forwarded-host'], authority, 'the host comes from :authority');
    t.equal(echo.headers['x-forwarded-proto'], 'https');
    t.same(
      echo.rawHeaderNames.filter((n) => n.startsWith(':')),
      [],
      'no pseudo-header in what the backend received',
    );
    t.ok(typeof echo.headers['x-request-id'] === 'string', 'the relay names the request');
    for (const name of CONNECTION_SPECIFIC) t.notOk(name in r.headers, `no ${name} header`);
    const line = await waitFor(() =>
      lines.find((l) => l.msg === 'request' && l['request_id'] === echo.headers['x-request-id']),
    );
    t.equal(line?.['http_version'], '2.0', 'the request log names the protocol');
    t.equal(line?.['status'], 200);
  });

  await t.test('POST with a length, and streamed without one', async (t) => {
    const body = Buffer.alloc(300_000, 7);
    const a = await h2Request(
      open,
      { ':method': 'POST', ':path': '/upload', 'content-length': String(body.length) },
      body,
    );
    t.equal(a.status, 200);
    const ja = JSON.parse(a.body.toString()) as { length: number; contentLength: string | null };
    t.equal(ja.length, body.length);
    t.equal(ja.contentLength, String(body.length), 'the declared length travels on');

    const n = 3 * MiB + 17;
    const b = await h2Request(open, { ':method': 'POST', ':path': '/upload' }, patternStream(n));
    t.equal(b.status, 200);
    const jb = JSON.parse(b.body.toString()) as { length: number; sha256: string };
    t.equal(jb.length, n, 'a body without content-length arrives whole');
    t.equal(jb.sha256, patternSha256(n));
  });

  await t.test('a large streamed download', async (t) => {
    const n = 64 * MiB;
    const r = await h2Request(open, { ':method': 'GET', ':path': `/bytes?n=${n}` });
    t.equal(r.status, 200);
    t.equal(r.headers['content-length'], String(n));
    t.equal(r.body.length, n);
    const { createHash } = await import('node:crypto');
    t.equal(createHash('sha256').update(r.body).digest('hex'), patternSha256(n), 'every byte, in order');
  });

  await t.test('refusals: no connection-specific headers; a body over the limit ends only its stream', async (t) => {
    const big = await h2Request(
      open,
      { ':method': 'POST', ':path': '/upload', 'content-length': String(20 * MiB) },
      Readable.from([Buffer.alloc(64 * 1024)]),
    );
    t.equal(big.status, 413);
    for (const name of CONNECTION_SPECIFIC) t.notOk(name in big.headers, `no ${name} header on the 413`);
    t.equal(backend.hits('upload'), 2, 'the refused upload never reached the backend');
    const after = await h2Request(open, { ':method': 'GET', ':path': '/echo' });
    t.equal(after.status, 200, 'the session goes on');

    // localhost is on the relay-CA certificate, and no app is published there.
    const unknown = h2Session({ ca, port: h.publicPort, host: 'localhost' });
    t.teardown(() => closeSession(unknown));
    const nf = await h2Request(unknown, { ':method': 'GET', ':path': '/' });
    t.equal(nf.status, 404);

    const mismatch = await h2Request(open, {
      ':method': 'GET',
      ':path': '/echo',
      ':authority': authority,
      host: 'api.test',
    });
    t.equal(mismatch.status, 400, 'Host and :authority naming different hosts');
    const misdirected = await h2Request(open, { ':method': 'GET', ':path': '/echo', ':authority': 'api.test' });
    t.equal(misdirected.status, 421, 'an :authority other than the TLS server name');
  });

  await t.test('a signed-in app: bearer token, policy, sign-in redirect', async (t) => {
    const api = h2Session({ ca, port: h.publicPort, host: 'api.test' });
    t.teardown(() => closeSession(api));
    const now = Math.floor(Date.now() / 1000);
    const token = await h.idp.signToken(
      {
        iss: h.idp.issuer,
        aud: 'urn:proxyctl:api',
        sub: 'alice',
        email: 'alice@example.com',
        iat: now,
        exp: now + 300,
      },
      { typ: 'at+jwt' },
    );
    const ok = await h2Request(api, {
      ':method': 'GET',
      ':path': '/echo',
      authorization: `Bearer ${token}`,
      accept: 'application/json',
    });
    t.equal(ok.status, 200);
    const echo = JSON.parse(ok.body.toString()) as EchoBody;
    t.equal(echo.headers['x-proxyctl-user'], 'alice', 'identity headers from the token');
    t.notOk(echo.headers['authorization'], 'the bearer token is consumed by the relay');

    const none = await h2Request(api, { ':method': 'GET', ':path': '/echo', accept: 'application/json' });
    t.equal(none.status, 401);
    t.equal((JSON.parse(none.body.toString()) as { error: { code: string } }).error.code, 'ERR_SIGNIN_REQUIRED');

    const browser = await h2Request(api, { ':method': 'GET', ':path': '/page?a=1', accept: 'text/html' });
    t.equal(browser.status, 302, 'a browser is sent to sign in');
    const location = new URL(String(browser.headers['location']));
    t.equal(location.origin, h.idp.issuer, 'to the identity provider');
    t.equal(
      location.searchParams.get('redirect_uri'),
      `https://api.test:${h.publicPort}/.proxyctl/callback`,
      'with the callback on the host from :authority',
    );
    t.ok(browser.headers['set-cookie'], 'with its sign-in state cookie');

    const away = h2Session({ ca, port: h.publicPort, host: 'api.test', localAddress: '127.0.0.2' });
    t.teardown(() => closeSession(away));
    const denied = await h2Request(away, {
      ':method': 'GET',
      ':path': '/echo',
      authorization: `Bearer ${token}`,
      accept: 'application/json',
    });
    t.equal(denied.status, 403, 'the policy blocks a client outside the office');
    t.equal((JSON.parse(denied.body.toString()) as { error: { code: string } }).error.code, 'ERR_POLICY_DENIED');
    t.equal(backend.seen.filter((s) => s.headers['x-proxyctl-user']).length, 1, 'only the allowed call got through');
  });
});

t.test('drain over HTTP/2: GOAWAY, streams in flight finish', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: open, externalUrl: "https://open.test/", internalUrl: "${backend.origin}/", preauth: passthrough }
`,
  });
  await h.addConnector();
  const ca = h.relay.ca.certPem;
  const idle = await RawH2.connect({ port: h.publicPort, host: 'open.test', ca });
  t.teardown(() => idle.close());
  const busy = h2Session({ ca, port: h.publicPort, host: 'open.test' });
  t.teardown(() => closeSession(busy));
  const inFlight = h2Request(busy, { ':method': 'GET', ':path': '/slow?ms=1500' });
  await waitFor(() => backend.hits('slow') === 1, { what: 'the slow request at the backend' });
  let goaway = false;
  busy.once('goaway', () => (goaway = true));
  const closing = h.relay.close();
  await idle.ended(5000);
  t.equal(idle.goaway?.code, ERR.NO_ERROR, 'an idle session gets GOAWAY NO_ERROR and is closed');
  const r = await inFlight;
  t.equal(r.status, 200, 'the request in flight is answered in full');
  t.same(JSON.parse(r.body.toString()), { slept: 1500 });
  t.ok(goaway, 'the busy session was told GOAWAY too');
  for (const name of CONNECTION_SPECIFIC) t.notOk(name in r.headers, `no ${name} header`);
  await closing;
});
