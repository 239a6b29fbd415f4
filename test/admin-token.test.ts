// Admin-token verification against a real in-process OpenID provider: genuine tokens pass,
// every hostile or stale variant is refused with its own stable error code.
import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { SignJWT, UnsecuredJWT, decodeJwt, exportSPKI, generateKeyPair, importJWK, type JWK } from 'jose';
import type { IdentityConfig } from '../src/config/relay-config.js';
import { AdminTokenVerifier } from '../src/relay/auth/admin-token.js';
import { startIdp, type TestIdp } from './helpers/idp.js';

const AUDIENCE = 'api://proxyctl';
const ADMIN = 'ProxyAdministrator';

function identityFor(issuer: string, overrides: Partial<IdentityConfig> = {}): IdentityConfig {
  return {
    issuer: new URL(issuer),
    clientId: 'proxyctl',
    clientSecret: undefined,
    adminAudience: AUDIENCE,
    adminClaim: 'roles',
    emailVerifiedWhenAbsent: false,
    adminValues: [ADMIN],
    readerValues: ['ProxyReader'],
    clockSkewMs: 60_000,
    groupsClaim: 'groups',
    scopes: ['openid'],
    embedded: { host: 'login.localhost', usersFile: undefined, port: undefined },
    ...overrides,
  };
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

async function started(t: Test, options?: { port?: number }): Promise<TestIdp> {
  const idp = await startIdp(options);
  t.teardown(() => idp.close());
  return idp;
}

t.test('a genuine admin token from the provider verifies', async (t) => {
  const idp = await started(t);
  const verifier = new AdminTokenVerifier(identityFor(idp.issuer));
  const token = await idp.adminToken();
  const admin = await verifier.verify(token);
  t.equal(admin.subject, decodeJwt(token).sub);
  t.equal(admin.issuer, idp.issuer);
  t.equal(admin.name, undefined);

  const rsToken = await idp.signToken(
    { iss: idp.issuer, aud: AUDIENCE, sub: 'alice', name: 'Alice Admin', roles: [ADMIN], exp: nowSeconds() + 300 },
    { alg: 'RS256' },
  );
  t.same(
    await verifier.verify(rsToken),
    { subject: 'alice', name: 'Alice Admin', issuer: idp.issuer },
    'RS256 key from the same JWKS works too',
  );

  const spaced = await idp.signToken({
    iss: idp.issuer,
    aud: [AUDIENCE, 'other'],
    sub: 'bob',
    roles: `Reader ${ADMIN} Auditor`,
    exp: nowSeconds() + 300,
  });
  t.equal(
    (await verifier.verify(spaced)).subject,
    'bob',
    'space-separated role string containing the admin value is accepted',
  );

  const trailing = new AdminTokenVerifier(identityFor(`${idp.issuer}/`));
  t.equal((await trailing.verify(token)).issuer, idp.issuer, 'configured issuer with a trailing slash still matches');
});

t.test('hostile and stale tokens are refused with stable codes', async (t) => {
  const idp = await started(t);
  const verifier = new AdminTokenVerifier(identityFor(idp.issuer));
  const now = nowSeconds();
  const good = { iss: idp.issuer, aud: AUDIENCE, sub: 'mallory', roles: [ADMIN], iat: now, exp: now + 300 };
  const esKid = (idp.jwks.keys[0] as JWK).kid!;

  const publicJwk = { ...(idp.jwks.keys[0] as JWK) };
  delete publicJwk.d;
  const publicPem = await exportSPKI((await importJWK(publicJwk, 'ES256')) as Parameters<typeof exportSPKI>[0]);
  const otherKey = await generateKeyPair('ES256');

  const cases: { name: string; token: () => Promise<string> | string; code: string; status: number }[] = [
    {
      name: 'expired',
      code: 'ERR_TOKEN_EXPIRED',
      status: 401,
      token: () => idp.signToken({ ...good, iat: now - 3600, exp: now - 600 }),
    },
    {
      name: 'not yet valid',
      code: 'ERR_TOKEN_NOT_YET_VALID',
      status: 401,
      token: () => idp.signToken({ ...good, nbf: now + 600 }),
    },
    {
      name: 'wrong issuer, real key',
      code: 'ERR_TOKEN_ISSUER',
      status: 401,
      token: () => idp.signToken({ ...good, iss: 'https://evil.example.com' }),
    },
    {
      name: 'wrong audience (real provider token)',
      code: 'ERR_TOKEN_AUDIENCE',
      status: 401,
      token: () => idp.adminToken({ audience: 'api://something-else' }),
    },
    { name: 'alg none', code: 'ERR_TOKEN_ALG', status: 401, token: () => new UnsecuredJWT(good).encode() },
    {
      name: 'another key under the same kid',
      code: 'ERR_TOKEN_SIGNATURE',
      status: 401,
      token: () => new SignJWT(good).setProtectedHeader({ alg: 'ES256', kid: esKid }).sign(otherKey.privateKey),
    },
    {
      name: 'unknown kid',
      code: 'ERR_TOKEN_SIGNATURE',
      status: 401,
      token: () =>
        new SignJWT(good).setProtectedHeader({ alg: 'ES256', kid: 'nobody-knows-me' }).sign(otherKey.privateKey),
    },
    {
      name: 'HS256 keyed with the public key PEM',
      code: 'ERR_TOKEN_ALG',
      status: 401,
      token: () =>
        new SignJWT(good).setProtectedHeader({ alg: 'HS256', kid: esKid }).sign(new TextEncoder().encode(publicPem)),
    },
    {
      name: 'HS256 keyed with the public JWK JSON',
      code: 'ERR_TOKEN_ALG',
      status: 401,
      token: () =>
        new SignJWT(good)
          .setProtectedHeader({ alg: 'HS256', kid: esKid })
          .sign(new TextEncoder().encode(JSON.stringify(publicJwk))),
    },
    {
      name: 'missing admin role (real provider token)',
      code: 'ERR_TOKEN_NOT_ADMIN',
      status: 403,
      token: () => idp.adminToken({ roles: [] }),
    },
    {
      name: 'other roles only',
      code: 'ERR_TOKEN_NOT_ADMIN',
      status: 403,
      token: () => idp.adminToken({ roles: ['Reader', 'ProxyAdministrators'] }),
    },
    {
      name: 'role claim absent',
      code: 'ERR_TOKEN_NOT_ADMIN',
      status: 403,
      token: () => idp.signToken({ ...good, roles: undefined }),
    },
    { name: 'no exp', code: 'ERR_TOKEN_INVALID', status: 401, token: () => idp.signToken({ ...good, exp: undefined }) },
    { name: 'no sub', code: 'ERR_TOKEN_INVALID', status: 401, token: () => idp.signToken({ ...good, sub: undefined }) },
    { name: 'empty string', code: 'ERR_TOKEN_INVALID', status: 401, token: () => '' },
    { name: 'garbage', code: 'ERR_TOKEN_INVALID', status: 401, token: () => 'not a token' },
    { name: 'three garbage parts', code: 'ERR_TOKEN_INVALID', status: 401, token: () => 'a.b.c' },
    { name: 'dots only', code: 'ERR_TOKEN_INVALID', status: 401, token: () => '..' },
    {
      name: 'header without alg',
      code: 'ERR_TOKEN_INVALID',
      status: 401,
      token: () => `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.e30.sig`,
    },
    { name: 'JWE-shaped (five parts)', code: 'ERR_TOKEN_INVALID', status: 401, token: () => 'a.b.c.d.e' },
    {
      name: '20 KiB token, otherwise genuine',
      code: 'ERR_TOKEN_INVALID',
      status: 401,
      token: () => idp.signToken({ ...good, pad: 'x'.repeat(20 * 1024) }),
    },
  ];

  for (const c of cases) {
    const token = await c.token();
    await t.rejects(verifier.verify(token), { code: c.code, status: c.status }, c.name);
  }

  await t.rejects(verifier.verify(undefined as unknown as string), { code: 'ERR_TOKEN_INVALID' }, 'non-string input');

  const secret = await idp.adminToken();
  const err = await verifier.verify(await idp.signToken({ ...good, exp: now - 600 })).catch((e: unknown) => e);
  t.notOk(String((err as Error).message).includes(secret.split('.')[2]!), 'messages never echo token material');
});

t.test('only access tokens: an ID token or another kind of JWT is refused with ERR_TOKEN_TYPE', async (t) => {
  const idp = await started(t);
  const verifier = new AdminTokenVerifier(identityFor(idp.issuer));
  const now = nowSeconds();
  const good = { iss: idp.issuer, aud: AUDIENCE, sub: 'mallory', roles: [ADMIN], iat: now, exp: now + 300 };
  const rows: [string, Record<string, unknown>, { typ?: string | null }, string | undefined][] = [
    ['at+jwt', good, { typ: 'at+jwt' }, undefined],
    ['Application/AT+JWT', good, { typ: 'Application/AT+JWT' }, undefined],
    ['JWT, no ID-token claims', good, {}, undefined],
    ['untyped, no ID-token claims', good, { typ: null }, undefined],
    ['application/jwt', good, { typ: 'application/jwt' }, undefined],
    ['JWT with nonce (an ID token)', { ...good, nonce: 'abc' }, {}, 'ERR_TOKEN_TYPE'],
    ['untyped with at_hash', { ...good, at_hash: 'abc' }, { typ: null }, 'ERR_TOKEN_TYPE'],
    ['JWT with c_hash', { ...good, c_hash: 'abc' }, {}, 'ERR_TOKEN_TYPE'],
    ['JWT with s_hash', { ...good, s_hash: 'abc' }, {}, 'ERR_TOKEN_TYPE'],
    ['payload typ ID (Keycloak ID token)', { ...good, typ: 'ID' }, {}, 'ERR_TOKEN_TYPE'],
    ['payload typ Bearer (Keycloak access token)', { ...good, typ: 'Bearer' }, {}, undefined],
    ['payload typ not a string', { ...good, typ: 1 }, {}, 'ERR_TOKEN_TYPE'],
    ['typ id+jwt', good, { typ: 'id+jwt' }, 'ERR_TOKEN_TYPE'],
    ['typ secevent+jwt', good, { typ: 'secevent+jwt' }, 'ERR_TOKEN_TYPE'],
    [
      'typ at+jwt but sender-constrained (cnf)',
      { ...good, cnf: { 'x5t#S256': 'abc' } },
      { typ: 'at+jwt' },
      'ERR_TOKEN_TYPE',
    ],
    ['typ JWE', good, { typ: 'JWE' }, 'ERR_TOKEN_TYPE'],
  ];
  for (const [name, claims, header, code] of rows) {
    const token = await idp.signToken(claims, header);
    if (code) {
      await t.rejects(verifier.verify(token), { code, status: 401 }, `${name}: admin token refused`);
      await t.rejects(
        verifier.verifyAccessToken(token, AUDIENCE),
        { code, status: 401 },
        `${name}: bearer token refused`,
      );
    } else {
      t.equal((await verifier.verify(token)).subject, 'mallory', `${name}: accepted`);
    }
  }
  const wrongAud = await idp.signToken({ ...good, aud: 'urn:other', nonce: 'abc' });
  await t.rejects(
    verifier.verifyAccessToken(wrongAud, AUDIENCE),
    { code: 'ERR_TOKEN_AUDIENCE' },
    'audience, issuer, expiry and signature are checked first',
  );
});

t.test('clock skew is honoured using the injected clock', async (t) => {
  const idp = await started(t);
  const fixedMs = Date.now();
  const fixed = Math.floor(fixedMs / 1000);
  const base = { iss: idp.issuer, aud: AUDIENCE, sub: 'carol', roles: [ADMIN] };
  const expired10s = await idp.signToken({ ...base, exp: fixed - 10 });
  const nbfIn10s = await idp.signToken({ ...base, nbf: fixed + 10, exp: fixed + 300 });

  const lenient = new AdminTokenVerifier(identityFor(idp.issuer, { clockSkewMs: 60_000 }), { now: () => fixedMs });
  const strict = new AdminTokenVerifier(identityFor(idp.issuer, { clockSkewMs: 0 }), { now: () => fixedMs });
  t.equal((await lenient.verify(expired10s)).subject, 'carol', 'expired 10 s ago passes with 60 s skew');
  await t.rejects(strict.verify(expired10s), { code: 'ERR_TOKEN_EXPIRED' }, 'expired 10 s ago fails with no skew');
  t.equal((await lenient.verify(nbfIn10s)).subject, 'carol', 'valid in 10 s passes with 60 s skew');
  await t.rejects(strict.verify(nbfIn10s), { code: 'ERR_TOKEN_NOT_YET_VALID' }, 'valid in 10 s fails with no skew');

  const later = new AdminTokenVerifier(identityFor(idp.issuer, { clockSkewMs: 0 }), { now: () => fixedMs + 3_600_000 });
  await t.rejects(
    later.verify(await idp.adminToken()),
    { code: 'ERR_TOKEN_EXPIRED' },
    'a real token is expired an hour after its 10-minute lifetime',
  );
});

t.test('an unreachable issuer is reported and retried on the next call', async (t) => {
  const idp = await started(t);
  // Failure injection: the network refuses every connection until the provider is "up".
  let down = true;
  const fetchFn = ((input: string | URL | Request, init?: RequestInit) => {
    if (down)
      return Promise.reject(
        new TypeError('fetch failed', {
          cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
        }),
      );
    return fetch(input, init);
  }) as typeof fetch;
  const verifier = new AdminTokenVerifier(identityFor(idp.issuer), { fetch: fetchFn });
  const bogus = await new SignJWT({ sub: 'x' })
    .setProtectedHeader({ alg: 'ES256' })
    .sign((await generateKeyPair('ES256')).privateKey);
  await t.rejects(verifier.verify(bogus), { code: 'ERR_IDP_UNAVAILABLE', status: 503 });

  down = false;
  t.equal(
    (await verifier.verify(await idp.adminToken())).issuer,
    idp.issuer,
    'the same verifier works once the provider is up',
  );
});

t.test('cached discovery and keys keep verifying through a provider outage', async (t) => {
  const idp = await startIdp();
  let closed = false;
  t.teardown(() => (closed ? undefined : idp.close()));
  let clock = Date.now();
  const verifier = new AdminTokenVerifier(identityFor(idp.issuer), { now: () => clock, discoveryTtlMs: 1000 });
  const token = await idp.adminToken();
  await verifier.verify(token);
  await idp.close();
  closed = true;
  t.ok(await verifier.verify(token), 'within the discovery TTL nothing is fetched');
  clock += 5000;
  t.ok(await verifier.verify(token), 'past the TTL a failed refresh falls back to the cached document');
});

t.test('a plain-http issuer off loopback is refused before any network call', async (t) => {
  const originalFetch = globalThis.fetch;
  let fetches = 0;
  globalThis.fetch = async () => {
    fetches++;
    throw new Error('no network expected');
  };
  t.teardown(() => {
    globalThis.fetch = originalFetch;
  });
  const verifier = new AdminTokenVerifier(identityFor('http://idp.example.com'));
  const token = await new SignJWT({ sub: 'x', exp: nowSeconds() + 60 })
    .setProtectedHeader({ alg: 'ES256' })
    .sign((await generateKeyPair('ES256')).privateKey);
  await t.rejects(verifier.verify(token), { code: 'ERR_IDP_INSECURE' });
  t.equal(fetches, 0);
});

t.test('a discovery document naming another issuer is refused', async (t) => {
  const idp = await started(t);
  // An impostor on another address serving the real provider's document verbatim.
  const document = await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).text();
  const impostor = http.createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(document),
  );
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        impostor.close(() => resolve());
        impostor.closeAllConnections();
      }),
  );
  const { port } = impostor.address() as net.AddressInfo;
  const verifier = new AdminTokenVerifier(identityFor(`http://127.0.0.1:${port}`));
  await t.rejects(verifier.verify(await idp.adminToken()), { code: 'ERR_IDP_ISSUER_MISMATCH' });
});
