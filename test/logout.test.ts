// Sign-out is a POST from the app's own origin. A GET (a link or image from anywhere)
// only shows a confirmation page; a cross-site POST is refused; a same-origin POST
// revokes the session and sends the browser to the provider's end-session endpoint,
// which brings it back to the relay's signed-out page.
import t from 'tap';
import { createServer } from 'node:http';
import { request } from 'undici';
import { startHarness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { cookieName } from '../src/relay/auth/session.js';

t.test('sign-out', async (t) => {
  const backend = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('app');
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const port = (backend.address() as { port: number }).port;
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: web, externalUrl: "https://web.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:web", clientSecret: s1, assignment: any }
  - { name: docs, externalUrl: "https://apps.test/docs/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:docs", clientSecret: s2, assignment: any }
`,
  });
  const origin = `https://web.test:${h.publicPort}`;
  h.idp.registerClient({
    clientId: 'urn:web',
    clientSecret: 's1',
    redirectUris: [`${origin}/.proxyctl/callback`],
    postLogoutRedirectUris: [`${origin}/.proxyctl/signed-out`],
  });
  h.idp.registerClient({
    clientId: 'urn:docs',
    clientSecret: 's2',
    redirectUris: [`https://apps.test:${h.publicPort}/docs/.proxyctl/callback`],
  });
  h.idp.setUser('alice', { email: 'alice@example.com' });
  await h.addConnector();
  const web = h.config.apps.find((a) => a.name === 'web')!;

  const signedIn = async () => {
    const sim = new BrowserSim(h.client);
    const r = await sim.signIn(h.url('web.test', '/'), 'alice');
    t.equal(r.status, 200, 'signed in');
    return sim;
  };
  const active = async (sim: BrowserSim) =>
    (await sim.get(h.url('web.test', '/.proxyctl/me'), { headers: { accept: 'application/json' } })).status === 200;
  const post = (sim: BrowserSim, headers: Record<string, string>, method = 'POST') =>
    sim.get(h.url('web.test', '/.proxyctl/logout'), {
      method,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: '',
    });

  await t.test('GET shows a confirmation page and signs no one out', async (t) => {
    const sim = await signedIn();
    const page = await sim.get(h.url('web.test', '/.proxyctl/logout'));
    t.equal(page.status, 200);
    t.notOk(page.headers['set-cookie'], 'no cookie cleared');
    t.match(page.headers['content-type'], /^text\/html/);
    t.equal(page.headers['cache-control'], 'no-store');
    t.equal(page.headers['x-frame-options'], 'DENY');
    const csp = String(page.headers['content-security-policy']);
    for (const directive of ["default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"])
      t.ok(csp.includes(directive), `CSP has ${directive}`);
    t.ok(
      csp.includes(new URL(h.idp.issuer).origin),
      "form-action allows the redirect to the provider's end-session endpoint",
    );
    t.match(page.body, /<form method="post" action="\/\.proxyctl\/logout">/);
    t.match(page.body, /<button type="submit" id="signout">/);
    t.notMatch(page.body, /<script/i, 'no script');
    t.ok(await active(sim), 'still signed in after the GET');
    const head = await request(h.url('web.test', '/.proxyctl/logout'), { method: 'HEAD', dispatcher: h.client });
    t.equal(head.statusCode, 200);
    t.equal(await head.body.text(), '');
    const docs = await request(h.url('apps.test', '/docs/.proxyctl/logout'), { dispatcher: h.client });
    t.match(await docs.body.text(), /action="\/docs\/\.proxyctl\/logout"/, 'the form posts under the app path');
  });

  await t.test('a POST from another site is refused and signs no one out', async (t) => {
    const sim = await signedIn();
    const hostile: [string, Record<string, string>][] = [
      ['Origin of another site', { origin: 'https://evil.test' }],
      [
        'Origin of another site, Sec-Fetch-Site cross-site',
        { origin: 'https://evil.test', 'sec-fetch-site': 'cross-site' },
      ],
      ['Sec-Fetch-Site cross-site, no Origin', { 'sec-fetch-site': 'cross-site' }],
      [
        'Sec-Fetch-Site same-site (a sibling host)',
        { origin: `https://other.web.test:${h.publicPort}`, 'sec-fetch-site': 'same-site' },
      ],
      ['Sec-Fetch-Site none', { 'sec-fetch-site': 'none' }],
      ['Origin null without Sec-Fetch-Site (sandboxed frame)', { origin: 'null' }],
      ['same host, another port', { origin: 'https://web.test:1' }],
      ['same host over http', { origin: `http://web.test:${h.publicPort}` }],
      ['Origin of this app, Sec-Fetch-Site cross-site', { origin, 'sec-fetch-site': 'cross-site' }],
      [
        'Sec-Fetch-Site same-origin but Origin of another site',
        { origin: 'https://evil.test', 'sec-fetch-site': 'same-origin' },
      ],
      ['old browser: Referer from another site, no Origin', { referer: 'https://evil.test/page' }],
      ['Origin of another app on the relay', { origin: `https://apps.test:${h.publicPort}` }],
    ];
    for (const [name, headers] of hostile) {
      const r = await post(sim, { accept: 'application/json', ...headers });
      t.equal(r.status, 403, `${name}: 403`);
      t.equal(
        (JSON.parse(r.body) as { error: { code: string } }).error.code,
        'ERR_BAD_REQUEST',
        `${name}: ERR_BAD_REQUEST`,
      );
      t.notOk(r.headers['set-cookie'], `${name}: no cookie cleared`);
    }
    t.ok(await active(sim), 'still signed in after every attempt');
    for (const method of ['PUT', 'DELETE', 'PATCH']) {
      const r = await post(sim, { accept: 'application/json', origin }, method);
      t.equal(r.status, 405, `${method}: 405`);
      t.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'ERR_METHOD_NOT_ALLOWED');
    }
    t.ok(await active(sim), 'still signed in');
  });

  await t.test('a same-origin POST signs out and goes to the provider, then the signed-out page', async (t) => {
    const sim = await signedIn();
    const copied = sim.jar.get(`web.test:${h.publicPort}`, cookieName(web))!;
    const confirm = await sim.get(h.url('web.test', '/.proxyctl/logout'));
    // The page's button (BrowserSim sends no Origin, like a script; browsers are checked above).
    const out = await sim.submit(confirm, {});
    t.equal(new URL(out.url).origin, h.idp.issuer, 'followed into the provider');
    t.notOk(await active(sim), 'signed out');
    const replay = await request(h.url('web.test', '/x'), {
      dispatcher: h.client,
      headers: { cookie: `${cookieName(web)}=${copied}`, accept: 'application/json' },
    });
    t.equal(replay.statusCode, 401, 'a copied cookie is revoked');
    await replay.body.dump();
    t.match(out.body, /name="logout"/, "at the provider's end-session confirmation");

    const sim2 = await signedIn();
    const r = await post(sim2, { origin, 'sec-fetch-site': 'same-origin' });
    t.equal(r.status, 303, 'See Other: the browser follows with a GET');
    const end = new URL(String(r.headers['location']));
    t.equal(end.origin, h.idp.issuer, "to the provider's end-session endpoint");
    t.equal(end.searchParams.get('post_logout_redirect_uri'), `${origin}/.proxyctl/signed-out`);
    t.match(String(r.headers['set-cookie']), /Max-Age=0/);
    t.equal(r.headers['cache-control'], 'no-store');
    t.notOk(await active(sim2));
    // The provider asks, the user confirms, and lands on the relay's signed-out page.
    const atProvider = await sim2.follow(end.href);
    const done = await sim2.submit(atProvider, { logout: 'yes' });
    t.equal(new URL(done.url).pathname, '/.proxyctl/signed-out');
    t.match(done.body, /You are signed out/);
    t.equal(done.headers['x-frame-options'], 'DENY');
  });

  await t.test('also accepted: no Origin at all (a script), Origin null with a same-origin fetch', async (t) => {
    const script = await signedIn();
    t.equal((await post(script, {})).status, 303);
    t.notOk(await active(script));
    const noReferrer = await signedIn();
    t.equal(
      (await post(noReferrer, { origin: 'null', 'sec-fetch-site': 'same-origin' })).status,
      303,
      'a page with Referrer-Policy no-referrer sends Origin null',
    );
    t.notOk(await active(noReferrer));
    const referer = await signedIn();
    t.equal((await post(referer, { referer: `${origin}/some/page` })).status, 303, 'old browser, same-origin Referer');
    const anonymous = new BrowserSim(h.client);
    const r = await post(anonymous, { origin });
    t.equal(r.status, 303, 'without a session: still sent on to the provider');
  });
});
