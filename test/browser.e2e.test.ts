// A real browser (Debian's Chromium driven by playwright-core) signs in through
// the embedded provider (the `proxyctl demo` binary) and through a separately
// started oidc-provider, reaches the app, sees its identity echoed by the
// backend, signs out, and is sent to sign in again.
import t from 'tap';
import { createServer } from 'node:http';
import { withChromium } from './helpers/browser.js';
import { startHarness } from './helpers/harness.js';
import { Proc, tempDir } from './helpers/proc.js';

withChromium((browser) => {
  t.test('demo: embedded provider sign-in, POST, sign-out, sign-in again', async (t) => {
    const dir = tempDir(t);
    const demo = new Proc(['demo', '--port', '0', '--data-dir', `${dir}/demo`]);
    t.teardown(() => demo.stop());
    await demo.waitForStdout(/Press Ctrl-C/, 30_000).catch(() => undefined); // asserted next
    const url = /open:\s+(\S+)/.exec(demo.stdoutText)?.[1];
    const password = /password (\S+)/.exec(demo.stdoutText)?.[1];
    t.ok(url && password, `demo printed URL and password: ${demo.stdoutText}${demo.stderrText}`);
    const context = await browser().newContext({ ignoreHTTPSErrors: true });
    t.teardown(() => context.close());
    const page = await context.newPage();
    await page.goto(url!);
    await page.waitForSelector('#username');
    t.match(new URL(page.url()).hostname, 'login.localhost', 'sent to the embedded provider');
    await page.fill('#username', 'demo');
    await page.fill('#password', password!);
    await page.click('#submit');
    await page.waitForSelector('#user');
    t.equal(await page.textContent('#user'), 'demo', 'the backend echoes the identity');
    t.match((await page.textContent('#claims')) ?? '', /"sub": "demo"/);
    await page.fill('#message', 'posted through the relay');
    await page.click('#send');
    await page.waitForSelector('text=You posted');
    t.match(await page.content(), /posted through the relay/);
    await page.click('#logout'); // the demo page's sign-out form (POST)
    await page.waitForSelector('text=You are signed out', { timeout: 15_000 });
    await page.goto(url!);
    await page.waitForSelector('#username');
    t.match(new URL(page.url()).hostname, 'login.localhost', 'sent to sign in again');
  });

  t.test('external provider: sign-in, identity at the backend, sign-out, sign-in again', async (t) => {
    const backend = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        `<!doctype html><title>app</title><p id="who">${String(req.headers['x-proxyctl-email'] ?? '')}</p><p id="cookie">${String(req.headers['cookie'] ?? '')}</p>`,
      );
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
    t.teardown(() => backend.close());
    const port = (backend.address() as { port: number }).port;
    const h = await startHarness(t, {
      yaml: () => `apps:
  - { name: web, externalUrl: "https://web.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:web", clientSecret: s3cret, assignment: any, identityHeaders: true }
`,
    });
    h.idp.registerClient({
      clientId: 'urn:web',
      clientSecret: 's3cret',
      redirectUris: [`https://web.test:${h.publicPort}/.proxyctl/callback`],
      postLogoutRedirectUris: [`https://web.test:${h.publicPort}/.proxyctl/signed-out`],
    });
    h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: [] });
    await h.addConnector();
    const context = await browser().newContext({ ignoreHTTPSErrors: true });
    t.teardown(() => context.close());
    const page = await context.newPage();
    const appUrl = h.url('web.test', '/');
    await page.goto(appUrl);
    await page.waitForSelector('#username');
    t.equal(new URL(page.url()).origin, h.idp.issuer, 'at the separately started provider');
    await page.fill('#username', 'alice');
    await page.fill('#password', 'whatever');
    await page.click('#submit');
    await page.waitForSelector('#who');
    t.equal(await page.textContent('#who'), 'alice@example.com');
    t.notMatch((await page.textContent('#cookie')) ?? '', /proxyctl/i, 'the session cookie never reaches the app');
    // A GET only asks; the relay's button POSTs (same origin), then oidc-provider asks too.
    await page.goto(h.url('web.test', '/.proxyctl/logout'));
    await page.click('#signout');
    await page.waitForSelector('button[name=logout]');
    await page.click('button[name=logout]');
    await page.waitForSelector('text=You are signed out', { timeout: 15_000 });
    await page.goto(appUrl);
    await page.waitForSelector('#username');
    t.equal(new URL(page.url()).origin, h.idp.issuer, 'sent to sign in again');
  });
});
