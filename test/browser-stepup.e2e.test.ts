// Step-up in a real browser (Debian's Chromium driven by playwright-core): a
// user signed in to one app with a password opens an app whose Conditional
// Access policy requires MFA; the embedded provider asks again, then for the
// TOTP code, and the browser lands on the app with an MFA session.
import t from 'tap';
import { createServer } from 'node:http';
import { TOTP } from 'otpauth';
import { withChromium } from './helpers/browser.js';
import { hashPassword, newTotpSecret } from '../src/idp/users.js';
import { startHarness } from './helpers/harness.js';

withChromium((browser) => {
  t.test('password sign-in to demo, then step-up to TOTP for the MFA-required app', async (t) => {
    const backend = createServer((req, res) => {
      req.resume();
      const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(
        `<!doctype html><title>app</title><p id="who">${esc(String(req.headers['x-proxyctl-user'] ?? ''))}</p><p id="host">${esc(String(req.headers['x-forwarded-host'] ?? req.headers['host'] ?? ''))}</p>`,
      );
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    t.teardown(
      () =>
        new Promise<void>((r) => {
          backend.closeAllConnections();
          backend.close(() => r());
        }),
    );
    const port = (backend.address() as { port: number }).port;
    const app = (name: string) =>
      `  - { name: ${name}, externalUrl: "https://${name}.localhost/", internalUrl: "http://127.0.0.1:${port}/", assignment: any, identityHeaders: true }\n`;
    const h = await startHarness(t, {
      embedded: true,
      yaml: () => `apps:
${app('demo')}${app('secure')}
policies:
  - name: mfa-for-secure
    assignments: { users: { include: [all] }, apps: { include: [secure] } }
    grant: { requireMfa: true }
`,
    });
    const totpSecret = newTotpSecret();
    const password = 'bob password 1';
    await h.relay.store.users.put(
      {
        username: 'bob',
        passwordHash: await hashPassword(password),
        email: 'bob@example.com',
        name: 'Bob',
        groups: [],
        roles: [],
        totpSecret,
        createdAt: Date.now(),
      },
      'test',
      'user.add',
    );
    await h.addConnector();

    const context = await browser().newContext({ ignoreHTTPSErrors: true });
    t.teardown(() => context.close());
    const page = await context.newPage();

    // 1. demo: password only.
    await page.goto(h.url('demo.localhost', '/'));
    await page.waitForSelector('#username');
    t.equal(new URL(page.url()).hostname, 'login.localhost', 'sent to the embedded provider');
    t.notMatch(await page.content(), /multi-factor/, 'no second factor asked for demo');
    await page.fill('#username', 'bob');
    await page.fill('#password', password);
    await page.click('#submit');
    await page.waitForSelector('#who');
    t.equal(new URL(page.url()).hostname, 'demo.localhost', 'back on demo');
    t.equal(await page.textContent('#who'), 'bob', 'signed in to demo');
    const demoMe = await page.goto(h.url('demo.localhost', '/.proxyctl/me'));
    const demoAmr = ((await demoMe!.json()) as { amr: string[] }).amr;
    t.notOk(demoAmr.includes('mfa'), `the demo session is password only (amr ${JSON.stringify(demoAmr)})`);

    // 2. secure: the provider asks again, then for the code.
    await page.goto(h.url('secure.localhost', '/'));
    await page.waitForSelector('#password');
    t.equal(new URL(page.url()).hostname, 'login.localhost', 'back at the provider');
    t.match((await page.textContent('main')) ?? '', /multi-factor authentication/, 'the page says why it asks again');
    await page.fill('#username', 'bob');
    await page.fill('#password', password);
    await page.click('#submit');
    await page.waitForSelector('#code');
    t.match((await page.textContent('h1')) ?? '', /code/i, 'asked for the TOTP code');
    await page.fill('#code', new TOTP({ secret: totpSecret }).generate());
    await page.click('#submit');
    await page.waitForSelector('#who');
    t.equal(new URL(page.url()).hostname, 'secure.localhost', 'on the MFA-required app');
    t.equal(await page.textContent('#who'), 'bob', 'the app sees the user');

    // 3. The session on secure carries the second factor.
    const meResponse = await page.goto(h.url('secure.localhost', '/.proxyctl/me'));
    t.equal(meResponse!.status(), 200);
    const me = (await meResponse!.json()) as { sub: string; amr: string[]; app: string };
    t.equal(me.sub, 'bob');
    t.equal(me.app, 'secure');
    t.ok(me.amr.includes('mfa'), `amr contains mfa: ${JSON.stringify(me.amr)}`);

    // Both apps keep working in the same browser without asking again.
    await page.goto(h.url('demo.localhost', '/again'));
    await page.waitForSelector('#who');
    t.equal(new URL(page.url()).hostname, 'demo.localhost', 'demo still open without a new sign-in');
    await page.goto(h.url('secure.localhost', '/again'));
    await page.waitForSelector('#who');
    t.equal(new URL(page.url()).hostname, 'secure.localhost', 'secure still open without a new sign-in');

    const log = await h.relay.store.signIns.list(100);
    t.ok(
      log.some((e) => e.app === 'secure' && e.result === 'stepUp'),
      'the step-up is in the sign-in log',
    );
    t.ok(
      log.some((e) => e.app === 'secure' && e.result === 'success'),
      'and the MFA sign-in that followed',
    );
  });
});
