// Bearer tokens at an app are access tokens only: a genuine ID token from the same provider,
// for the same client id, is refused (ERR_TOKEN_TYPE), as is every other hostile variant;
// and a token from a provider session signed out at the relay stops working.
import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import { SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, generateKeyPair, type JWK } from 'jose';
import { request } from 'undici';
import { startHeaderEcho } from './helpers/backend.js';
import { startHarness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { codeFlow } from './helpers/code-flow.js';

t.test('bearer tokens must be access tokens', async (t) => {
  const port = await startHeaderEcho(t);
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: api, externalUrl: "https://api.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:proxyctl:api", clientSecret: api-secret, assignment: any, identityHeaders: true }
`,
  });
  const callback = `https://api.test:${h.publicPort}/.proxyctl/callback`;
  h.idp.registerClient({
    clientId: 'urn:proxyctl:api',
    clientSecret: 'api-secret',
    redirectUris: [callback],
    postLogoutRedirectUris: [`https://api.test:${h.publicPort}/.proxyctl/signed-out`],
  });
  h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: ['staff'] });
  await h.addConnector();
  const flow = {
    issuer: h.idp.issuer,
    clientId: 'urn:proxyctl:api',
    clientSecret: 'api-secret',
    redirectUri: callback,
    username: 'alice',
  };

  const call = async (token: string) => {
    const r = await request(h.url('api.test', '/native'), {
      dispatcher: h.client,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
    });
    const body = (await r.body.json()) as { headers?: IncomingHttpHeaders; error?: { code: string } };
    return { status: r.statusCode, code: body.error?.code, headers: body.headers };
  };

  await t.test('a genuine access token (at+jwt) is accepted; the ID token of the same sign-in is not', async (t) => {
    const tokens = await codeFlow(new BrowserSim(h.client), { ...flow, resource: 'urn:proxyctl:api' });
    t.equal(decodeProtectedHeader(tokens.accessToken).typ, 'at+jwt', 'the provider types its access tokens');
    const id = decodeJwt(tokens.idToken);
    t.equal(id.aud, 'urn:proxyctl:api', 'the ID token has the very audience the app expects');
    t.ok(
      typeof id['nonce'] === 'string' && typeof id['auth_time'] === 'number' && typeof id['sid'] === 'string',
      'a full ID token: nonce, auth_time, sid',
    );
    const ok = await call(tokens.accessToken);
    t.equal(ok.status, 200);
    t.equal(ok.headers?.['x-proxyctl-user'], 'alice');
    t.equal(ok.headers?.['x-proxyctl-email'], 'alice@example.com', 'a verified e-mail in the access token');
    const refused = await call(tokens.idToken);
    t.equal(refused.status, 401);
    t.equal(refused.code, 'ERR_TOKEN_TYPE', 'an ID token is not an API credential');
  });

  await t.test('hostile and borderline tokens, one code each', async (t) => {
    const now = Math.floor(Date.now() / 1000);
    const good = { iss: h.idp.issuer, aud: 'urn:proxyctl:api', sub: 'alice', iat: now, exp: now + 300 };
    const esKid = (h.idp.jwks.keys[0] as JWK).kid!;
    const otherKey = await generateKeyPair('ES256');
    const cases: [string, () => Promise<string> | string, number, string | undefined][] = [
      ['typ at+jwt', () => h.idp.signToken(good, { typ: 'at+jwt' }), 200, undefined],
      ['typ AT+JWT (any case)', () => h.idp.signToken(good, { typ: 'AT+JWT' }), 200, undefined],
      ['typ application/at+jwt', () => h.idp.signToken(good, { typ: 'application/at+jwt' }), 200, undefined],
      ['typ JWT without ID-token claims (untyped provider)', () => h.idp.signToken(good), 200, undefined],
      ['no typ without ID-token claims', () => h.idp.signToken(good, { typ: null }), 200, undefined],
      ['Keycloak access token (payload typ Bearer)', () => h.idp.signToken({ ...good, typ: 'Bearer' }), 200, undefined],
      ['typ JWT with nonce', () => h.idp.signToken({ ...good, nonce: 'n' }), 401, 'ERR_TOKEN_TYPE'],
      ['typ JWT with at_hash', () => h.idp.signToken({ ...good, at_hash: 'x' }), 401, 'ERR_TOKEN_TYPE'],
      ['no typ with c_hash', () => h.idp.signToken({ ...good, c_hash: 'x' }, { typ: null }), 401, 'ERR_TOKEN_TYPE'],
      ['s_hash', () => h.idp.signToken({ ...good, s_hash: 'x' }), 401, 'ERR_TOKEN_TYPE'],
      ['nonce null still an ID-token claim', () => h.idp.signToken({ ...good, nonce: null }), 401, 'ERR_TOKEN_TYPE'],
      ['Keycloak ID token (payload typ ID)', () => h.idp.signToken({ ...good, typ: 'ID' }), 401, 'ERR_TOKEN_TYPE'],
      [
        'Keycloak refresh token (payload typ Refresh)',
        () => h.idp.signToken({ ...good, typ: 'Refresh' }),
        401,
        'ERR_TOKEN_TYPE',
      ],
      ['typ id_token+jwt', () => h.idp.signToken(good, { typ: 'id_token+jwt' }), 401, 'ERR_TOKEN_TYPE'],
      ['typ logout+jwt', () => h.idp.signToken({ ...good, events: {} }, { typ: 'logout+jwt' }), 401, 'ERR_TOKEN_TYPE'],
      ['typ dpop+jwt', () => h.idp.signToken(good, { typ: 'dpop+jwt' }), 401, 'ERR_TOKEN_TYPE'],
      [
        'typ at+jwt but bound to a key (cnf)',
        () => h.idp.signToken({ ...good, cnf: { jkt: 'x' } }, { typ: 'at+jwt' }),
        401,
        'ERR_TOKEN_TYPE',
      ],
      ['alg none', () => new UnsecuredJWT(good).encode(), 401, 'ERR_TOKEN_ALG'],
      [
        'HS256',
        () =>
          new SignJWT(good)
            .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt' })
            .sign(new TextEncoder().encode('x'.repeat(32))),
        401,
        'ERR_TOKEN_ALG',
      ],
      [
        'wrong audience',
        () => h.idp.signToken({ ...good, aud: 'urn:proxyctl:other' }, { typ: 'at+jwt' }),
        401,
        'ERR_TOKEN_AUDIENCE',
      ],
      [
        'wrong issuer',
        () => h.idp.signToken({ ...good, iss: 'https://evil.example' }, { typ: 'at+jwt' }),
        401,
        'ERR_TOKEN_ISSUER',
      ],
      [
        'expired',
        () => h.idp.signToken({ ...good, iat: now - 7200, exp: now - 3600 }, { typ: 'at+jwt' }),
        401,
        'ERR_TOKEN_EXPIRED',
      ],
      ['no exp', () => h.idp.signToken({ ...good, exp: undefined }, { typ: 'at+jwt' }), 401, 'ERR_TOKEN_INVALID'],
      [
        'another key under the provider kid',
        () =>
          new SignJWT(good).setProtectedHeader({ alg: 'ES256', kid: esKid, typ: 'at+jwt' }).sign(otherKey.privateKey),
        401,
        'ERR_TOKEN_SIGNATURE',
      ],
      [
        'unknown kid',
        () =>
          new SignJWT(good)
            .setProtectedHeader({ alg: 'ES256', kid: 'nobody', typ: 'at+jwt' })
            .sign(otherKey.privateKey),
        401,
        'ERR_TOKEN_SIGNATURE',
      ],
    ];
    for (const [name, token, status, code] of cases) {
      const r = await call(await token());
      t.equal(r.status, status, `${name}: ${status}`);
      t.equal(r.code, code, `${name}: ${code ?? 'no error'}`);
    }
  });

  await t.test('signing out at the relay ends the bearer tokens of that provider session', async (t) => {
    const sim = new BrowserSim(h.client);
    const app = await sim.signIn(h.url('api.test', '/'), 'alice');
    t.equal(app.status, 200, 'signed in to the app through the relay');
    // The same browser, now a native client of the same provider session.
    const mine = await codeFlow(sim, { ...flow, resource: 'urn:proxyctl:api' });
    const other = await codeFlow(new BrowserSim(h.client), { ...flow, resource: 'urn:proxyctl:api' });
    const sid = decodeJwt(mine.accessToken)['sid'];
    t.type(sid, 'string', 'the access token names its provider session');
    t.equal(decodeJwt(mine.idToken)['sid'], sid, 'the one the relay saw in its ID token');
    t.not(decodeJwt(other.accessToken)['sid'], sid, 'another browser, another provider session');
    t.equal((await call(mine.accessToken)).status, 200, 'works before sign-out (and is now cached)');

    const out = await sim.get(h.url('api.test', '/.proxyctl/logout'), {
      method: 'POST',
      headers: { origin: `https://api.test:${h.publicPort}`, 'sec-fetch-site': 'same-origin' },
    });
    t.equal(out.status, 303);
    const after = await call(mine.accessToken);
    t.equal(after.status, 401, 'refused once its provider session was signed out');
    t.equal(after.code, 'ERR_SIGNIN_REQUIRED');
    t.equal((await call(other.accessToken)).status, 200, "another session's token is unaffected");
  });
});
