// The embedded identity provider: users in the relay store, scrypt passwords,
// TOTP second factor (amr mfa), throttled failures, and administrator tokens
// from the device flow that the relay accepts for connector registration.
import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import * as oidc from 'openid-client';
import { TOTP } from 'otpauth';
import { fetch as undiciFetch } from 'undici';
import { startHeaderEcho } from './helpers/backend.js';
import { startHarness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { newTotpSecret } from '../src/idp/users.js';
import { addUser } from './helpers/users.js';
import { RelayClient } from '../src/connector/relay-client.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { isProxyctlError } from '../src/errors.js';

t.test('embedded identity provider', async (t) => {
  const port = await startHeaderEcho(t);
  const h = await startHarness(t, {
    embedded: true,
    yaml: () => `apps:
  - { name: demo, externalUrl: "https://demo.localhost/", internalUrl: "http://127.0.0.1:${port}/", assignedGroups: [staff], identityHeaders: true }
`,
  });
  const store = h.relay.store;
  await addUser(store, 'alice', 'correct horse battery', {
    email: 'alice@example.com',
    name: 'Alice',
    groups: ['staff'],
    roles: ['ProxyAdministrator'],
  });
  const totpSecret = newTotpSecret();
  await addUser(store, 'bob', 'bob password 1', {
    email: 'bob@example.com',
    name: 'Bob',
    groups: ['staff'],
    totpSecret,
  });
  await h.addConnector();
  const issuer = h.relay.issuer().href.replace(/\/$/, '');
  t.match(issuer, /^https:\/\/login\.localhost:\d+$/);

  await t.test('password sign-in reaches the app', async (t) => {
    const sim = new BrowserSim(h.client);
    const r = await sim.signIn(h.url('demo.localhost', '/hello'), 'alice', { password: 'correct horse battery' });
    t.equal(r.status, 200, r.body.slice(0, 200));
    const echoed = JSON.parse(r.body) as { headers: IncomingHttpHeaders };
    t.equal(echoed.headers['x-proxyctl-user'], 'alice');
    t.ok(echoed.headers['x-proxyctl-jwt-assertion']);
    const me = JSON.parse((await sim.get(h.url('demo.localhost', '/.proxyctl/me'))).body) as {
      amr: string[];
      email?: string;
    };
    t.same(me.amr, ['pwd']);
    t.equal(me.email, 'alice@example.com', 'the administrator-set e-mail arrives as verified, so the relay uses it');
    t.equal(echoed.headers['x-proxyctl-email'], 'alice@example.com');
  });

  await t.test('wrong passwords are refused and throttled', async (t) => {
    const sim = new BrowserSim(h.client);
    const statuses: number[] = [];
    await addUser(store, 'carol', 'carol password');
    // Real time here: the sixth attempt waits 1 s, the seventh 2 s, the eighth 4 s (idp-throttle.test.ts has the clock).
    for (let i = 0; i < 8 && !statuses.includes(429); i++)
      statuses.push((await sim.signIn(h.url('demo.localhost', '/'), 'carol', { password: 'wrong' })).status);
    t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
    t.equal(statuses.at(-1), 429, 'slowed after five failures');
    const unknown = await new BrowserSim(h.client).signIn(h.url('demo.localhost', '/'), 'nobody', {
      password: 'whatever1',
    });
    t.equal(unknown.status, 401);
  });

  await t.test('a TOTP user signs in with a password; the second factor is asked when requested', async (t) => {
    const sim = new BrowserSim(h.client);
    const r = await sim.signIn(h.url('demo.localhost', '/'), 'bob', { password: 'bob password 1' });
    t.equal(r.status, 200, 'no policy asks for MFA here');
    const me = JSON.parse((await sim.get(h.url('demo.localhost', '/.proxyctl/me'))).body) as {
      amr: string[];
      sub: string;
    };
    t.equal(me.sub, 'bob');
    t.same(me.amr, ['pwd']);
  });

  await t.test('device flow gives an administrator token the relay accepts', async (t) => {
    const info = (await (await undiciFetch(`${h.apiUrl}/v1/identity`, { dispatcher: h.client })).json()) as {
      issuer: string;
      cliClientId: string;
      adminAudience: string;
    };
    t.equal(info.issuer, issuer);
    const fetchFn = ((u: string, init: object) => undiciFetch(u, { ...init, dispatcher: h.client })) as never;
    const config = await oidc.discovery(
      new URL(info.issuer),
      info.cliClientId,
      { token_endpoint_auth_method: 'none' },
      oidc.None(),
      { [oidc.customFetch]: fetchFn },
    );
    const grant = await oidc.initiateDeviceAuthorization(config, { scope: 'openid', resource: info.adminAudience });
    // The administrator approves in a browser.
    const approve = async (uri: string, username: string, password: string) => {
      const sim = new BrowserSim(h.client);
      let page = await sim.follow(uri);
      for (let i = 0; i < 6 && !/<h1>Signed in/.test(page.body); i++) {
        if (/name="username"/.test(page.body)) page = await sim.submit(page, { username, password });
        else if (/name="code"/.test(page.body))
          page = await sim.submit(page, { code: new TOTP({ secret: totpSecret }).generate() });
        else page = await sim.submit(page, {});
      }
      return page;
    };
    const page = await approve(grant.verification_uri_complete!, 'alice', 'correct horse battery');
    t.match(page.body, /Signed in/, page.body.slice(0, 300));
    const tokens = await oidc.pollDeviceAuthorizationGrant(config, grant);
    const access = JSON.parse(Buffer.from(tokens.access_token.split('.')[1]!, 'base64url').toString('utf8')) as Record<
      string,
      unknown
    >;
    t.match(
      access,
      { email: 'alice@example.com', email_verified: true },
      'the administrator token marks the e-mail verified too',
    );
    const rc = new RelayClient(h.apiUrl, { caPem: h.relay.ca.certPem });
    const { csrPem } = await createKeyAndCsr('x');
    const reg = await rc.register(tokens.access_token, {
      csr: csrPem,
      name: 'via-device-flow',
      group: 'default',
      version: 't',
    });
    t.ok(reg.connectorId);
    // Bob has no administrator role: his device-flow token is refused.
    const grant2 = await oidc.initiateDeviceAuthorization(config, { scope: 'openid', resource: info.adminAudience });
    t.match((await approve(grant2.verification_uri_complete!, 'bob', 'bob password 1')).body, /Signed in/);
    const tokens2 = await oidc.pollDeviceAuthorizationGrant(config, grant2);
    const refused = await rc
      .register(tokens2.access_token, { csr: csrPem, name: 'bob-device', group: 'default', version: 't' })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    t.ok(
      isProxyctlError(refused, 'ERR_RELAY_REFUSED') && refused.details?.['remoteCode'] === 'ERR_TOKEN_NOT_ADMIN',
      'a non-administrator token is refused',
    );
    await rc.close();
  });
});
