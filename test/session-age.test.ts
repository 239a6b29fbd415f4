// Every request is authorized against the configuration in force, and that
// includes how old a session may be: a reload that adds a policy's
// signInFrequency, or shortens an app's sessionLifetime, ends older sessions on
// their next request (browsers are sent to sign in again, scripts get 401),
// not when their cookies expire. The relay's clock is moved by hand.
import t from 'tap';
import { request } from 'undici';
import { startBackend } from './helpers/backend.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { startHarness } from './helpers/harness.js';

const MIN = 60_000;

t.test('session age under the configuration in force', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  let offset = 0;
  const app = (extra = '') =>
    `  - { name: web, externalUrl: "https://web.test/", internalUrl: "${backend.origin}/", clientId: "urn:web", clientSecret: s3cret, assignment: any${extra} }\n`;
  const base = `apps:\n${app()}`;
  const h = await startHarness(t, { yaml: () => base, now: () => Date.now() + offset });
  const origin = `https://web.test:${h.publicPort}`;
  h.idp.registerClient({ clientId: 'urn:web', clientSecret: 's3cret', redirectUris: [`${origin}/.proxyctl/callback`] });
  h.idp.setUser('alice', { email: 'alice@example.com' });
  await h.addConnector();

  const signedIn = async () => {
    const sim = new BrowserSim(h.client);
    t.equal((await sim.signIn(h.url('web.test', '/echo'), 'alice', { mfa: true })).status, 200, 'signed in');
    return sim.jar.header(`web.test:${h.publicPort}`)!;
  };
  const json = async (cookie: string) => {
    const r = await request(h.url('web.test', '/echo'), {
      dispatcher: h.client,
      headers: { cookie, accept: 'application/json' },
    });
    const body = (await r.body.json()) as { error?: { code: string; message: string } };
    return { status: r.statusCode, code: body.error?.code, message: body.error?.message };
  };
  const browser = async (cookie: string) => {
    const r = await request(h.url('web.test', '/echo'), {
      dispatcher: h.client,
      headers: { cookie, accept: 'text/html' },
    });
    await r.body.dump();
    return { status: r.statusCode, location: String(r.headers['location'] ?? '') };
  };

  await t.test('a signInFrequency added by a reload ends older sessions', async (t) => {
    offset = 0;
    const cookie = await signedIn();
    offset = 20 * MIN;
    t.equal((await json(cookie)).status, 200, 'twenty minutes on, still in');
    await h.reload(`${base}policies:
  - name: mfa-every-15m
    assignments: { users: { include: [all] }, apps: { include: [web] } }
    grant: { requireMfa: true }
    session: { signInFrequency: 15m }
`);
    const refused = await json(cookie);
    t.equal(refused.status, 401, 'a script is refused');
    t.equal(refused.code, 'ERR_SIGNIN_REQUIRED');
    t.match(refused.message, /older than its sign-in settings now allow/);
    const page = await browser(cookie);
    t.equal(page.status, 302, 'a browser is sent to sign in');
    t.equal(new URL(page.location).origin, new URL(h.idp.issuer).origin, 'at the provider');
    t.equal(new URL(page.location).searchParams.get('prompt'), 'login', 'asked to authenticate again');
    const fresh = await signedIn();
    t.equal((await json(fresh)).status, 200, 'a new session is in');
    offset += 14 * MIN;
    t.equal((await json(fresh)).status, 200, 'and stays in within the frequency');
    offset += 2 * MIN;
    t.equal((await json(fresh)).status, 401, 'until it is older than the frequency');
    await h.reload(base);
    t.equal(
      (await json(fresh)).status,
      401,
      'a cookie issued under the policy lasted only its 15 minutes, policy or not',
    );
    offset = 0;
    const cookie2 = await signedIn();
    offset = 20 * MIN;
    t.equal(
      (await json(cookie2)).status,
      200,
      'the policy removed: a session signed in without it lasts the app lifetime',
    );
  });

  await t.test('an app sessionLifetime shortened by a reload ends older sessions', async (t) => {
    offset = 0;
    const cookie = await signedIn();
    offset = 90 * MIN;
    t.equal((await json(cookie)).status, 200, 'within the default 8h');
    await h.reload(`apps:\n${app(', sessionLifetime: 1h')}`);
    t.equal((await json(cookie)).status, 401, 'older than the new 1h lifetime');
    await h.reload(`apps:\n${app(', sessionLifetime: 2h')}`);
    t.equal((await json(cookie)).status, 200, 'younger than 2h');
    await h.reload(base);
  });
});
