// The embedded provider's ID token: an e-mail set by an administrator is marked
// verified (the relay trusts an e-mail only with email_verified: true); a user
// without one gets neither claim, never an unverified or empty address.
import t from 'tap';
import { IdpBrowser, startIdpServer } from './helpers/embedded-idp.js';

t.test('email_verified in the ID token', async (t) => {
  const s = await startIdpServer(t);
  await s.addUser('alice', 'alice password 1', { email: 'alice@example.com', name: 'Alice', groups: ['staff'] });
  await s.addUser('carol', 'carol password 1');

  const claimsOf = async (username: string, password: string, scope?: string) => {
    const b = new IdpBrowser(s);
    const answer = await b.post(await b.open(scope ? { scope } : {}), { username, password });
    return b.idTokenClaims(await b.toCallback(answer));
  };

  const alice = await claimsOf('alice', 'alice password 1');
  t.match(alice, { sub: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice', groups: ['staff'] });

  const carol = await claimsOf('carol', 'carol password 1');
  t.equal(carol['sub'], 'carol');
  t.notOk('email' in carol, 'no e-mail claim for a user without one');
  t.notOk('email_verified' in carol, 'and no email_verified either');

  const narrow = await claimsOf('alice', 'alice password 1', 'openid profile');
  t.notOk('email' in narrow || 'email_verified' in narrow, 'without the email scope, neither');
});

t.test('sid names the provider session in the ID token and in a JWT access token', async (t) => {
  const s = await startIdpServer(t);
  await s.addUser('alice', 'alice password 1', { email: 'alice@example.com' });
  const signIn = async () => {
    const b = new IdpBrowser(s);
    const answer = await b.post(await b.open({ resource: 'urn:api' }), {
      username: 'alice',
      password: 'alice password 1',
    });
    return b.tokens(await b.toCallback(answer));
  };
  const one = await signIn();
  t.type(one.id['sid'], 'string', 'the ID token has a sid');
  t.ok(one.access, 'a JWT access token for the resource');
  t.equal(one.access?.['sid'], one.id['sid'], 'the access token names the same provider session');
  t.equal(one.access?.['email_verified'], true, 'and carries the verified e-mail');
  const two = await signIn();
  t.not(two.id['sid'], one.id['sid'], 'another browser, another session');
});
