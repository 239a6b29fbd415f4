// Every request is authorized against the configuration in force (issue 17): a
// reload that removes a user's assignment, adds a blocking policy or requires
// MFA takes effect on the next request (cookie session, bearer token and
// WebSocket upgrade alike), naming why; restoring the config restores access.
// The decision cache is per session (or token) and per generation. A reload
// that fails part-way leaves the old state serving, and a request that started
// before a reload finishes under the state it began with.
import t from 'tap';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { request } from 'undici';
import { startBackend } from './helpers/backend.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { startHarness } from './helpers/harness.js';
import { waitFor } from './helpers/wait.js';

t.test('authorization on every request, under the configuration in force', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const app = (extra = '') =>
    `  - { name: web, externalUrl: "https://web.test/", internalUrl: "${backend.origin}/", clientId: "urn:web", clientSecret: s3cret, assignedUsers: [alice, bob]${extra} }\n`;
  const base = `apps:\n${app()}`;
  const h = await startHarness(t, { yaml: () => base });
  const origin = `https://web.test:${h.publicPort}`;
  h.idp.registerClient({
    clientId: 'urn:web',
    clientSecret: 's3cret',
    redirectUris: [`${origin}/.proxyctl/callback`],
    postLogoutRedirectUris: [`${origin}/.proxyctl/signed-out`],
  });
  h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: ['staff'] });
  h.idp.setUser('bob', { email: 'bob@example.com', name: 'Bob', groups: ['staff'] });
  await h.addConnector();

  const alice = new BrowserSim(h.client);
  t.equal((await alice.signIn(h.url('web.test', '/echo'), 'alice')).status, 200, 'alice signs in');
  const bob = new BrowserSim(h.client);
  t.equal((await bob.signIn(h.url('web.test', '/echo'), 'bob')).status, 200, 'bob signs in');
  const aliceCookie = alice.jar.header(`web.test:${h.publicPort}`)!;
  const bobCookie = bob.jar.header(`web.test:${h.publicPort}`)!;
  const now = Math.floor(Date.now() / 1000);
  const aliceToken = await h.idp.signToken(
    { iss: h.idp.issuer, aud: 'urn:web', sub: 'alice', iat: now, exp: now + 600 },
    { typ: 'at+jwt' },
  );

  const json = async (headers: Record<string, string>) => {
    const r = await request(h.url('web.test', '/echo'), {
      dispatcher: h.client,
      headers: { accept: 'application/json', ...headers },
    });
    const body = (await r.body.json()) as {
      error?: { code: string; message: string; policy?: string; reason?: string };
    };
    return { status: r.statusCode, error: body.error };
  };
  const page = async (cookie: string) => {
    const r = await request(h.url('web.test', '/echo'), {
      dispatcher: h.client,
      headers: { cookie, accept: 'text/html' },
    });
    return { status: r.statusCode, location: r.headers['location'], body: await r.body.text() };
  };
  const upgrade = (cookie: string) =>
    new Promise<number>((resolve, reject) => {
      const s = tlsConnect({
        host: '127.0.0.1',
        port: h.publicPort,
        ca: h.relay.ca.certPem,
        servername: 'web.test',
        ALPNProtocols: ['http/1.1'],
      });
      let buf = '';
      s.once('secureConnect', () =>
        s.write(
          `GET /ws HTTP/1.1\r\nHost: web.test:${h.publicPort}\r\nCookie: ${cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
            'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        ),
      );
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
        if (m && buf.includes('\r\n\r\n')) {
          s.destroy();
          resolve(Number(m[1]));
        }
      });
      s.on('error', reject);
    });

  t.equal((await json({ cookie: aliceCookie })).status, 200, 'cookie: allowed');
  t.equal((await json({ authorization: `Bearer ${aliceToken}` })).status, 200, 'bearer: allowed');
  t.equal(await upgrade(aliceCookie), 101, 'upgrade: allowed');
  const cachedBefore = h.relay.currentState().authorizer.cached;
  t.ok(cachedBefore >= 3, `decisions are cached per session and token (${cachedBefore})`);

  await t.test('an assignment removed by a reload refuses the next request, naming why', async (t) => {
    const generation = h.relay.generation;
    await h.reload(`apps:\n${app().replace('[alice, bob]', '[bob]')}`);
    t.equal(h.relay.generation, generation + 1, 'a new generation');
    t.equal(
      h.relay.currentState().authorizer.cached,
      0,
      'with an empty decision cache: nothing leaks across generations',
    );
    const cookie = await json({ cookie: aliceCookie });
    t.equal(cookie.status, 403);
    t.equal(cookie.error?.code, 'ERR_NOT_ASSIGNED');
    t.equal(cookie.error?.reason, 'not assigned');
    t.match(cookie.error?.message, /not assigned to web/);
    const html = await page(aliceCookie);
    t.equal(html.status, 403);
    t.match(html.body, /not assigned to web/, 'the page names why');
    t.match(html.body, /authorization: not assigned/, 'and the step');
    const bearer = await json({ authorization: `Bearer ${aliceToken}` });
    t.equal(bearer.status, 403, 'bearer: refused too');
    t.equal(bearer.error?.code, 'ERR_NOT_ASSIGNED');
    t.equal(await upgrade(aliceCookie), 403, 'upgrade: refused too');
    t.equal((await json({ cookie: bobCookie })).status, 200, "bob's session is unaffected: decisions are per session");
  });

  await t.test('a blocking policy added by a reload refuses the next request, naming the policy', async (t) => {
    await h.reload(`${base}policies:
  - name: freeze-web
    assignments: { users: { include: [alice] }, apps: { include: [web] } }
    grant: { block: true }
`);
    const cookie = await json({ cookie: aliceCookie });
    t.equal(cookie.status, 403);
    t.equal(cookie.error?.code, 'ERR_POLICY_DENIED');
    t.equal(cookie.error?.policy, 'freeze-web', 'JSON names the policy');
    const html = await page(aliceCookie);
    t.equal(html.status, 403);
    t.match(html.body, /freeze-web/, 'the page names the policy');
    t.equal(
      (await json({ authorization: `Bearer ${aliceToken}` })).error?.policy,
      'freeze-web',
      'bearer: refused by the policy',
    );
    t.equal(await upgrade(aliceCookie), 403, 'upgrade: refused');
    t.equal((await json({ cookie: bobCookie })).status, 200, 'bob is not in the policy');
  });

  await t.test('MFA required by a reload: browsers are sent to step-up, scripts and upgrades get 401', async (t) => {
    await h.reload(`${base}policies:
  - name: mfa-web
    assignments: { users: { include: [all] }, apps: { include: [web] } }
    grant: { requireMfa: true }
`);
    const html = await page(aliceCookie);
    t.equal(html.status, 302, 'a browser is sent to sign in again');
    const to = new URL(String(html.location));
    t.equal(to.origin, new URL(h.idp.issuer).origin, 'at the identity provider');
    t.equal(to.searchParams.get('acr_values'), 'mfa', 'asking for a second factor');
    const script = await json({ cookie: aliceCookie });
    t.equal(script.status, 401);
    t.equal(script.error?.code, 'ERR_SIGNIN_REQUIRED');
    t.equal(script.error?.policy, 'mfa-web');
    t.equal(
      (await json({ authorization: `Bearer ${aliceToken}` })).status,
      403,
      'a bearer token cannot step up: refused',
    );
    t.equal(await upgrade(aliceCookie), 401, 'upgrade: 401');
  });

  await t.test('restoring the configuration restores access', async (t) => {
    await h.reload(base);
    t.equal((await json({ cookie: aliceCookie })).status, 200, 'cookie');
    t.equal((await json({ authorization: `Bearer ${aliceToken}` })).status, 200, 'bearer');
    t.equal(await upgrade(aliceCookie), 101, 'upgrade');
  });

  await t.test('a request that began before a reload finishes under the state it began with', async (t) => {
    const slow = request(h.url('web.test', '/slow?ms=800'), {
      dispatcher: h.client,
      headers: { cookie: aliceCookie, accept: 'application/json' },
    });
    // Authorized and forwarded under the old state: the backend has it.
    await waitFor(() => backend.seen.some((s) => s.url === '/slow?ms=800'), {
      what: 'the slow request at the backend',
    });
    await h.reload(`apps:\n${app().replace('[alice, bob]', '[bob]')}`);
    t.equal((await json({ cookie: aliceCookie })).status, 403, 'a new request is refused at once');
    const r = await slow;
    t.equal(r.statusCode, 200, 'the one in flight completes');
    t.same(await r.body.json(), { slept: 800 });
    await h.reload(base);
  });

  await t.test(
    'a response that arrives after a reload is handled under the configuration it was admitted under',
    async (t) => {
      // The backend answers with a Location on an internal URL. Under the configuration the
      // request was admitted under, only `web` publishes the backend; the reload publishes
      // its /docs/ path as another app, which would translate the URL differently.
      const internal = `${backend.origin}/docs/page`;
      const slowUrl = `/slow?ms=800&location=${encodeURIComponent(internal)}`;
      const slow = request(h.url('web.test', slowUrl), {
        dispatcher: h.client,
        headers: { cookie: aliceCookie, accept: 'application/json' },
      });
      await waitFor(() => backend.seen.some((s) => s.url === slowUrl), { what: 'the slow request at the backend' });
      const docs = `  - { name: docs, externalUrl: "https://docs.test/", internalUrl: "${backend.origin}/docs/", preauth: passthrough }\n`;
      await h.reload(`apps:\n${app()}${docs}`);
      const r = await slow;
      t.equal(r.statusCode, 200);
      await r.body.dump();
      t.equal(
        r.headers['location'],
        'https://web.test/docs/page',
        'translated by the configuration it was admitted under',
      );
      const after = await request(h.url('web.test', `/slow?ms=0&location=${encodeURIComponent(internal)}`), {
        dispatcher: h.client,
        headers: { cookie: aliceCookie, accept: 'application/json' },
      });
      await after.body.dump();
      t.equal(
        after.headers['location'],
        'https://docs.test/page',
        'a request admitted after the reload: by the new one',
      );
      await h.reload(base);
    },
  );

  await t.test('a reload that fails part-way leaves the old state serving', async (t) => {
    const before = h.relay.currentState();
    // The relay's certificate directory made unusable: a new host cannot get a certificate.
    const tlsDir = path.join(h.config.dataDir, 'tls');
    rmSync(tlsDir, { recursive: true, force: true });
    writeFileSync(tlsDir, 'not a directory');
    t.teardown(() => {
      rmSync(tlsDir, { force: true });
      mkdirSync(tlsDir, { mode: 0o700 });
    });
    const next = `apps:\n${app().replace('[alice, bob]', '[bob]')}  - { name: new, externalUrl: "https://new.test/", internalUrl: "${backend.origin}/", preauth: passthrough }\n`;
    await t.rejects(h.reload(next), 'the reload fails');
    t.equal(h.relay.currentState(), before, 'the state in force is the very same object');
    t.equal(
      (await json({ cookie: aliceCookie })).status,
      200,
      'the old assignment still holds: nothing of the new config applied',
    );
    const r = await request(h.url('localhost', '/'), {
      dispatcher: h.client,
      headers: { host: `new.test:${h.publicPort}` },
    }).catch((e: Error) => e);
    t.ok(r instanceof Error || r.statusCode === 404 || r.statusCode === 421, 'the new app is not served');
    if (!(r instanceof Error)) await r.body.dump();
  });
});
