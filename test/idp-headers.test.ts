// Every response of the embedded provider refuses to be framed (CSP
// frame-ancestors 'none' and X-Frame-Options DENY): its own sign-in, code and
// error pages, and the pages oidc-provider renders (end session, device flow,
// errors, form_post), redirects and JSON included. Its cookies are SameSite=Lax,
// Secure, HttpOnly, with no SameSite=None ".legacy" twins.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { newTotpSecret } from '../src/idp/users.js';
import { CLI_CLIENT_ID } from '../src/idp/provider.js';
import type { SimResponse } from './helpers/browser-sim.js';
import { IdpBrowser, startIdpServer, type IdpServer } from './helpers/embedded-idp.js';

type Seen = { what: string; status: number; headers: SimResponse['headers']; body: string };

function checkHeaders(t: Test, r: Seen): void {
  const csp = String(r.headers['content-security-policy'] ?? '');
  t.match(csp, /(^|;\s*)frame-ancestors 'none'(;|$)/, `${r.what} (${r.status}): CSP frame-ancestors 'none'`);
  t.equal(r.headers['x-frame-options'], 'DENY', `${r.what} (${r.status}): X-Frame-Options DENY`);
  if (/<script/.test(r.body)) {
    const nonce = /<script nonce="([^"]+)"/.exec(r.body)?.[1];
    const allowed = nonce ? csp.includes(`'nonce-${nonce}'`) : /'sha256-/.test(csp);
    t.ok(allowed, `${r.what}: its script is allowed by nonce or hash, nothing else is`);
  }
}

/** GETs `url` and follows redirects by hand, recording every response, until `stop` or a non-redirect. */
async function walk(
  b: IdpBrowser,
  url: string,
  what: string,
  seen: Seen[],
  stop?: (u: URL) => boolean,
): Promise<SimResponse> {
  let current = url;
  for (let i = 0; i < 12; i++) {
    const r = await b.sim.get(current);
    seen.push({ what: `${what} ${new URL(current).pathname}`, status: r.status, headers: r.headers, body: r.body });
    const loc = r.headers['location'];
    if (r.status < 300 || r.status >= 400 || typeof loc !== 'string') return r;
    const next = new URL(loc, current);
    if (stop?.(next)) return { ...r, url: next.href };
    current = next.href;
  }
  throw new Error('too many redirects');
}

async function post(
  b: IdpBrowser,
  page: SimResponse,
  fields: Record<string, string>,
  what: string,
  seen: Seen[],
): Promise<SimResponse> {
  const r = await b.post(page, fields);
  seen.push({ what, status: r.status, headers: r.headers, body: r.body });
  return r;
}

t.test('no page of the embedded provider can be framed; its cookies are Lax', async (t) => {
  const s: IdpServer = await startIdpServer(t);
  await s.addUser('alice', 'alice password 1', { email: 'alice@example.com' });
  await s.addUser('bob', 'bob password 1', { totpSecret: newTotpSecret() });
  const seen: Seen[] = [];
  const setCookies: string[] = [];
  const atCallback = (u: URL) => u.href.startsWith(s.callbackUrl);

  // Sign-in: authorization request, login page, wrong password, right password, consent, back to the app.
  const alice = new IdpBrowser(s);
  const login = await alice.open();
  seen.push({ what: 'login page', status: login.status, headers: login.headers, body: login.body });
  await post(alice, login, { username: 'alice', password: 'wrong' }, 'wrong password', seen);
  const ok = await post(
    alice,
    await alice.open(),
    { username: 'alice', password: 'alice password 1' },
    'right password',
    seen,
  );
  await walk(alice, new URL(String(ok.headers['location']), ok.url).href, 'after sign-in', seen, atCallback);
  t.ok(
    seen.some((r) => /\/interaction\//.test(r.what) && r.status === 303),
    'the consent step was seen',
  );

  // The second-factor page, a wrong code, and a throttled refusal.
  const bob = new IdpBrowser(s);
  const codePage = await post(
    bob,
    await bob.open({ mfa: true }),
    { username: 'bob', password: 'bob password 1' },
    'code page',
    seen,
  );
  t.match(codePage.body, /name="code"/);
  await post(bob, codePage, { code: '000000' }, 'wrong code', seen);
  for (let i = 0; i < 6; i++) await new IdpBrowser(s).login('carol', 'wrong');
  const slowed = await new IdpBrowser(s).login('carol', 'wrong');
  seen.push({ what: 'throttled', status: slowed.status, headers: slowed.headers, body: slowed.body });
  t.equal(slowed.status, 429);
  await walk(new IdpBrowser(s), `${s.issuer}/interaction/not-a-real-one`, 'expired interaction', seen);

  // oidc-provider's own pages: end session (auto-submitting form), its confirmation, signed out.
  const logout = await walk(
    alice,
    `${s.issuer}/session/end?client_id=${s.config.apps[0]!.clientId}`,
    'end session',
    seen,
  );
  t.match(logout.body, /<script nonce=/, 'the sign-out form submits itself with a nonce');
  const confirm = await post(
    alice,
    logout,
    Object.fromEntries([...logout.body.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!])),
    'end session confirm',
    seen,
  );
  await walk(alice, new URL(String(confirm.headers['location']), confirm.url).href, 'signed out', seen);

  // Device flow: start, input page, wrong code, confirm page.
  const start = await request(`${s.issuer}/device/auth`, {
    method: 'POST',
    dispatcher: s.client,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: CLI_CLIENT_ID, scope: 'openid' }).toString(),
  });
  const device = (await start.body.json()) as { verification_uri: string; verification_uri_complete: string };
  seen.push({ what: 'device authorization (JSON)', status: start.statusCode, headers: start.headers, body: '' });
  const operator = new IdpBrowser(s);
  const input = await walk(operator, device.verification_uri, 'device input', seen);
  await post(operator, input, { user_code: 'BCDF-GHJK' }, 'device wrong code', seen);
  await walk(operator, device.verification_uri_complete, 'device confirm', seen);

  // Errors and everything else.
  await walk(
    new IdpBrowser(s),
    `${s.issuer}/auth?client_id=nobody&response_type=code&scope=openid`,
    'error page',
    seen,
  );
  await walk(new IdpBrowser(s), `${s.issuer}/.well-known/openid-configuration`, 'discovery', seen);
  await walk(new IdpBrowser(s), `${s.issuer}/jwks`, 'keys', seen);
  await walk(new IdpBrowser(s), `${s.issuer}/no-such-path`, 'unknown path', seen);

  // A form_post response (the relay never asks for one): its inline script is allowed by hash.
  const fp = new IdpBrowser(s);
  const fpLogin = await fp.sim.follow(
    `${s.issuer}/auth?${String(
      new URLSearchParams({
        client_id: s.config.apps[0]!.clientId,
        redirect_uri: s.callbackUrl,
        response_type: 'code',
        scope: 'openid',
        response_mode: 'form_post',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        code_challenge_method: 'S256',
      }),
    )}`,
  );
  const fpOk = await post(fp, fpLogin, { username: 'alice', password: 'alice password 1' }, 'form_post sign-in', seen);
  const formPost = await walk(fp, new URL(String(fpOk.headers['location']), fpOk.url).href, 'form_post', seen);
  t.match(formPost.body, /<script>/, 'the form_post page was rendered');

  const kinds = new Set(seen.map((r) => r.status));
  t.ok(
    [200, 303, 400, 401, 404, 429].every((k) => kinds.has(k)),
    `statuses seen: ${[...kinds].join(', ')}`,
  );
  for (const r of seen) {
    checkHeaders(t, r);
    setCookies.push(...[r.headers['set-cookie'] ?? []].flat());
  }

  t.ok(
    setCookies.some((c) => c.startsWith('_session=')),
    'the session cookie was seen',
  );
  t.ok(
    setCookies.some((c) => c.startsWith('_interaction=')),
    'the interaction cookie was seen',
  );
  t.ok(
    setCookies.some((c) => c.startsWith('_interaction_resume=')),
    'the resume cookie was seen',
  );
  for (const c of setCookies) {
    const name = c.split('=')[0]!;
    t.notMatch(name, /\.legacy/, `${name}: no SameSite=None twin`);
    t.match(c, /;\s*samesite=lax/i, `${name}: SameSite=Lax`);
    t.match(c, /;\s*secure/i, `${name}: Secure`);
    t.match(c, /;\s*httponly/i, `${name}: HttpOnly`);
  }
});
