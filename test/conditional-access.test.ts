// Conditional Access in the running relay: a location-restricted app (client
// addresses 127.0.0.1 vs 127.0.0.2), re-evaluation when a session moves, step-up
// to TOTP for an MFA-required app, and the sign-in log with per-policy results.
import t from 'tap';
import { createServer } from 'node:http';
import { TOTP } from 'otpauth';
import { decodeJwt } from 'jose';
import { startHarness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { newTotpSecret } from '../src/idp/users.js';
import { addUser } from './helpers/users.js';

t.test('conditional access', async (t) => {
  const backend = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ user: req.headers['x-proxyctl-user'], assertion: req.headers['x-proxyctl-jwt-assertion'] }),
    );
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const port = (backend.address() as { port: number }).port;
  const app = (name: string) =>
    `  - { name: ${name}, externalUrl: "https://${name}.localhost/", internalUrl: "http://127.0.0.1:${port}/", assignment: any, identityHeaders: true }\n`;
  const h = await startHarness(t, {
    embedded: true,
    yaml: () => `apps:
${app('demo')}${app('ipapp')}${app('secure')}
namedLocations:
  - { name: office, cidrs: ["127.0.0.1/32", "::1/128"] }
policies:
  - name: office-only
    assignments: { users: { include: [all] }, apps: { include: [ipapp] } }
    conditions: { locations: { include: [all], exclude: [office] } }
    grant: { block: true }
  - name: mfa-for-secure
    assignments: { users: { include: [all] }, apps: { include: [secure] } }
    grant: { requireMfa: true }
  - name: watch-demo
    state: reportOnly
    assignments: { users: { include: [all] }, apps: { include: [demo] } }
    grant: { block: true }
`,
  });
  const totpSecret = newTotpSecret();
  await addUser(h.relay.store, 'bob', 'bob password 1', { email: 'bob@example.com', name: 'Bob', totpSecret });
  await addUser(h.relay.store, 'alice', 'alice password');
  await h.addConnector();
  const from2 = h.clientFrom('127.0.0.2');

  await t.test('a location-restricted app allows the office address and denies another', async (t) => {
    const inside = new BrowserSim(h.client);
    const ok = await inside.signIn(h.url('ipapp.localhost', '/'), 'bob', { password: 'bob password 1' });
    t.equal(ok.status, 200, ok.body.slice(0, 200));
    const outside = new BrowserSim(from2);
    const denied = await outside.signIn(h.url('ipapp.localhost', '/'), 'bob', { password: 'bob password 1' });
    t.equal(denied.status, 403);
    t.match(denied.body, /ERR_POLICY_DENIED/);
    t.match(denied.body, /office-only/, 'the page names the policy');
    t.ok(denied.headers['x-request-id']);

    // The same session cookie presented from the other address: evaluated again, denied.
    const cookie = inside.jar.header(`ipapp.localhost:${h.publicPort}`)!;
    const { request } = await import('undici');
    const moved = await request(h.url('ipapp.localhost', '/'), {
      dispatcher: from2,
      headers: { cookie, accept: 'application/json' },
    });
    t.equal(moved.statusCode, 403);
    const body = (await moved.body.json()) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'ERR_POLICY_DENIED');
    const back = await request(h.url('ipapp.localhost', '/'), {
      dispatcher: h.client,
      headers: { cookie, accept: 'application/json' },
    });
    t.equal(back.statusCode, 200, 'back at the office, the session works again');
    await back.body.dump();
  });

  await t.test('an MFA-required app sends a password-only session to step-up, TOTP lets it in', async (t) => {
    const sim = new BrowserSim(h.client);
    const demo = await sim.signIn(h.url('demo.localhost', '/'), 'bob', { password: 'bob password 1' });
    t.equal(demo.status, 200, 'report-only block on demo is not enforced');
    const before = decodeJwt((JSON.parse(demo.body) as { assertion: string }).assertion);
    t.same(before['amr'], ['pwd'], 'the password-only assertion says so');
    t.equal(before['acr'], 'pwd');
    const stepUpStarted = Math.floor(Date.now() / 1000);
    // The provider still has bob's password-only session; the relay asks for more.
    let page = await sim.follow(h.url('secure.localhost', '/'));
    t.match(page.body, /multi-factor authentication/, 'sent back to the provider for a second factor');
    page = await sim.submit(page, { username: 'bob', password: 'bob password 1' });
    t.match(page.body, /name="code"/, 'asked for the TOTP code');
    page = await sim.submit(page, { code: new TOTP({ secret: totpSecret }).generate() });
    t.equal(page.status, 200, page.body.slice(0, 200));
    const echoed = JSON.parse(page.body) as { user: string; assertion: string };
    t.equal(echoed.user, 'bob');
    // The backend can see the step-up in the identity assertion it is given.
    const claims = decodeJwt(echoed.assertion);
    t.ok((claims['amr'] as string[]).includes('mfa'), `assertion amr includes mfa: ${JSON.stringify(claims['amr'])}`);
    t.ok((claims['amr'] as string[]).includes('otp'), 'and the method used');
    t.equal(claims['acr'], 'mfa', 'assertion acr');
    const authTime = claims['auth_time'] as number;
    t.type(authTime, 'number', 'assertion auth_time');
    t.ok(
      authTime >= stepUpStarted - 1 && authTime <= Math.floor(Date.now() / 1000),
      'auth_time is the step-up sign-in, not the earlier one',
    );
    t.ok(authTime >= (before['auth_time'] as number), 'no earlier than the password sign-in');
    const me = JSON.parse((await sim.get(h.url('secure.localhost', '/.proxyctl/me'))).body) as { amr: string[] };
    t.ok(me.amr.includes('mfa'));
  });

  await t.test('a user without a second factor gets a clear refusal at step-up', async (t) => {
    const sim = new BrowserSim(h.client);
    let page = await sim.follow(h.url('secure.localhost', '/'));
    page = await sim.submit(page, { username: 'alice', password: 'alice password' });
    t.match(
      page.body,
      /requires multi-factor authentication/,
      'first sign-in is password only; the relay asks for step-up',
    );
    page = await sim.submit(page, { username: 'alice', password: 'alice password' });
    t.equal(page.status, 403);
    t.match(page.body, /second factor/);
  });

  await t.test('sign-ins are recorded with each policy result', async (t) => {
    const log = await h.relay.store.signIns.list(1000);
    const blocked = log.find((e) => e.result === 'failure' && e.ip === '127.0.0.2');
    t.ok(blocked, 'the denied sign-in is logged');
    t.match(blocked!.policies, [
      { name: 'office-only', applies: true, outcome: 'blocked' },
      { name: 'mfa-for-secure', applies: false },
      { name: 'watch-demo', applies: false },
    ]);
    t.ok(
      log.some((e) => e.result === 'stepUp' && e.app === 'secure'),
      'the step-up is logged',
    );
    const demo = log.find((e) => e.app === 'demo' && e.result === 'success');
    t.match(
      demo!.policies,
      [{}, {}, { name: 'watch-demo', state: 'reportOnly', outcome: 'blocked' }],
      'report-only result stored',
    );
  });
});
