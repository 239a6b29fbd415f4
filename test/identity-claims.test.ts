// Identity from token claims: e-mail only when verified (never preferred_username or upn),
// a string groups claim is one group, hostile claim shapes are dropped. A table against
// identityFromClaims, then the same rules as a user meets them: signing in through the relay
// to an app assigned by e-mail, and past a policy that excludes by e-mail.
import t from 'tap';
import type { IncomingHttpHeaders } from 'node:http';
import { decodeJwt } from 'jose';
import { identityFromClaims } from '../src/relay/auth/identity.js';
import type { Identity } from '../src/relay/auth/session.js';
import { startHeaderEcho } from './helpers/backend.js';
import { startHarness, type Harness } from './helpers/harness.js';
import { BrowserSim } from './helpers/browser-sim.js';
import type { UserClaims } from './helpers/idp.js';

const NOW = Date.UTC(2025, 2, 12, 10, 0, 0);
const strict = { groupsClaim: 'groups', emailVerifiedWhenAbsent: false };
const lenient = { groupsClaim: 'groups', emailVerifiedWhenAbsent: true };
const idOf = (claims: Record<string, unknown>, cfg = strict): Identity =>
  identityFromClaims({ sub: 'u-1', ...claims }, cfg, NOW);

t.test('e-mail is taken only when verified', async (t) => {
  const email = 'carol@example.test';
  const rows: [string, Record<string, unknown>, typeof strict, string | undefined][] = [
    ['verified (true)', { email, email_verified: true }, strict, email],
    ['verified ("true", as some providers send it)', { email, email_verified: 'true' }, strict, email],
    ['email_verified false', { email, email_verified: false }, strict, undefined],
    ['email_verified "false"', { email, email_verified: 'false' }, strict, undefined],
    ['email_verified "TRUE" (not the spelling providers use)', { email, email_verified: 'TRUE' }, strict, undefined],
    ['email_verified 1', { email, email_verified: 1 }, strict, undefined],
    ['email_verified null', { email, email_verified: null }, strict, undefined],
    ['email_verified absent', { email }, strict, undefined],
    ['absent, emailVerifiedWhenAbsent', { email }, lenient, email],
    ['false, emailVerifiedWhenAbsent', { email, email_verified: false }, lenient, undefined],
    ['"false", emailVerifiedWhenAbsent', { email, email_verified: 'false' }, lenient, undefined],
    ['null, emailVerifiedWhenAbsent (present, not true)', { email, email_verified: null }, lenient, undefined],
    [
      'no email, preferred_username is an address',
      { preferred_username: email, email_verified: true },
      strict,
      undefined,
    ],
    ['no email, upn is an address', { upn: email, email_verified: true }, lenient, undefined],
    [
      'unverified email, preferred_username is an address',
      { email: 'x@evil.test', email_verified: false, preferred_username: email },
      strict,
      undefined,
    ],
    ['email not a string', { email: ['carol@example.test'], email_verified: true }, strict, undefined],
    ['email empty', { email: '', email_verified: true }, strict, undefined],
    ['email without @', { email: 'carol', email_verified: true }, strict, undefined],
    ['email with two @', { email: 'carol@evil.test@example.test', email_verified: true }, strict, undefined],
    [
      'email with a comma (a list in a header)',
      { email: 'a@evil.test,carol@example.test', email_verified: true },
      strict,
      undefined,
    ],
    [
      'email with CR LF',
      { email: 'carol@example.test\r\nx-proxyctl-user: admin', email_verified: true },
      strict,
      undefined,
    ],
    ['email with a space', { email: 'carol @example.test', email_verified: true }, strict, undefined],
    ['email with a NUL', { email: 'carol\u0000@example.test', email_verified: true }, strict, undefined],
    [
      'email of 300 characters',
      { email: `${'a'.repeat(60)}@${'b'.repeat(239)}`, email_verified: true },
      strict,
      undefined,
    ],
    [
      'email kept as the provider spells it',
      { email: 'Carol@Example.TEST', email_verified: true },
      strict,
      'Carol@Example.TEST',
    ],
    ['non-ASCII address', { email: 'jürgen@exämple.test', email_verified: true }, strict, 'jürgen@exämple.test'],
  ];
  for (const [name, claims, cfg, expected] of rows) t.equal(idOf(claims, cfg).email, expected, name);
});

t.test('name may fall back to preferred_username (display only)', async (t) => {
  t.equal(idOf({ name: 'Carol' }).name, 'Carol');
  t.equal(idOf({ preferred_username: 'carol' }).name, 'carol');
  t.equal(idOf({ name: 42, preferred_username: 'carol' }).name, 'carol');
  t.equal(idOf({ upn: 'carol@example.test' }).name, undefined, 'not upn');
});

t.test('groups: a string is one group; junk is dropped; caps', async (t) => {
  const rows: [string, unknown, string[]][] = [
    ['a string with a space is one group', 'Domain staff', ['Domain staff']],
    ['a string with tabs and newlines is still one value', 'a\tb\nc', ['a\tb\nc']],
    ['an array', ['staff', 'Domain staff'], ['staff', 'Domain staff']],
    ['non-strings in the array are dropped', ['staff', 7, null, { name: 'admins' }, ['admins'], true], ['staff']],
    ['empty strings dropped', ['', 'staff'], ['staff']],
    ['duplicates once', ['staff', 'staff'], ['staff']],
    ['a group over 256 characters is dropped, not cut', ['x'.repeat(257), 'staff'], ['staff']],
    ['a group of 256 characters is kept', ['y'.repeat(256)], ['y'.repeat(256)]],
    ['a number', 42, []],
    ['an object', { staff: true }, []],
    ['null', null, []],
    ['absent', undefined, []],
    ['empty string', '', []],
  ];
  for (const [name, groups, expected] of rows) t.same(idOf({ groups }).groups, expected, name);
  const many = Array.from({ length: 5000 }, (_, i) => `g${i}`);
  t.equal(idOf({ groups: many }).groups.length, 200, 'at most 200 groups');
  t.same(
    identityFromClaims({ sub: 'u', roles: 'Domain staff' }, { ...strict, groupsClaim: 'roles' }, NOW).groups,
    ['Domain staff'],
    'the configured claim',
  );
});

t.test('amr, acr, auth_time', async (t) => {
  t.same(idOf({ amr: ['pwd', 'mfa', 3] }).amr, ['pwd', 'mfa']);
  t.same(idOf({ amr: 'pwd mfa' }).amr, ['pwd mfa'], 'a string amr is one value, never "mfa" by splitting');
  t.equal(idOf({ amr: Array.from({ length: 50 }, (_, i) => `m${i}`) }).amr.length, 20);
  t.equal(idOf({ acr: 'mfa' }).acr, 'mfa');
  t.equal(idOf({ acr: 1 }).acr, undefined);
  const at = Math.floor(NOW / 1000) - 600;
  t.equal(idOf({ auth_time: at }).authTime, at * 1000);
  t.equal(idOf({ auth_time: at + 0.9 }).authTime, at * 1000, 'whole seconds');
  t.equal(idOf({ auth_time: Math.floor(NOW / 1000) + 3600 }).authTime, NOW, 'a future auth_time is now at most');
  for (const bad of ['1700000000', -1, 0, Number.NaN, null])
    t.equal(idOf({ auth_time: bad }).authTime, undefined, `auth_time ${String(bad)}`);
  t.throws(() => identityFromClaims({ sub: '' }, strict, NOW), { code: 'ERR_SIGNIN_TOKEN' });
  t.throws(() => identityFromClaims({ sub: 7 }, strict, NOW), { code: 'ERR_SIGNIN_TOKEN' });
  t.throws(
    () => identityFromClaims({ sub: 'x'.repeat(300) }, strict, NOW),
    { code: 'ERR_SIGNIN_TOKEN' },
    'an over-long sub is no sub, not a cut one',
  );
});

interface Echo {
  headers: IncomingHttpHeaders;
}

const appsYaml = (port: number) => `apps:
  - { name: payroll, externalUrl: "https://payroll.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:payroll", clientSecret: s1, assignedUsers: [Carol@Example.TEST], identityHeaders: true }
  - { name: team, externalUrl: "https://team.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:team", clientSecret: s2, assignedGroups: [staff], identityHeaders: true }
  - { name: wiki, externalUrl: "https://wiki.test/", internalUrl: "http://127.0.0.1:${port}/", clientId: "urn:wiki", clientSecret: s3, assignment: any, identityHeaders: true }
policies:
  - name: only-dave
    assignments: { users: { include: [all], exclude: [Dave@Example.test] }, apps: { include: [wiki] } }
    grant: { block: true }
`;

function register(h: Harness): void {
  for (const [app, secret] of [
    ['payroll', 's1'],
    ['team', 's2'],
    ['wiki', 's3'],
  ] as const) {
    h.idp.registerClient({
      clientId: `urn:${app}`,
      clientSecret: secret,
      redirectUris: [`https://${app}.test:${h.publicPort}/.proxyctl/callback`],
    });
  }
}

async function signIn(
  h: Harness,
  app: string,
  sub: string,
  claims: UserClaims,
): Promise<{ status: number; code: string | undefined; headers: IncomingHttpHeaders | undefined }> {
  h.idp.setUser(sub, claims);
  const r = await new BrowserSim(h.client).signIn(h.url(`${app}.test`, '/'), sub);
  const code = /\b(ERR_[A-Z_]+)\b/.exec(r.body)?.[1];
  return {
    status: r.status,
    code: r.status === 200 ? undefined : code,
    headers: r.status === 200 ? (JSON.parse(r.body) as Echo).headers : undefined,
  };
}

t.test('as a user meets it: assignment and policies trust only a verified e-mail', async (t) => {
  const port = await startHeaderEcho(t);
  const h = await startHarness(t, { yaml: () => appsYaml(port) });
  register(h);
  await h.addConnector();
  const carol = 'carol@example.test';
  const rows: [string, UserClaims, number, string | undefined][] = [
    ['verified', { email: carol, email_verified: true }, 200, undefined],
    ['verified as the string "true"', { email: carol, email_verified: 'true' }, 200, undefined],
    ['verified, other case than assigned', { email: 'CAROL@example.TEST', email_verified: true }, 200, undefined],
    ['email_verified false', { email: carol, email_verified: false }, 403, 'ERR_NOT_ASSIGNED'],
    ['email_verified "false"', { email: carol, email_verified: 'false' }, 403, 'ERR_NOT_ASSIGNED'],
    ['email_verified absent', { email: carol, email_verified: null }, 403, 'ERR_NOT_ASSIGNED'],
    ['no email, preferred_username is the assigned address', { preferred_username: carol }, 403, 'ERR_NOT_ASSIGNED'],
    ['no email, upn is the assigned address', { upn: carol }, 403, 'ERR_NOT_ASSIGNED'],
    [
      'unverified own address, preferred_username the assigned one',
      { email: 'm@evil.test', email_verified: false, preferred_username: carol },
      403,
      'ERR_NOT_ASSIGNED',
    ],
  ];
  let n = 0;
  for (const [name, claims, status, code] of rows) {
    const r = await signIn(h, 'payroll', `u${++n}`, claims);
    t.equal(r.status, status, `${name}: ${status}`);
    t.equal(r.code, code, `${name}: ${code ?? 'signed in'}`);
    if (r.headers) t.equal(r.headers['x-proxyctl-email'], claims.email, `${name}: the backend sees the address`);
  }
  // A subject is compared exactly: a sub spelled like the assigned address in another case is not it.
  const bySub = await signIn(h, 'payroll', 'carol@example.test', {});
  t.equal(bySub.code, 'ERR_NOT_ASSIGNED', 'sub compared with case');
  t.equal((await signIn(h, 'payroll', 'Carol@Example.TEST', {})).status, 200, 'sub exactly as assigned');

  await t.test('the backend gets no unverified address, in headers or the assertion', async (t) => {
    const r = await signIn(h, 'wiki', 'dave-unverified', {
      email: 'dave@example.test',
      email_verified: false,
      preferred_username: 'dave@example.test',
    });
    t.equal(r.code, 'ERR_POLICY_DENIED', 'cannot use an unverified address to be excluded from a blocking policy');
    const ok = await signIn(h, 'wiki', 'dave', {
      email: 'DAVE@example.test',
      email_verified: true,
      preferred_username: 'dave',
    });
    t.equal(ok.status, 200, 'a verified address is excluded, case aside');
    const eve = await signIn(h, 'team', 'eve', {
      email: 'eve@example.test',
      email_verified: false,
      name: 'Eve',
      groups: ['staff'],
    });
    t.equal(eve.status, 200);
    t.notOk(eve.headers?.['x-proxyctl-email'], 'no X-Proxyctl-Email');
    const assertion = decodeJwt(String(eve.headers?.['x-proxyctl-jwt-assertion']));
    t.equal(assertion['email'], undefined, 'no email claim in the assertion');
    t.equal(assertion['name'], 'Eve');
  });

  await t.test('a string groups claim is one group', async (t) => {
    t.equal(
      (await signIn(h, 'team', 'g1', { groups: 'Domain staff' })).code,
      'ERR_NOT_ASSIGNED',
      '"Domain staff" is not "staff"',
    );
    const one = await signIn(h, 'team', 'g2', { groups: 'staff' });
    t.equal(one.status, 200, 'a single group sent as a string');
    t.same(decodeJwt(String(one.headers?.['x-proxyctl-jwt-assertion']))['groups'], ['staff']);
    const junk = await signIn(h, 'team', 'g3', { groups: [7, { name: 'staff' }, ['staff'], 'staff'] });
    t.equal(junk.status, 200, 'non-string members dropped, the string kept');
    t.same(decodeJwt(String(junk.headers?.['x-proxyctl-jwt-assertion']))['groups'], ['staff']);
    t.equal(
      (await signIn(h, 'team', 'g4', { groups: [7, { name: 'staff' }] })).code,
      'ERR_NOT_ASSIGNED',
      'only junk: no groups',
    );
  });
});

t.test('identity.emailVerifiedWhenAbsent: an absent claim counts as verified, a false one never', async (t) => {
  const port = await startHeaderEcho(t);
  // embedded: true only keeps the harness from writing its own identity: line.
  const h = await startHarness(t, {
    embedded: true,
    yaml: ({ issuer }) => `identity: { issuer: "${issuer}", emailVerifiedWhenAbsent: true }\n${appsYaml(port)}`,
  });
  register(h);
  await h.addConnector();
  const carol = 'carol@example.test';
  const absent = await signIn(h, 'payroll', 'a1', { email: carol, email_verified: null });
  t.equal(absent.status, 200, 'absent: assigned');
  t.equal(absent.headers?.['x-proxyctl-email'], carol);
  t.equal(
    (await signIn(h, 'payroll', 'a2', { email: carol, email_verified: false })).code,
    'ERR_NOT_ASSIGNED',
    'false: not assigned',
  );
  t.equal(
    (await signIn(h, 'payroll', 'a3', { email: carol, email_verified: 'false' })).code,
    'ERR_NOT_ASSIGNED',
    '"false": not assigned',
  );
  t.equal(
    (await signIn(h, 'payroll', 'a4', { preferred_username: carol })).code,
    'ERR_NOT_ASSIGNED',
    'still no fallback to preferred_username',
  );
  t.equal((await signIn(h, 'payroll', 'a5', { email: carol, email_verified: true })).status, 200, 'verified: assigned');
});
