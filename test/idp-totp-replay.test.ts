// A TOTP code is good once (RFC 6238 §5.2): the embedded provider remembers the
// last accepted time step per user in the store and refuses any code whose step
// is not later, over HTTPS, across two racing submissions, and across restarts.
import t from 'tap';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Secret, TOTP } from 'otpauth';
import { newTotpSecret } from '../src/idp/users.js';
import { openSqliteStore } from '../src/store/index.js';
import { IdpBrowser, startIdpServer } from './helpers/embedded-idp.js';
import { tempDir } from './helpers/proc.js';
import { MIGRATIONS } from '../src/store/sqlite/migrations.js';

const STEP = 30_000;

t.test('the store keeps the last accepted step per user, atomically', async (t) => {
  const dir = tempDir(t);
  let store = openSqliteStore(dir);
  const table: [string, number, boolean, string][] = [
    ['bob', 1000, true, 'first code'],
    ['bob', 1000, false, 'same step again'],
    ['bob', 999, false, 'an earlier step'],
    ['bob', 1001, true, 'the next step'],
    ['bob', 1000, false, 'an earlier step after a later one'],
    ['alice', 1000, true, 'another user is separate'],
    ['bob', 5000, true, 'much later'],
  ];
  for (const [user, step, ok, name] of table) t.equal(await store.users.acceptTotpStep(user, step), ok, name);
  await store.close();
  store = openSqliteStore(dir);
  t.teardown(() => store.close());
  t.equal(await store.users.acceptTotpStep('bob', 5000), false, 'still refused after a restart');
  t.equal(await store.users.acceptTotpStep('bob', 5001), true);
});

t.test('a store from before the table gets it by migration', async (t) => {
  const dir = tempDir(t);
  // What a version-4 store holds, written by that version's migrations.
  const db = new Database(path.join(dir, 'proxyctl.db'));
  for (const m of MIGRATIONS.slice(0, 4)) db.exec(m);
  db.pragma('user_version = 4');
  db.close();
  const store = openSqliteStore(dir);
  t.teardown(() => store.close());
  t.equal(await store.users.acceptTotpStep('bob', 1), true);
  t.equal(await store.users.acceptTotpStep('bob', 1), false);
});

t.test('over HTTPS', async (t) => {
  let now = Math.floor(Date.now() / STEP) * STEP + 10_000; // 10 s into a step
  const s = await startIdpServer(t, { now: () => now });
  const secret = newTotpSecret();
  await s.addUser('bob', 'bob password 1', { totpSecret: secret });
  const code = (offsetSteps = 0) =>
    TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: now + offsetSteps * STEP });

  /** Password, then `totp`: the provider's answer to the code (or to the password, when that is refused). */
  const withCode = async (totp: string, b = new IdpBrowser(s)) => {
    const page = await b.post(await b.open({ mfa: true }), { username: 'bob', password: 'bob password 1' });
    if (page.status !== 200 || !/name="code"/.test(page.body)) return { b, answer: page };
    return { b, answer: await b.post(page, { code: totp }) };
  };

  await t.test('a code is accepted once; earlier steps never after a later one', async (t) => {
    const first = await withCode(code());
    t.equal(first.answer.status, 303, 'the current code signs in');
    const claims = await first.b.idTokenClaims(await first.b.toCallback(first.answer));
    t.match(claims, { sub: 'bob', acr: 'mfa', amr: ['pwd', 'otp', 'mfa'] });

    t.equal((await withCode(code())).answer.status, 401, 'the same code again is refused');
    t.equal((await withCode(code(-1))).answer.status, 401, "the previous step's code is refused after the current one");
    const next = await withCode(code(1));
    t.equal(next.answer.status, 303, "the next step's code is accepted");
    t.equal((await withCode(code())).answer.status, 401, 'and then the current one no longer is');
    now += 2 * STEP;
    t.equal((await withCode(code(-1))).answer.status, 401, 'a minute later, the accepted one is still refused');
    t.equal((await withCode(code())).answer.status, 303, 'a fresh code works');
  });

  await t.test('two submissions of one code racing: exactly one wins', async (t) => {
    now += 2 * STEP;
    const fresh = code();
    const b1 = new IdpBrowser(s);
    const b2 = new IdpBrowser(s);
    const [p1, p2] = await Promise.all(
      [b1, b2].map(async (b) => b.post(await b.open({ mfa: true }), { username: 'bob', password: 'bob password 1' })),
    );
    const answers = await Promise.all([b1.post(p1!, { code: fresh }), b2.post(p2!, { code: fresh })]);
    t.same(answers.map((a) => a.status).sort(), [303, 401]);
  });

  await t.test('replays count as failures for the throttle', async (t) => {
    const used = code();
    let last = 0;
    for (let i = 0; i < 8 && last !== 429; i++) last = (await withCode(used)).answer.status;
    t.equal(last, 429, 'replaying is slowed like guessing');
  });
});
