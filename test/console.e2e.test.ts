// The web console in a real browser (Debian's Chromium driven by playwright-core)
// against an in-process relay with its embedded provider: administrators, readers
// and users with neither role sign in; an app is published from the form (its
// issue shown by the field) and reached through a connector; a connector is
// revoked and its channels close; a policy is edited with what-if; a sign-in is
// read; cross-origin and token-less writes are refused. Every page is captured
// (desktop and phone width) and checked for labelled fields and keyboard use.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { request } from 'undici';
import { withChromium } from './helpers/browser.js';
import { startBackend, type Backend } from './helpers/backend.js';
import { startHarness, type Harness } from './helpers/harness.js';
import { waitFor } from './helpers/wait.js';
import type { Connector } from '../src/connector/connector.js';
import { hashPassword } from '../src/idp/users.js';

// The functions handed to page.evaluate run in Chromium. The tests compile without the
// DOM library (it clashes with Node's types), so the little of it they use is declared
// here, in this module's scope only.
interface DomNode {
  id: string;
  tagName: string;
  textContent: string | null;
  title: string;
  type?: string;
  outerHTML: string;
  innerHTML: string;
  labels?: ArrayLike<DomNode> | null;
  getAttribute(name: string): string | null;
  closest(selector: string): DomNode | null;
  querySelectorAll(selector: string): ArrayLike<DomNode>;
  submit(): void;
}
declare const document: {
  activeElement: DomNode | null;
  body: DomNode;
  documentElement: { scrollWidth: number };
  querySelector(selector: string): DomNode | null;
  getElementById(id: string): DomNode | null;
};
declare const window: { innerWidth: number };
declare const location: { hash: string };

const ROOT = path.resolve(import.meta.dirname, '..');
const CONSOLE = 'console.localhost';
const SHOTS = path.resolve(ROOT, process.env['PROXYCTL_SCREENSHOTS'] ?? 'screenshots/console');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 812 };
const PASSWORD = 'console test password';

/** The newest modification time under dir (ms). */
function newest(dir: string): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    max = Math.max(max, e.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return max;
}

/** The relay serves dist/console: build it when it is missing or older than console/ and the API types. */
function ensureBundle(): void {
  let built = 0;
  try {
    built = statSync(path.join(ROOT, 'dist/console/index.html')).mtimeMs;
  } catch {
    // not built yet
  }
  const sources = Math.max(
    newest(path.join(ROOT, 'console')),
    statSync(path.join(ROOT, 'src/admin/api-types.ts')).mtimeMs,
  );
  if (built < sources) execFileSync(process.execPath, [path.join(ROOT, 'scripts/build-console.mjs')], { cwd: ROOT });
}

interface World {
  h: Harness;
  backend: Backend;
  spare: Connector;
  admin: Page;
  reader: Page;
}

withChromium((browser) => {
  let w: World;

  t.before(async () => {
    ensureBundle();
    mkdirSync(SHOTS, { recursive: true });
    const backend = await startBackend();
    t.teardown(() => backend.close());
    const h = await startHarness(t, {
      embedded: true,
      yaml: () => `admin: { listen: "127.0.0.1:0", consoleHost: ${CONSOLE} }
apps:
  - name: wiki
    externalUrl: "https://wiki.localhost/"
    internalUrl: "${backend.origin}/"
    assignment: any
namedLocations:
  - name: office
    cidrs: ["10.0.0.0/8"]
policies:
  - name: mfa-report
    state: reportOnly
    assignments: { users: { include: [all] } }
    grant: { requireMfa: true }
  - name: office-block
    assignments: { users: { include: [all] } }
    conditions: { locations: { include: [office] } }
    grant: { block: true }
`,
    });
    const hash = await hashPassword(PASSWORD);
    for (const [username, roles] of [
      ['ada', ['ProxyAdministrator']],
      ['rita', ['ProxyReader']],
      ['nora', []],
    ] as const)
      await h.relay.store.users.put(
        {
          username,
          passwordHash: hash,
          email: `${username}@example.com`,
          name: username[0]!.toUpperCase() + username.slice(1),
          groups: [],
          roles: [...roles],
          totpSecret: null,
          createdAt: Date.now(),
        },
        'test',
        'user.add',
      );
    await h.addConnector({ name: 'main' });
    const spare = await h.addConnector({ name: 'spare' });
    w = { h, backend, spare, admin: undefined as unknown as Page, reader: undefined as unknown as Page };
  });

  t.test('roles: administrator, reader, no access', async (t) => {
    const [{ page: admin }, { page: reader }, { page: nobody, status }] = await Promise.all([
      signIn(browser(), w.h, 'ada'),
      signIn(browser(), w.h, 'rita'),
      signIn(browser(), w.h, 'nora'),
    ]);
    w.admin = admin;
    w.reader = reader;
    await admin.waitForSelector('#page-title');
    t.equal(await admin.textContent('#page-title'), 'Overview');
    t.match(await admin.textContent('#caller'), /Ada.*\(admin\)/);
    t.equal(await admin.locator('#read-only-banner').count(), 0, 'no banner for an administrator');

    await reader.waitForSelector('#read-only-banner');
    t.match(await reader.textContent('#read-only-banner'), /read-only/);
    t.match(await reader.textContent('#caller'), /\(reader\)/);

    t.equal(status, 403, 'neither role: the sign-in is refused');
    t.match(await nobody.textContent('body'), /nora@example\.com has neither the administrator nor the reader role/);
    const cookies = (await nobody.context().cookies()).map((c) => c.name);
    t.notOk(cookies.includes('__Host-proxyctl-proxyctl-console'), 'no console session was made');
    const refused = await w.h.relay.store.signIns.query({ subject: 'nora' });
    t.match(
      refused,
      [{ app: 'proxyctl-console', result: 'failure', reason: 'no administration role' }],
      'logged as a failure',
    );
  });

  t.test('publish an app from the form, then reach it through the relay', async (t) => {
    const page = w.admin;
    await page.getByRole('link', { name: 'Apps', exact: true }).click();
    await page.waitForSelector('#apps-table');
    await page.getByRole('link', { name: 'Publish app' }).click();
    await page.waitForSelector('#app-form');
    await page.fill('#app-name', 'docs');
    await page.fill('#app-external-url', 'https://docs.localhost/');
    await page.fill('#app-internal-url', 'ftp://127.0.0.1/');
    await page.selectOption('#app-assignment', 'any');
    await page.getByRole('button', { name: 'Publish' }).click();
    const issue = await page.waitForSelector('#app-internal-url-error');
    t.match(await issue.textContent(), /http/, 'the issue says what is expected');
    t.equal(
      await page.locator('.field:has(#app-internal-url) #app-internal-url-error').count(),
      1,
      'next to the field',
    );
    await shot(t, page, 'app-publish-issue');
    t.equal(await page.getAttribute('#app-internal-url', 'aria-invalid'), 'true');
    t.match(await page.getAttribute('#app-internal-url', 'aria-describedby'), /app-internal-url-error/);
    await page.fill('#app-internal-url', `${w.backend.origin}/`);
    await page.getByRole('button', { name: 'Publish' }).click();
    await page.waitForSelector('#app-detail');
    t.equal(new URL(page.url()).hash, '#/apps/docs');

    const visit = await page.context().newPage();
    await visit.goto(w.h.url('docs.localhost', '/hello?tag=console'));
    const body = JSON.parse((await visit.textContent('body')) ?? '') as { url: string; method: string };
    t.equal(body.url, '/hello?tag=console', 'the backend answered through the relay');
    t.equal(w.backend.seen.filter((r) => r.url === '/hello?tag=console').length, 1, 'once');
    const me = await visit.goto(w.h.url('docs.localhost', '/.proxyctl/me'));
    t.match(await me!.json(), { sub: 'ada', app: 'docs' }, 'signed in to the new app with the same provider session');
    await visit.close();
  });

  t.test('revoke a connector: confirm, its channels close, it shows revoked', async (t) => {
    const page = w.admin;
    await page.getByRole('link', { name: 'Connectors', exact: true }).click();
    const row = page.getByTestId('connector-row-spare');
    await row.waitFor();
    t.match(await row.textContent(), /online/);
    await row.getByRole('link', { name: 'spare' }).click();
    await page.waitForSelector('#connector-detail');
    const id = decodeURIComponent(new URL(page.url()).hash.replace('#/connectors/', ''));
    t.ok(w.h.relay.channels.byConnector(id).length > 0, 'the relay holds its channels');
    await page.waitForSelector('#channels-table tbody tr td');
    await page.getByRole('button', { name: 'Revoke' }).click();
    const dialog = page.locator('#confirm-dialog');
    await dialog.waitFor({ state: 'visible' });
    t.match(await dialog.textContent(), /Revoke spare\?/);
    t.equal(await page.evaluate(() => document.activeElement?.id), 'confirm-no', 'focus starts on Cancel');
    await page.click('#confirm-yes');
    await dialog.waitFor({ state: 'hidden' });
    await page.locator('#connector-detail .badge', { hasText: 'revoked' }).waitFor();
    await waitFor(() => w.spare.openChannels() === 0, { timeoutMs: 10_000, what: "the revoked connector's channels" });
    t.equal(w.spare.openChannels(), 0, 'the connector has no channel open');
    t.equal(w.h.relay.channels.byConnector(id).length, 0, 'the relay holds none of its channels');
    t.equal(await page.getByRole('button', { name: 'Delete' }).count(), 1, 'Delete replaces Revoke');
    await page.getByRole('link', { name: 'Connectors', exact: true }).click();
    await page.getByTestId('connector-row-spare').getByText('revoked').waitFor();
    t.match(await page.getByTestId('connector-row-main').textContent(), /online/, 'the other connector stays');
  });

  t.test('edit a policy, what-if with the draft, save, what-if again', async (t) => {
    const page = w.admin;
    await page.getByRole('link', { name: 'Policies', exact: true }).click();
    await page.getByRole('link', { name: 'New policy' }).click();
    await page.waitForSelector('#policy-json');
    const spec = {
      name: 'docs-block',
      state: 'off',
      assignments: { users: { include: ['all'] }, apps: { include: ['docs'] } },
      grant: { block: true },
    };
    await page.fill('#policy-json', JSON.stringify(spec, null, 2));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForSelector('#policy-facts');
    t.equal(new URL(page.url()).hash, '#/policies/docs-block');

    await page.fill('#whatif-app', 'docs');
    await page.fill('#whatif-user', 'ada');
    await page.getByRole('button', { name: 'Run what-if' }).click();
    t.equal(await decision(page, '#whatif-decision'), 'allow', 'the saved policy is off');

    await page.selectOption('#policy-state', 'on');
    t.match(await page.inputValue('#policy-json'), /"state": "on"/, 'the state control edits the draft');
    await page.getByRole('button', { name: 'What-if with this draft' }).click();
    await page.waitForSelector('#whatif-baseline');
    t.equal(await decision(page, '#whatif-decision'), 'deny', 'the draft blocks');
    t.equal(await decision(page, '#whatif-baseline'), 'allow', 'the saved policies still allow');
    t.match(await apiGet(page, '/policies/docs-block'), { spec: { state: 'off' } }, 'a draft saves nothing');
    await shot(t, page, 'policy-edit-whatif');

    await page.getByRole('button', { name: 'Save' }).click();
    await page.waitForSelector('#policy-saved');
    await page.getByRole('button', { name: 'Run what-if' }).click();
    await page.waitForSelector('#whatif-baseline', { state: 'detached' });
    t.equal(await decision(page, '#whatif-decision'), 'deny', 'the saved policy now blocks');
  });

  t.test("the admin's own sign-in in the log, and its detail", async (t) => {
    const page = w.admin;
    await go(page, '#/signins', '#signins-table');
    await page.fill('#signins-user', 'ada');
    await page.fill('#signins-app', 'proxyctl-console');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/#\/signins\?.*user=ada/);
    // The filtered list replaces the first one once loaded: rows read before that may be gone.
    await page.waitForFunction(() => !document.querySelector('.loading'));
    const rows = page.locator('#signins-table tbody tr[data-testid^="signin-row-"]');
    await rows.first().waitFor();
    const texts = await rows.allTextContents();
    t.ok(texts.length >= 1, 'the sign-in is listed');
    t.ok(
      texts.every((r) => /ada/.test(r) && /proxyctl-console/.test(r) && /success/.test(r)),
      `only ada's successful console sign-ins: ${texts.join(' | ')}`,
    );
    await rows.first().getByRole('link').click();
    await page.waitForSelector('#signin-detail');
    t.match(await page.textContent('#signin-detail .headline'), /success.*ada.*proxyctl-console/);
    const policies = await page.$$eval('#signin-policies tbody tr', (trs: DomNode[]) =>
      trs.map((tr) => Array.from(tr.querySelectorAll('th, td'), (c) => (c.textContent ?? '').trim())),
    );
    t.same(
      policies.map((p) => p[0]),
      ['mfa-report', 'office-block'],
      'the policies in force at the sign-in',
    );
    for (const p of policies) t.match(p[3], /^(?!—$)\S+/, `${p[0]}: its result is shown (${p[3]})`);
    await shot(t, page, 'signin-detail');
  });

  t.test('reader: no write control on any page, and a write is refused', async (t) => {
    const page = w.reader;
    const main = ((await apiGet(page, '/connectors')) as { id: string; name: string }[]).find(
      (c) => c.name === 'main',
    )!;
    for (const [hash, ready] of [
      ['#/', '[data-testid=apps-total]'],
      ['#/apps', '#apps-table'],
      ['#/apps/docs', '#app-detail'],
      ['#/connectors', '#groups-table'],
      [`#/connectors/${main.id}`, '#connector-detail'],
      ['#/policies', '#policies-table'],
      ['#/policies/docs-block', '#policy-spec'],
      ['#/locations/office', '#location-spec'],
      ['#/users', '#users-table'],
      ['#/risk', '#detections-table'],
    ] as const) {
      await go(page, hash, ready);
      t.same(await writeControls(page), [], `${hash}: no write control`);
      t.equal(await page.locator('#read-only-banner').count(), 1, `${hash}: the read-only banner`);
    }
    await go(page, '#/apps/new', '#page-title');
    t.equal(await page.textContent('#page-title'), 'Read-only', 'the publish form is not offered');
    t.equal(await page.locator('#app-form').count(), 0);

    const attempt = await page.evaluate(async () => {
      const me = (await (await fetch('/api/v1/me')).json()) as { csrfToken: string };
      const res = await fetch('/api/v1/groups', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-proxyctl-csrf': me.csrfToken },
        body: JSON.stringify({ name: 'by-reader' }),
      });
      return { token: me.csrfToken, status: res.status, body: (await res.json()) as { error: { code: string } } };
    });
    t.ok(attempt.token, 'a reader has a CSRF token too');
    t.equal(attempt.status, 403, 'the write is refused');
    t.not(attempt.body.error.code, 'ERR_CSRF', 'for the role, not the token');
    t.notOk(await groupNamed(page, 'by-reader'), 'nothing was created');
  });

  t.test('CSRF: writes without the token or from another origin are refused', async (t) => {
    const page = w.admin;
    const origin = new URL(w.h.url(CONSOLE, '/')).origin;
    const { csrfToken } = (await apiGet(page, '/me')) as { csrfToken: string };
    const post = (name: string, headers: Record<string, string>) =>
      page.evaluate(
        async ([n, h]) => {
          const res = await fetch('/api/v1/groups', {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...h },
            body: JSON.stringify({ name: n }),
          });
          return { status: res.status, body: (await res.json()) as ErrorBody };
        },
        [name, headers] as const,
      );
    const none = await post('csrf-none', {});
    t.equal(none.status, 403, 'no x-proxyctl-csrf: 403');
    t.equal(none.body.error?.code, 'ERR_CSRF');
    const wrong = await post('csrf-wrong', { 'x-proxyctl-csrf': `${csrfToken.slice(1)}x` });
    t.equal(wrong.status, 403, 'a wrong token: 403');
    t.equal(wrong.body.error?.code, 'ERR_CSRF');

    // The browser's session cookie, sent by a client that says whatever Origin it likes.
    const cookie = (await page.context().cookies(origin)).map((c) => `${c.name}=${c.value}`).join('; ');
    const send = async (method: string, p: string, headers: Record<string, string>, body?: unknown) => {
      const res = await request(`${origin}${p}`, {
        method: method as 'GET',
        dispatcher: w.h.client,
        headers: { cookie, accept: 'application/json', ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.body.text();
      return {
        status: res.statusCode,
        code: text.startsWith('{') ? (JSON.parse(text) as ErrorBody).error?.code : text,
      };
    };
    const me = await send('GET', '/api/v1/me', {});
    t.equal(me.status, 200, 'the session cookie alone authenticates');
    const json = { 'content-type': 'application/json', 'x-proxyctl-csrf': csrfToken };
    const foreign = await send(
      'POST',
      '/api/v1/groups',
      { ...json, origin: 'https://evil.localhost' },
      { name: 'csrf-foreign' },
    );
    t.same(foreign, { status: 403, code: 'ERR_CSRF' }, 'the right token from another origin');
    const noOrigin = await send('POST', '/api/v1/groups', json, { name: 'csrf-no-origin' });
    t.same(noOrigin, { status: 403, code: 'ERR_CSRF' }, 'the right token and no Origin');
    const del = await send('DELETE', '/api/v1/policies/docs-block', { origin: 'null', 'x-proxyctl-csrf': csrfToken });
    t.same(del, { status: 403, code: 'ERR_CSRF' }, 'a delete from an opaque origin');
    t.match(await apiGet(page, '/policies/docs-block'), { name: 'docs-block' }, 'the policy is still there');

    // A page of another origin posting a form at the API with the browser's cookies.
    const evil = await page.context().newPage();
    await evil.goto(`${w.backend.origin}/evil`);
    const answered = evil.waitForResponse((r) => r.url().startsWith(`${origin}/api/v1/groups`));
    // text/plain, so the body reads as JSON: {"name":"csrf-form","x":"="}
    const form = `<form method="post" enctype="text/plain" action="${origin}/api/v1/groups"><input name='{"name":"csrf-form","x":"' value='"}'></form>`;
    await evil.evaluate((html) => {
      document.body.innerHTML = html;
      document.querySelector('form')?.submit();
    }, form);
    const formAnswer = await answered;
    t.not(formAnswer.status(), 201, `a cross-site form post creates nothing (${formAnswer.status()})`);
    await evil.close();

    for (const name of ['csrf-none', 'csrf-wrong', 'csrf-foreign', 'csrf-no-origin', 'csrf-form'])
      t.notOk(await groupNamed(page, name), `${name} was not created`);
    const audit = (await apiGet(page, '/audit?action=group.')) as { items: unknown[] };
    t.same(audit.items, [], 'and nothing was audited');
  });

  t.test('every page: labelled fields, screenshots at desktop and phone width, keyboard', async (t) => {
    const page = w.admin;
    const main = ((await apiGet(page, '/connectors')) as { id: string; name: string }[]).find(
      (c) => c.name === 'main',
    )!;
    for (const [name, hash, ready] of [
      ['overview', '#/', '[data-testid=apps-total]'],
      ['apps', '#/apps', '#apps-table'],
      ['app-detail', '#/apps/docs', '#app-detail'],
      ['app-publish', '#/apps/new', '#app-form'],
      ['connectors', '#/connectors', '#groups-table'],
      ['connector-detail', `#/connectors/${main.id}`, '#channels-table'],
      ['policies', '#/policies', '#locations-table'],
      ['policy-file', '#/policies/mfa-report', '#policy-spec'],
      ['location-file', '#/locations/office', '#location-spec'],
      ['location-new', '#/locations/new', '#location-json'],
      ['signins', '#/signins', '#signins-table'],
      ['risk', '#/risk', '#detections-table'],
      ['audit', '#/audit', '#audit-table'],
      ['users', '#/users', '#users-table'],
    ] as const) {
      await go(page, hash, ready);
      await shot(t, page, name);
    }
    await go(page, '#/connectors', '#groups-table');
    await page.locator('section[aria-labelledby=groups-heading]').screenshot({ path: path.join(SHOTS, 'groups.png') });
    await page.setViewportSize(PHONE);
    await go(page, '#/', '[data-testid=apps-total]');
    await shot(t, page, 'overview-phone');
    t.ok(
      await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
      'nothing overflows sideways at phone width',
    );
    await go(page, '#/signins', '#signins-table');
    await shot(t, page, 'signins-phone');
    await page.setViewportSize(DESKTOP);

    // A fresh load, then the keyboard alone: Tab to the Apps link, Enter.
    await page.goto(w.h.url(CONSOLE, '/'));
    await page.waitForSelector('[data-testid=apps-total]');
    const stops: string[] = [];
    for (let i = 0; i < 12 && stops.at(-1) !== 'nav:Apps'; i++) {
      await page.keyboard.press('Tab');
      stops.push(
        await page.evaluate(() => {
          const e = document.activeElement;
          return `${e?.closest('nav') ? 'nav:' : ''}${(e?.textContent ?? '').trim() || e?.tagName || ''}`;
        }),
      );
    }
    t.equal(stops[0], 'Skip to content', 'the first stop is the skip link');
    t.equal(stops.at(-1), 'nav:Apps', `Tab reaches the Apps link (${stops.join(' → ')})`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#apps-table');
    t.equal(new URL(page.url()).hash, '#/apps', 'Enter follows it');
    t.equal(await page.evaluate(() => document.activeElement?.id), 'page-title', 'focus moves to the new page title');
    t.equal(await page.getAttribute('nav a[aria-current=page]', 'href'), '#/apps', 'the nav marks the current page');
  });
});

interface ErrorBody {
  error?: { code: string; message: string };
}

/** A read through the API with the page's session, as the console makes it. */
async function apiGet(page: Page, p: string): Promise<unknown> {
  return page.evaluate(async (url) => {
    const res = await fetch(url, { headers: { accept: 'application/json' } });
    return res.json();
  }, `/api/v1${p}`);
}

/** Shows a page of the console by its hash route and waits until it has loaded. */
async function go(page: Page, hash: string, ready: string): Promise<void> {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.waitForSelector(ready);
  await page.waitForFunction(() => !document.querySelector('.loading'));
}

const WRITE =
  /^(Publish|Publish app|Save|Revoke|Delete|Remove|Edit|Create group|Add user|New policy|New named location|Dismiss|Confirm compromised)$/;

/** The enabled controls in the page's main area that would change something. */
async function writeControls(page: Page): Promise<string[]> {
  const controls = await page.$$eval('main button:not([disabled]), main a', (els: DomNode[]) =>
    els.map((e) => (e.textContent ?? '').trim()),
  );
  return controls.filter((text) => WRITE.test(text));
}

async function groupNamed(page: Page, name: string): Promise<boolean> {
  return ((await apiGet(page, '/groups')) as { name: string }[]).some((g) => g.name === name);
}

/** The decision an element shows, once the what-if answer is in. */
async function decision(page: Page, selector: string): Promise<string | null> {
  await page.waitForSelector(`${selector}[data-decision]`);
  return page.getAttribute(selector, 'data-decision');
}

/** Fields without an accessible name (label, aria-label, aria-labelledby or title). */
function unlabelled(page: Page): Promise<string[]> {
  return page.$$eval('input, select, textarea', (els: DomNode[]) =>
    els
      .filter((f) => f.type !== 'hidden')
      .filter((f) => {
        const byLabel = Array.from(f.labels ?? []).some((l) => (l.textContent ?? '').trim() !== '');
        const byAria = (f.getAttribute('aria-label') ?? '').trim() !== '';
        const byRef = (f.getAttribute('aria-labelledby') ?? '')
          .split(/\s+/)
          .some((id) => id && (document.getElementById(id)?.textContent ?? '').trim() !== '');
        return !(byLabel || byAria || byRef || f.title.trim() !== '');
      })
      .map((f) => f.id || f.outerHTML.slice(0, 80)),
  );
}

/** Buttons and links without an accessible name (text, aria-label or title). */
function unnamedControls(page: Page): Promise<string[]> {
  return page.$$eval('button, a[href]', (els: DomNode[]) =>
    els
      .filter(
        (el) =>
          !((el.textContent ?? '').trim() || el.getAttribute('aria-label')?.trim() || el.getAttribute('title')?.trim()),
      )
      .map((el) => el.outerHTML.slice(0, 80)),
  );
}

/** Checks that every field, button and link of the page is named, then writes its screenshot. */
async function shot(t: Test, page: Page, name: string): Promise<void> {
  t.same(await unlabelled(page), [], `${name}: every field has an accessible name`);
  t.same(await unnamedControls(page), [], `${name}: every button and link has a name`);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(
  b: Browser,
  h: Harness,
  username: string,
  viewport = DESKTOP,
): Promise<{ context: BrowserContext; page: Page; status: number | undefined }> {
  const context = await b.newContext({ ignoreHTTPSErrors: true, viewport });
  t.teardown(() => context.close());
  const page = await context.newPage();
  await page.goto(h.url(CONSOLE, '/'));
  await page.waitForSelector('#username');
  await page.fill('#username', username);
  await page.fill('#password', PASSWORD);
  const landed = page.waitForResponse(
    (r) =>
      new URL(r.url()).hostname === CONSOLE &&
      r.request().resourceType() === 'document' &&
      // The console itself, or the sign-in's refusal at the callback (no administration role).
      (new URL(r.url()).pathname === '/' || (new URL(r.url()).pathname === '/.proxyctl/callback' && r.status() >= 400)),
  );
  await page.click('#submit');
  const response = await landed;
  return { context, page, status: response.status() };
}
