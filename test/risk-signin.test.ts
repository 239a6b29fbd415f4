// Risk in the running relay, each scenario replayed through real sign-ins at the
// embedded provider: a listed anonymous address makes a medium sign-in risk that a
// policy answers with MFA, and completing it remediates the detections; a user who
// cannot complete it keeps a user risk; a user confirmed compromised is blocked by a
// userRisk policy until dismissed; a revoked session's cookie, a replayed callback
// and a password spray are detections; every row carries kind, client and methods.
import t from 'tap';
import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import Database from 'better-sqlite3';
import { TOTP } from 'otpauth';
import { startHarness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { newTotpSecret } from '../src/idp/users.js';
import { addUser } from './helpers/users.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';
import type { Store } from '../src/store/index.js';

const rows = (store: Store, subject: string) => store.signIns.query({ subject, limit: 1000 });

t.test('sign-in risk and user risk in the relay', async (t) => {
  const backend = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ user: req.headers['x-proxyctl-user'] }));
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const port = (backend.address() as { port: number }).port;
  const lists = tempDir(t);
  const anonymous = path.join(lists, 'anonymous.txt');
  // The Tor exit list format, and a plain address: 127.0.0.2 plays an anonymising VPN exit.
  writeFileSync(anonymous, 'ExitNode 0011223344556677\nExitAddress 127.0.0.2 2026-12-07 00:00:00\n');
  const h = await startHarness(t, {
    embedded: true,
    yaml: () => `apps:
  - { name: demo, externalUrl: "https://demo.localhost/", internalUrl: "http://127.0.0.1:${port}/", assignment: any, identityHeaders: true }
risk:
  anonymousIpLists: [${JSON.stringify(anonymous)}]
  passwordSpray: { accounts: 5, window: 1h }
policies:
  - name: mfa-when-risky
    assignments: { users: { include: [all] }, apps: { include: [all] } }
    conditions: { signInRisk: [medium, high] }
    grant: { requireMfa: true }
  - name: block-compromised
    assignments: { users: { include: [all] }, apps: { include: [all] } }
    conditions: { userRisk: [high] }
    grant: { block: true }
`,
  });
  const totpSecret = newTotpSecret();
  await addUser(h.relay.store, 'bob', 'bob password 1', { email: 'bob@example.com', totpSecret });
  await addUser(h.relay.store, 'carol', 'carol password');
  await addUser(h.relay.store, 'dave', 'dave password');
  await h.addConnector();
  const store = h.relay.store;
  const vpn = h.clientFrom('127.0.0.2');

  await t.test('an anonymous address: medium risk, MFA asked, completing it remediates', async (t) => {
    const sim = new BrowserSim(vpn);
    let page = await sim.signIn(h.url('demo.localhost', '/'), 'bob', { password: 'bob password 1' });
    t.match(page.body, /multi-factor authentication/, 'the risky sign-in is sent back for a second factor');
    page = await sim.submit(page, { username: 'bob', password: 'bob password 1' });
    page = await sim.submit(page, { code: new TOTP({ secret: totpSecret }).generate() });
    t.equal(page.status, 200, page.body.slice(0, 200));
    const log = await waitFor(async () => {
      const r = await rows(store, 'bob');
      return r.some((x) => x.result === 'success') ? r : undefined;
    });
    const [stepUp, success] = [log!.find((x) => x.result === 'stepUp'), log!.find((x) => x.result === 'success')];
    t.match(stepUp, {
      kind: 'interactive',
      ip: '127.0.0.2',
      risk: 'medium',
      detections: [{ type: 'anonymousIp', level: 'medium' }],
      reason: 'policy mfa-when-risky',
      methods: ['pwd'],
    });
    t.match(success, { risk: 'medium', methods: ['pwd', 'otp', 'mfa'], clientType: 'script' });
    t.match(
      (success!.policies as { name: string; outcome: string }[]).find((p) => p.name === 'mfa-when-risky'),
      { outcome: 'granted' },
    );
    await waitFor(
      async () => {
        const ds = await store.risk.detections({ subject: 'bob' });
        return ds.length >= 2 && ds.every((d) => d.details['remediated'] === 'mfa');
      },
      { what: "bob's detections remediated" },
    );
    t.equal(await h.relay.risk.userRisk('bob'), 'none', 'a remediated risk does not follow the user');
  });

  await t.test('a user who cannot answer the second factor keeps the risk', async (t) => {
    const sim = new BrowserSim(vpn);
    let page = await sim.signIn(h.url('demo.localhost', '/'), 'carol', { password: 'carol password' });
    t.match(page.body, /multi-factor authentication/);
    page = await sim.submit(page, { username: 'carol', password: 'carol password' });
    t.equal(page.status, 403, 'no second factor enrolled: refused');
    t.equal(
      await h.relay.risk.userRisk('carol'),
      'medium',
      "the anonymous-address detection counts toward carol's risk",
    );
    const from127 = new BrowserSim(h.client);
    const ok = await from127.signIn(h.url('demo.localhost', '/'), 'carol', { password: 'carol password' });
    t.equal(ok.status, 200, 'a medium user risk alone blocks nothing here');
  });

  await t.test('confirmed compromised: a userRisk policy blocks, a dismissal lifts it', async (t) => {
    await store.risk.confirm('dave', 'admin@example.com', Date.now());
    h.relay.risk.forgetUserRisks();
    const sim = new BrowserSim(h.client);
    const blocked = await sim.signIn(h.url('demo.localhost', '/'), 'dave', { password: 'dave password' });
    t.equal(blocked.status, 403);
    t.match(blocked.body, /block-compromised/);
    const [row] = await rows(store, 'dave');
    t.match(row, { result: 'failure', reason: 'policy block-compromised' });
    await store.risk.dismiss('dave', 'admin@example.com', Date.now());
    h.relay.risk.forgetUserRisks();
    const again = new BrowserSim(h.client);
    const ok = await again.signIn(h.url('demo.localhost', '/'), 'dave', { password: 'dave password' });
    t.equal(ok.status, 200, ok.body.slice(0, 200));
  });

  await t.test("a revoked session's cookie presented again is a detection against the user", async (t) => {
    const sim = new BrowserSim(h.client);
    const ok = await sim.signIn(h.url('demo.localhost', '/'), 'dave', { password: 'dave password' });
    t.equal(ok.status, 200);
    const cookie = sim.jar.header(`demo.localhost:${h.publicPort}`)!;
    const me = JSON.parse((await sim.get(h.url('demo.localhost', '/.proxyctl/me'))).body) as { sid: string };
    await store.sessions.revoke(me.sid);
    const res = await request(h.url('demo.localhost', '/'), {
      dispatcher: h.client,
      headers: { cookie, accept: 'application/json' },
    });
    t.equal(res.statusCode, 401, 'the cookie is refused');
    await res.body.dump();
    const d = await waitFor(
      async () => (await store.risk.detections({ subject: 'dave', type: 'revokedSessionReplay' }))[0],
    );
    t.match(d, { level: 'medium', app: 'demo', ip: '127.0.0.1', details: { sid: me.sid } });
    for (let i = 0; i < 5; i++) {
      const again = await request(h.url('demo.localhost', '/'), {
        dispatcher: h.client,
        headers: { cookie, accept: 'application/json' },
      });
      await again.body.dump();
    }
    const revoked = await h.relay.store.risk.detections({ subject: 'dave', type: 'revokedSessionReplay' });
    t.equal(revoked.length, 1, 'one detection per session an hour: a client cannot fill the store');
  });

  await t.test('a replayed callback is a refused sign-in with a stateReplay detection', async (t) => {
    const sim = new BrowserSim(h.client);
    const atLogin = await sim.follow(h.url('demo.localhost', '/'));
    const form = /action="([^"]+)"/.exec(atLogin.body)![1]!;
    const posted = await sim.get(new URL(form, atLogin.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'dave', password: 'dave password' }).toString(),
    });
    // Follow to the relay's callback by hand, keeping its URL.
    let next = new URL(posted.headers['location'] as string, posted.url).href;
    while (!next.includes('/.proxyctl/callback')) {
      const r = await sim.get(next);
      next = new URL(r.headers['location'] as string, r.url).href;
    }
    const first = await sim.get(next);
    t.equal(first.status, 302, 'the first use signs in');
    const replayed = await sim.get(next);
    t.equal(replayed.status, 400);
    t.match(replayed.body, /ERR_SIGNIN_STATE/);
    const row = await waitFor(async () =>
      (await store.signIns.query({ result: 'failure', order: 'desc', limit: 20 })).find((r) =>
        r.detections.some((d) => d.type === 'stateReplay'),
      ),
    );
    t.match(row, { reason: 'ERR_SIGNIN_STATE', subject: null, risk: 'medium', app: 'demo' });

    // The used code again, under a fresh sign-in's state from this browser: the provider refuses it.
    sim.jar.byHost.get(`demo.localhost:${h.publicPort}`)?.delete('__Host-proxyctl-demo');
    const start = await sim.get(h.url('demo.localhost', '/'));
    const fresh = new URL(start.headers['location'] as string).searchParams.get('state')!;
    const reused = new URL(next);
    reused.searchParams.set('state', fresh);
    const codeReplay = await sim.get(reused.href);
    t.equal(codeReplay.status, 401, codeReplay.body.slice(0, 200));
    t.match(codeReplay.body, /ERR_SIGNIN_CODE/);
    await waitFor(
      async () =>
        (await store.signIns.query({ result: 'failure', order: 'desc', limit: 20 })).find((r) =>
          r.detections.some((d) => d.type === 'codeReplay'),
        ),
      { what: 'a codeReplay detection' },
    );
  });

  await t.test("an ID token whose nonce is not the sign-in's is a nonceMismatch detection", async (t) => {
    const sim = new BrowserSim(h.client);
    const atProvider = await sim.follow(h.url('demo.localhost', '/'), (u) =>
      u.pathname.includes('/.proxyctl/callback'),
    );
    // Sign in at the provider, stopping before the relay's callback.
    const form = /action="([^"]+)"/.exec(atProvider.body)![1]!;
    let r = await sim.get(new URL(form, atProvider.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: 'dave', password: 'dave password' }).toString(),
    });
    let next = new URL(r.headers['location'] as string, r.url);
    while (!next.pathname.includes('/.proxyctl/callback')) {
      r = await sim.get(next.href);
      next = new URL(r.headers['location'] as string, r.url);
    }
    // The relay's saved nonce no longer matches the one the provider put in the ID token.
    const db = new Database(path.join(h.config.dataDir, 'proxyctl.db'));
    t.teardown(() => db.close());
    db.prepare(`UPDATE signin_states SET nonce = 'not-the-nonce-sent' WHERE state = ?`).run(
      next.searchParams.get('state'),
    );
    const refused = await sim.get(next.href);
    t.equal(refused.status, 401, refused.body.slice(0, 200));
    t.match(refused.body, /ERR_SIGNIN_TOKEN/);
    const row = await waitFor(
      async () =>
        (await store.signIns.query({ result: 'failure', order: 'desc', limit: 20 })).find((x) =>
          x.detections.some((d) => d.type === 'nonceMismatch'),
        ),
      { what: 'a nonceMismatch detection' },
    );
    t.match(row, { reason: 'ERR_SIGNIN_TOKEN', risk: 'medium' });
  });

  await t.test('a password spray from one address is detected; each attempt is logged', async (t) => {
    const sprayer = new BrowserSim(h.clientFrom('127.0.0.3'));
    const atLogin = await sprayer.follow(h.url('demo.localhost', '/'));
    const action = new URL(/action="([^"]+)"/.exec(atLogin.body)![1]!, atLogin.url).href;
    const names = ['bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];
    for (const [i, username] of names.entries()) {
      const r = await sprayer.get(action, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ username, password: i % 2 ? 'Winter2026!' : 'Summer2026!' }).toString(),
      });
      t.equal(r.status, 401, `${username}: refused`);
    }
    const spray = await waitFor(async () => (await store.risk.detections({ type: 'passwordSpray' }))[0]);
    t.match(spray, { level: 'high', ip: '127.0.0.3', subject: null });
    const provider = await waitFor(async () => {
      const r = await store.signIns.query({ since: 0, limit: 1000 });
      const p = r.filter((x) => x.kind === 'provider' && x.ip === '127.0.0.3');
      return p.length === names.length ? p : undefined;
    });
    t.match(
      provider!.find((x) => x.subject === 'bob'),
      { result: 'failure', reason: 'password: wrong password', app: null },
    );
    t.match(
      provider!.find((x) => x.subject === null),
      { reason: 'password: unknown user' },
    );
    t.notOk(JSON.stringify(provider).includes('Winter2026'), 'no password is ever stored');
  });
});
