// Clickjacking, in a real browser (Debian's Chromium): a page on another site
// frames the embedded provider's sign-in, device and sign-out pages; the browser
// refuses to render every one of them, while opening them directly works.
import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withChromium } from './helpers/browser.js';
import { startIdpServer } from './helpers/embedded-idp.js';
import { waitFor } from './helpers/wait.js';

withChromium((browser) => {
  t.test('no provider page renders inside a frame on another site', async (t) => {
    const s = await startIdpServer(t);
    const targets = [
      [
        'sign-in',
        `${s.issuer}/auth?${String(
          new URLSearchParams({
            client_id: s.config.apps[0]!.clientId,
            redirect_uri: s.callbackUrl,
            response_type: 'code',
            scope: 'openid',
            code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
            code_challenge_method: 'S256',
          }),
        )}`,
        '#username',
      ],
      ['device code entry', `${s.issuer}/device`, 'form'],
      ['sign-out', `${s.issuer}/session/end`, 'h1'],
      ['interaction error', `${s.issuer}/interaction/expired`, 'h1'],
    ] as const;
    const evil = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(
        `<!doctype html><title>win a prize</title>${targets.map(([name, url]) => `<iframe name="${name}" src="${url.replace(/&/g, '&amp;')}"></iframe>`).join('')}`,
      );
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', () => r()));
    t.teardown(
      () =>
        new Promise<void>((r) => {
          evil.closeAllConnections();
          evil.close(() => r());
        }),
    );
    const context = await browser().newContext({ ignoreHTTPSErrors: true });
    t.teardown(() => context.close());

    const direct = await context.newPage();
    for (const [name, url, selector] of targets) {
      await direct.goto(url);
      t.ok(await direct.$(selector), `${name}: renders when opened directly`);
    }

    const page = await context.newPage();
    const blocked = new Set<string>();
    page.on('response', (r) => {
      if (r.headers()['x-frame-options'] === 'DENY') blocked.add(new URL(r.url()).pathname);
    });
    await page.goto(`http://evil.test:${(evil.address() as AddressInfo).port}/`);
    // Until every frame has been refused (Chromium's error page in it) and every answer seen: asserted next.
    await waitFor(
      () =>
        blocked.size >= targets.length &&
        targets.every(([name]) => /^chrome-error:/.test(page.frame({ name })?.url() ?? '')),
      { what: 'every frame refused' },
    ).catch(() => undefined);
    for (const [name] of targets) {
      const frame = page.frame({ name });
      t.ok(frame, `${name}: the frame exists`);
      // Chromium puts its own error page in a refused frame.
      t.match(frame?.url(), /^chrome-error:/, `${name}: the browser refused to render it`);
      const ours = await frame
        ?.evaluate("document.querySelector('meta[name=robots]') !== null || document.forms.length > 0")
        .catch(() => false);
      t.notOk(ours, `${name}: nothing of it renders in the frame`);
    }
    t.ok(blocked.size >= targets.length, `answers carried X-Frame-Options DENY: ${[...blocked].join(', ')}`);
  });
});
