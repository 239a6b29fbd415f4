// Preauthentication end to end against a real OpenID provider: sign-in with
// PKCE/state/nonce, encrypted session cookies, identity to the backend, sign-out,
// scripts and bearer tokens, and the hostile inputs around each of them.
import t, { type Test } from 'tap';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { createLocalJWKSet, jwtVerify, UnsecuredJWT } from 'jose';
import { request } from 'undici';
import { startHarness, type Harness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { sealSession, cookieName } from '../src/relay/auth/session.js';

interface Seen {
  url: string;
  headers: IncomingHttpHeaders;
}

async function echoBackend(t: Test): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as { port: number }).port, seen };
}

t.test('OIDC preauthentication', async (t) => {
  const backend = await echoBackend(t);
  const h: Harness = await startHarness(t, {
    yaml: () => `apps:
  - name: secure
    externalUrl: "https://secure.test/"
    internalUrl: "http://127.0.0.1:${backend.port}/"
    clientId: "urn:proxyctl:secure"
    clientSecret: secure-secret
    assignedGroups: [staff]
    identityHeaders: true
  - name: other
    externalUrl: "https://other.test/"
    internalUrl: "http://127.0.0.1:${backend.port}/"
    clientId: "urn:proxyctl:other"
    clientSecret: other-secret
    assignment: any
  - name: open
    externalUrl: "https://open.test/"
    internalUrl: "http://127.0.0.1:${backend.port}/"
    preauth: passthrough
`,
  });
  const port = h.publicPort;
  for (const [id, secret, host] of [
    ['urn:proxyctl:secure', 'secure-secret', 'secure.test'],
    ['urn:proxyctl:other', 'other-secret', 'other.test'],
  ] as const) {
    h.idp.registerClient({
      clientId: id,
      clientSecret: secret,
      redirectUris: [`https://${host}:${port}/.proxyctl/callback`],
      postLogoutRedirectUris: [`https://${host}:${port}/.proxyctl/signed-out`],
    });
  }
  h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: ['staff'] });
  h.idp.setUser('bob', { email: 'bob@example.com', name: 'Bob', groups: ['visitors'] });
  await h.addConnector();
  const jwks = async (host: string) => {
    const r = await request(h.url(host, '/.well-known/proxyctl/jwks.json'), { dispatcher: h.client });
    t.equal(r.statusCode, 200);
    return createLocalJWKSet((await r.body.json()) as { keys: [] });
  };

  const alice = new BrowserSim(h.client);
  await t.test('a browser signs in and reaches the app with its identity', async (t) => {
    const first = await alice.get(h.url('secure.test', '/page?x=1'));
    t.equal(first.status, 302, 'anonymous browser is redirected');
    const auth = new URL(String(first.headers['location']));
    t.equal(auth.origin, h.idp.issuer);
    t.equal(auth.searchParams.get('code_challenge_method'), 'S256');
    t.ok(auth.searchParams.get('state') && auth.searchParams.get('nonce'));
    t.equal(auth.searchParams.get('client_id'), 'urn:proxyctl:secure');
    t.equal(backend.seen.length, 0, 'nothing reached the backend before sign-in');
    const done = await alice.signIn(h.url('secure.test', '/page?x=1'), 'alice');
    t.equal(done.status, 200, done.body.slice(0, 300));
    const echoed = JSON.parse(done.body) as { url: string; headers: IncomingHttpHeaders };
    t.equal(echoed.url, '/page?x=1', 'returned to the originally requested URL');
    t.equal(echoed.headers['x-proxyctl-user'], 'alice');
    t.equal(echoed.headers['x-proxyctl-email'], 'alice@example.com');
    t.equal(echoed.headers['x-proxyctl-groups'], 'staff');
    t.notMatch(String(echoed.headers['cookie'] ?? ''), /proxyctl/i, 'session cookie never forwarded');
    const { payload, protectedHeader } = await jwtVerify(
      String(echoed.headers['x-proxyctl-jwt-assertion']),
      await jwks('secure.test'),
      {
        issuer: 'https://secure.test',
        audience: 'https://secure.test/',
      },
    );
    t.equal(protectedHeader.alg, 'ES256');
    t.equal(payload.sub, 'alice');
    t.same(payload['groups'], ['staff']);
    t.equal(payload['email'], 'alice@example.com', 'a verified address');
    t.same(payload['amr'], ['pwd'], 'how the user authenticated');
    t.equal(payload['acr'], 'pwd');
    t.type(payload['auth_time'], 'number', "the provider's auth_time");
    t.ok((payload['auth_time'] as number) <= payload.iat!, 'authenticated before the assertion was made');
    t.ok(payload.exp! - payload.iat! <= 300, 'short-lived');
    const setCookie = alice.jar.get(`secure.test:${port}`, cookieName(h.config.apps[0]!));
    t.ok(setCookie, 'session cookie set');
    const me = await alice.get(h.url('secure.test', '/.proxyctl/me'));
    t.equal(me.status, 200);
    t.match(JSON.parse(me.body), {
      sub: 'alice',
      email: 'alice@example.com',
      groups: ['staff'],
      amr: ['pwd'],
      app: 'secure',
    });
  });

  await t.test('identity headers from the client are removed in every spelling', async (t) => {
    const r = await alice.get(h.url('secure.test', '/spoof'), {
      headers: {
        'X-Proxyctl-User': 'mallory',
        x_proxyctl_email: 'mallory@evil',
        'X-PROXYCTL-JWT-ASSERTION': 'forged.jwt.value',
        'x-proxyctl-groups': 'admins',
        connection: 'x-proxyctl-user',
      },
    });
    const echoed = JSON.parse(r.body) as { headers: IncomingHttpHeaders };
    t.equal(echoed.headers['x-proxyctl-user'], 'alice');
    t.equal(echoed.headers['x-proxyctl-email'], 'alice@example.com');
    t.equal(echoed.headers['x-proxyctl-groups'], 'staff');
    t.notOk(echoed.headers['x_proxyctl_email']);
    t.not(echoed.headers['x-proxyctl-jwt-assertion'], 'forged.jwt.value');
    const open = await request(h.url('open.test', '/'), {
      dispatcher: h.client,
      headers: { 'x-proxyctl-jwt-assertion': 'forged', 'X-Proxyctl-Email': 'x@y' },
    });
    const body = (await open.body.json()) as { headers: IncomingHttpHeaders };
    t.notOk(body.headers['x-proxyctl-jwt-assertion'], 'passthrough apps get no identity headers at all');
    t.notOk(body.headers['x-proxyctl-email']);
  });

  await t.test('an unassigned user gets the denial page', async (t) => {
    const bob = new BrowserSim(h.client);
    const r = await bob.signIn(h.url('secure.test', '/'), 'bob');
    t.equal(r.status, 403);
    t.match(r.body, /ERR_NOT_ASSIGNED/);
    t.ok(r.headers['x-request-id']);
  });

  await t.test('scripts get 401 JSON, not a redirect', async (t) => {
    for (const headers of [
      { accept: 'application/json' },
      { 'x-requested-with': 'XMLHttpRequest' },
      { 'sec-fetch-mode': 'cors' },
    ]) {
      const r = await request(h.url('secure.test', '/api'), { dispatcher: h.client, headers });
      t.equal(r.statusCode, 401);
      t.equal(((await r.body.json()) as { error: { code: string } }).error.code, 'ERR_SIGNIN_REQUIRED');
    }
  });

  await t.test('cookies that must not work', async (t) => {
    const app = h.config.apps[0]!;
    const good = alice.jar.get(`secure.test:${port}`, cookieName(app))!;
    const tryCookie = async (value: string) => {
      const r = await request(h.url('secure.test', '/x'), {
        dispatcher: h.client,
        headers: { cookie: `${cookieName(app)}=${value}`, accept: 'application/json' },
      });
      await r.body.dump();
      return r.statusCode;
    };
    t.equal(await tryCookie(good), 200, 'the genuine cookie works');
    const parts = good.split('.');
    const ct = parts[3]!;
    const flipped = ct[5] === 'A' ? 'B' : 'A';
    t.equal(
      await tryCookie([...parts.slice(0, 3), ct.slice(0, 5) + flipped + ct.slice(6), parts[4]].join('.')),
      401,
      'tampered ciphertext byte',
    );
    t.equal(await tryCookie(good.slice(0, -2) + (good.endsWith('A') ? 'BB' : 'AA')), 401, 'tampered tag');
    t.equal(await tryCookie('garbage'), 401);
    const ring = h.relay.keyRing;
    const base = {
      sub: 'alice',
      email: 'alice@example.com',
      name: 'Alice',
      groups: ['staff'],
      amr: ['pwd'],
      acr: undefined,
      ip: '127.0.0.1',
      authTime: Date.now(),
      providerSid: undefined,
    };
    const expired = await sealSession(ring, {
      ...base,
      sid: 'x',
      app: 'secure',
      iat: Date.now() - 7200_000,
      exp: Date.now() - 3600_000,
    });
    t.equal(await tryCookie(expired), 401, 'expired cookie');
    const otherApp = await sealSession(ring, {
      ...base,
      sid: 'y',
      app: 'other',
      iat: Date.now(),
      exp: Date.now() + 3600_000,
    });
    t.equal(await tryCookie(otherApp), 401, "another app's cookie");
    const unknownSid = await sealSession(ring, {
      ...base,
      sid: 'never-issued',
      app: 'secure',
      iat: Date.now(),
      exp: Date.now() + 3600_000,
    });
    t.equal(await tryCookie(unknownSid), 401, 'a session id the relay never issued');
  });

  await t.test('sign-out revokes the session; a copied cookie stops working', async (t) => {
    const app = h.config.apps[0]!;
    const copied = alice.jar.get(`secure.test:${port}`, cookieName(app))!;
    const confirm = await alice.get(h.url('secure.test', '/.proxyctl/logout'));
    t.equal(confirm.status, 200, 'a GET only asks');
    const out = await alice.get(h.url('secure.test', '/.proxyctl/logout'), {
      method: 'POST',
      headers: { origin: `https://secure.test:${port}`, 'sec-fetch-site': 'same-origin' },
    });
    t.equal(out.status, 303);
    t.match(String(out.headers['location']), h.idp.issuer, 'sent to the provider to end its session');
    t.match(String(out.headers['set-cookie']), /Max-Age=0/);
    const r = await request(h.url('secure.test', '/x'), {
      dispatcher: h.client,
      headers: { cookie: `${cookieName(app)}=${copied}` },
    });
    await r.body.dump();
    t.equal(r.statusCode, 302, 'sent to sign in again');
    t.match(String(r.headers['location']), h.idp.issuer);
  });

  await t.test('state, nonce and code are checked and usable once', async (t) => {
    const sim = new BrowserSim(h.client);
    const host = `secure.test:${port}`;
    const atCallback = async () => {
      const isCallback = (next: URL) => next.pathname === '/.proxyctl/callback';
      sim.jar.byHost.get(host)?.delete('__Host-proxyctl-secure'); // signed out at the relay, maybe not at the provider
      const login = await sim.follow(h.url('secure.test', '/'), isCallback);
      if (isCallback(new URL(login.url))) return login; // the provider still has a session
      const m = /action="([^"]+)"/.exec(login.body)!;
      const posted = await sim.get(new URL(m[1]!, login.url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'username=alice&password=x',
      });
      return sim.follow(new URL(String(posted.headers['location']), posted.url).href, isCallback);
    };
    // State cookie from another sign-in (login CSRF): refused.
    let cb = await atCallback();
    const state = new URL(cb.url).searchParams.get('state')!;
    sim.jar.set(host, `__Host-proxyctl-secure-signin`, 'someone-elses-state');
    let r = await sim.get(cb.url);
    t.equal(r.status, 400);
    t.match(r.body, /ERR_SIGNIN_STATE/);
    // The right cookie: works once.
    sim.jar.set(host, `__Host-proxyctl-secure-signin`, state);
    r = await sim.get(cb.url);
    t.equal(r.status, 302, 'genuine callback succeeds');
    sim.jar.set(host, `__Host-proxyctl-secure-signin`, state);
    r = await sim.get(cb.url);
    t.equal(r.status, 400, 'replayed callback: state already used');
    t.match(r.body, /ERR_SIGNIN_STATE/);

    // The same code presented again (state restored in the store): the provider refuses it.
    cb = await atCallback();
    const st2 = new URL(cb.url).searchParams.get('state')!;
    const saved = (await h.relay.store.sessions.takeSigninState(st2))!;
    await h.relay.store.sessions.putSigninState(saved);
    r = await sim.get(cb.url);
    t.equal(r.status, 302);
    await h.relay.store.sessions.putSigninState(saved);
    sim.jar.set(host, `__Host-proxyctl-secure-signin`, st2);
    r = await sim.get(cb.url);
    t.equal(r.status, 401, 'replayed code');
    t.match(r.body, /ERR_SIGNIN_CODE/);

    // A nonce that does not match the ID token.
    cb = await atCallback();
    const st3 = new URL(cb.url).searchParams.get('state')!;
    const s3 = (await h.relay.store.sessions.takeSigninState(st3))!;
    await h.relay.store.sessions.putSigninState({ ...s3, nonce: 'not-the-nonce' });
    r = await sim.get(cb.url);
    t.equal(r.status, 401);
    t.match(r.body, /ERR_SIGNIN_TOKEN/);

    // The provider reports an error.
    sim.jar.byHost.get(host)?.delete('__Host-proxyctl-secure');
    await sim.follow(h.url('secure.test', '/'), (next) => next.origin === h.idp.issuer);
    const st4 = sim.jar.get(host, '__Host-proxyctl-secure-signin')!;
    r = await sim.get(
      h.url('secure.test', `/.proxyctl/callback?error=access_denied&error_description=nope&state=${st4}`),
    );
    t.equal(r.status, 401);
    t.match(r.body, /ERR_SIGNIN_PROVIDER/);
  });

  await t.test('bearer tokens for native clients', async (t) => {
    const call = async (token: string, host = 'other.test') => {
      const r = await request(h.url(host, '/native'), {
        dispatcher: h.client,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
      });
      const text = await r.body.text();
      return {
        status: r.statusCode,
        body: JSON.parse(text) as { headers?: IncomingHttpHeaders; error?: { code: string } },
      };
    };
    const good = await call(await h.idp.adminToken({ audience: 'urn:proxyctl:other', roles: [] }));
    t.equal(good.status, 200);
    t.notOk(good.body.headers?.['authorization'], 'the bearer token is not forwarded');
    t.ok(good.body.headers?.['x-proxyctl-jwt-assertion']);
    t.equal(
      (await call(await h.idp.adminToken({ audience: 'urn:proxyctl:secure', roles: [] }))).body.error?.code,
      'ERR_TOKEN_AUDIENCE',
      'a token for another app',
    );
    t.equal(
      (await call(await h.idp.adminToken({ audience: 'urn:proxyctl:secure', roles: [] }), 'secure.test')).body.error
        ?.code,
      'ERR_NOT_ASSIGNED',
    );
    const none = new UnsecuredJWT({ sub: 'x', aud: 'urn:proxyctl:other', iss: h.idp.issuer })
      .setExpirationTime('5m')
      .encode();
    t.equal((await call(none)).body.error?.code, 'ERR_TOKEN_ALG');
    const expired = await h.idp.signToken({
      sub: 'x',
      aud: 'urn:proxyctl:other',
      iss: h.idp.issuer,
      exp: Math.floor(Date.now() / 1000) - 3600,
    });
    t.equal((await call(expired)).body.error?.code, 'ERR_TOKEN_EXPIRED');
  });
});
