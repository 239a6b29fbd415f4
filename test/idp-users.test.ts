// Embedded identity provider users: scrypt password hashes, TOTP, the strict users
// file, the directory that merges file and store, and the `relay users` admin
// commands against a temporary data directory (the throttle: idp-throttle.test.ts).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Secret, TOTP, URI } from 'otpauth';
import {
  UserDirectory,
  checkPasswordStrength,
  hashPassword,
  loadUsersFile,
  newTotpSecret,
  parseUsersFile,
  totpStep,
  totpUri,
  verifyPassword,
  verifyTotp,
} from '../src/idp/users.js';
import { addUser, enrollTotp, listUsers, removeUser, setPassword, type UserListing } from '../src/commands/users.js';
import { isProxyctlError, type ProxyctlError } from '../src/errors.js';
import { openSqliteStore, type Store, type UserRecord } from '../src/store/index.js';
import { tempDir } from './helpers/proc.js';

interface Issue {
  path: string;
  found: string;
  expected: string;
}

/** Runs fn, expecting a ProxyctlError; returns it. */
async function refused(fn: () => unknown): Promise<ProxyctlError> {
  try {
    await fn();
  } catch (err) {
    if (isProxyctlError(err)) return err;
    throw err;
  }
  throw new Error('expected a ProxyctlError, nothing was thrown');
}

const issuesOf = (err: ProxyctlError): Issue[] => (err.details?.['issues'] ?? []) as Issue[];

const HASH_RE = /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/;
// RFC 6238's test key "12345678901234567890" in base32.
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
const T0 = 1_700_000_010_000; // 10 s into a 30-second step
const codeAt = (secret: string, timestamp: number): string =>
  TOTP.generate({ secret: Secret.fromBase32(secret), timestamp });

t.test('password hashing', async (t) => {
  const hash = await hashPassword('correct horse battery');
  t.match(hash, HASH_RE, 'scrypt$N$r$p$salt$hash');
  t.equal(await verifyPassword('correct horse battery', hash), true, 'round trip');
  t.equal(await verifyPassword('correct horse batterY', hash), false, 'wrong password');
  t.equal(await verifyPassword('', hash), false, 'empty password');
  const again = await hashPassword('correct horse battery');
  t.not(again, hash, 'a fresh salt each time');
  t.equal(await verifyPassword('correct horse battery', again), true);

  const [, n, r, p, salt, key] = hash.split('$') as [string, string, string, string, string, string];
  const malformed: unknown[] = [
    '',
    'garbage',
    'scrypt',
    'scrypt$',
    null,
    undefined,
    42,
    {},
    hash.slice(0, -1), // truncated key: not canonical base64url
    `${hash}$extra`,
    `bcrypt$${n}$${r}$${p}$${salt}$${key}`,
    `scrypt$30000$${r}$${p}$${salt}$${key}`, // N not a power of two
    `scrypt$1$${r}$${p}$${salt}$${key}`,
    `scrypt$${2 ** 24}$${r}$${p}$${salt}$${key}`, // absurd memory
    `scrypt$${n}$0$${p}$${salt}$${key}`,
    `scrypt$${n}$${r}$0$${salt}$${key}`,
    `scrypt$${n}$${r}$${p}$$${key}`,
    `scrypt$${n}$${r}$${p}$c2FsdA$${key}`, // salt too short
    `scrypt$${n}$${r}$${p}$${salt}$a2V5`, // key too short
    `scrypt$${n}$${r}$${p}$${salt}+$${key}`, // not base64url
    `scrypt$-${n}$${r}$${p}$${salt}$${key}`,
    ` ${hash}`,
  ];
  for (const bad of malformed) {
    t.equal(await verifyPassword('correct horse battery', bad as string), false, `malformed: ${JSON.stringify(bad)}`);
  }
  t.equal(await verifyPassword(undefined as unknown as string, hash), false, 'non-string password');
  t.equal(await verifyPassword('x'.repeat(5000), hash), false, 'very long password refused early');

  const unicode = await hashPassword('pässwörd-ünïcode');
  t.equal(await verifyPassword('pässwörd-ünïcode', unicode), true, 'unicode round trip');
  t.equal(
    await verifyPassword('pa\u0308sswo\u0308rd-u\u0308ni\u0308code', unicode),
    true,
    'NFC-normalised before hashing',
  );
});

t.test('password strength', async (t) => {
  for (const bad of ['', 'short', '1234567', 'x'.repeat(1025)]) {
    const err = await refused(() => checkPasswordStrength(bad));
    t.equal(err.code, 'ERR_USAGE', `refused length ${bad.length}`);
  }
  t.doesNotThrow(() => checkPasswordStrength('12345678'));
  t.doesNotThrow(() => checkPasswordStrength('x'.repeat(1024)));
  t.doesNotThrow(() => checkPasswordStrength('🔑'.repeat(1024)), 'counts characters, not UTF-16 units');
  t.throws(() => checkPasswordStrength('🔑'.repeat(7)));
});

t.test('TOTP', async (t) => {
  const secret = newTotpSecret();
  t.match(secret, /^[A-Z2-7]{32}$/, '20 random bytes in base32');
  t.not(newTotpSecret(), secret);

  t.equal(verifyTotp(RFC_SECRET, codeAt(RFC_SECRET, T0), T0), true, 'current code');
  t.equal(verifyTotp(RFC_SECRET, codeAt(RFC_SECRET, T0 - 30_000), T0), true, 'previous step');
  t.equal(verifyTotp(RFC_SECRET, codeAt(RFC_SECRET, T0 + 30_000), T0), true, 'next step');
  t.equal(verifyTotp(RFC_SECRET, codeAt(RFC_SECRET, T0 - 60_000), T0), false, 'two steps back');
  t.equal(verifyTotp(RFC_SECRET, codeAt(RFC_SECRET, T0 + 60_000), T0), false, 'two steps ahead');
  t.equal(verifyTotp(secret, codeAt(secret, T0), T0), true, 'generated secret works');
  t.equal(
    verifyTotp(secret, codeAt(RFC_SECRET, T0), T0),
    codeAt(secret, T0) === codeAt(RFC_SECRET, T0),
    'other secret’s code',
  );
  // RFC 6238 appendix B (SHA1, 8 digits there; its last 6 digits are the 6-digit code).
  t.equal(verifyTotp(RFC_SECRET, '287082', 59_000), true, 'RFC 6238 vector at T=59');

  const good = codeAt(RFC_SECRET, T0);
  for (const bad of [
    '',
    '12345',
    '1234567',
    'abcdef',
    ` ${good}`,
    `${good} `,
    `${good.slice(0, 3)} ${good.slice(3)}`,
    '١٢٣٤٥٦',
    '+12345',
    '1e5000',
  ]) {
    t.equal(verifyTotp(RFC_SECRET, bad, T0), false, `garbage ${JSON.stringify(bad)}`);
  }
  t.equal(verifyTotp(RFC_SECRET, undefined as unknown as string, T0), false, 'non-string code');
  t.equal(verifyTotp('not base32!', good, T0), false, 'bad secret');
  t.equal(verifyTotp('', good, T0), false, 'empty secret');
  t.equal(verifyTotp(RFC_SECRET, good, NaN), false, 'bad clock');
  t.equal(verifyTotp(RFC_SECRET.toLowerCase(), good, T0), true, 'secret case-insensitive');

  // The step a code belongs to, for replay protection (RFC 6238 §5.2).
  const step = Math.floor(T0 / 30_000);
  t.equal(totpStep(RFC_SECRET, codeAt(RFC_SECRET, T0), T0), step, 'current step');
  t.equal(totpStep(RFC_SECRET, codeAt(RFC_SECRET, T0 - 30_000), T0), step - 1, 'previous step');
  t.equal(totpStep(RFC_SECRET, codeAt(RFC_SECRET, T0 + 30_000), T0), step + 1, 'next step');
  t.equal(
    totpStep(RFC_SECRET, codeAt(RFC_SECRET, T0), T0 + 30_000),
    step,
    'the same code later still names its own step',
  );
  t.equal(totpStep(RFC_SECRET, codeAt(RFC_SECRET, T0 - 60_000), T0), undefined, 'outside the window');
  t.equal(totpStep(RFC_SECRET, 'abcdef', T0), undefined, 'garbage');

  const uri = totpUri(secret, 'alice@example.com');
  t.match(uri, /^otpauth:\/\/totp\//);
  const parsed = URI.parse(uri);
  t.ok(parsed instanceof TOTP);
  t.equal(parsed.issuer, 'proxyctl');
  t.equal(parsed.label, 'alice@example.com');
  t.equal(parsed.secret.base32, secret);
  t.equal((parsed as TOTP).period, 30);
  t.equal(parsed.digits, 6);
  t.equal(parsed.algorithm, 'SHA1');
  t.equal(URI.parse(totpUri(secret, 'bob', 'Example Corp')).issuer, 'Example Corp');
  t.throws(() => totpUri('not base32!', 'bob'), { code: 'ERR_USAGE' });
});

t.test('users file', async (t) => {
  const dir = tempDir(t);
  const hash = await hashPassword('alice-password');
  const hash2 = await hashPassword('bob-password');
  const file = path.join(dir, 'users.yaml');
  writeFileSync(
    file,
    `users:
  - username: Alice
    passwordHash: "${hash}"
    email: alice@example.com
    name: Alice Example
    groups: [staff, admins]
    roles: [admin]
    totpSecret: ${RFC_SECRET.toLowerCase()}
  - username: bob
    passwordHash: ${hash2}
`,
  );
  const users = loadUsersFile(file);
  t.equal(users.length, 2);
  t.match(users[0], {
    username: 'alice',
    passwordHash: hash,
    email: 'alice@example.com',
    name: 'Alice Example',
    groups: ['staff', 'admins'],
    roles: ['admin'],
    totpSecret: RFC_SECRET,
  });
  t.match(users[1], {
    username: 'bob',
    passwordHash: hash2,
    email: null,
    name: null,
    groups: [],
    roles: [],
    totpSecret: null,
  });
  t.same(parseUsersFile('users: []\n', 'empty.yaml'), [], 'an empty list is fine');

  const user = (extra: string, name = 'carol'): string =>
    `  - username: ${name}\n    passwordHash: "${hash}"\n${extra}`;
  const cases: { name: string; text: string; path: string }[] = [
    { name: 'unknown user key', text: `users:\n${user('    password: hunter22\n')}`, path: 'users[0].password' },
    { name: 'unknown top-level key', text: `users: []\nadmins: []\n`, path: 'admins' },
    { name: 'users missing', text: `{}\n`, path: 'users' },
    { name: 'users not a list', text: `users: {carol: x}\n`, path: 'users' },
    { name: 'entry not a mapping', text: `users:\n  - carol\n`, path: 'users[0]' },
    { name: 'username missing', text: `users:\n  - passwordHash: "${hash}"\n`, path: 'users[0].username' },
    { name: 'username wrong type', text: `users:\n${user('', '42')}`, path: 'users[0].username' },
    { name: 'username bad characters', text: `users:\n${user('', '"carol smith"')}`, path: 'users[0].username' },
    {
      name: 'duplicate username (case-insensitive)',
      text: `users:\n${user('')}${user('', 'CAROL')}`,
      path: 'users[1].username',
    },
    { name: 'passwordHash missing', text: `users:\n  - username: carol\n`, path: 'users[0].passwordHash' },
    {
      name: 'passwordHash plain text',
      text: `users:\n${user('')}  - username: dave\n    passwordHash: hunter22\n`,
      path: 'users[1].passwordHash',
    },
    {
      name: 'passwordHash wrong type',
      text: `users:\n  - username: carol\n    passwordHash: 12345\n`,
      path: 'users[0].passwordHash',
    },
    {
      name: 'passwordHash weak parameters',
      text: `users:\n  - username: carol\n    passwordHash: "${hash.replace('$32768$', '$30000$')}"\n`,
      path: 'users[0].passwordHash',
    },
    { name: 'email not an address', text: `users:\n${user('    email: carol\n')}`, path: 'users[0].email' },
    { name: 'email wrong type', text: `users:\n${user('    email: [a]\n')}`, path: 'users[0].email' },
    { name: 'name wrong type', text: `users:\n${user('    name: 12\n')}`, path: 'users[0].name' },
    { name: 'groups not a list', text: `users:\n${user('    groups: staff\n')}`, path: 'users[0].groups' },
    { name: 'roles with a number', text: `users:\n${user('    roles: [admin, 3]\n')}`, path: 'users[0].roles' },
    {
      name: 'totpSecret not base32',
      text: `users:\n${user('    totpSecret: "not-base32!"\n')}`,
      path: 'users[0].totpSecret',
    },
    {
      name: 'totpSecret too short',
      text: `users:\n${user('    totpSecret: GEZDGNBV\n')}`,
      path: 'users[0].totpSecret',
    },
    { name: 'totpSecret wrong type', text: `users:\n${user('    totpSecret: 1234\n')}`, path: 'users[0].totpSecret' },
    { name: 'invalid YAML', text: `users: [\n`, path: '(root)' },
    { name: 'duplicate YAML key', text: `users: []\nusers: []\n`, path: '(root)' },
  ];
  for (const c of cases) {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, c.text);
    const err = await refused(() => loadUsersFile(bad));
    t.equal(err.code, 'ERR_CONFIG_INVALID', `${c.name}: code`);
    t.ok(
      issuesOf(err).some((i) => i.path === c.path),
      `${c.name}: names ${c.path} (got ${issuesOf(err)
        .map((i) => i.path)
        .join(', ')})`,
    );
    t.equal(err.details?.['file'], bad, `${c.name}: names the file`);
    t.ok(err.message.startsWith(bad), `${c.name}: message starts with the file`);
    t.notMatch(err.message, /\n/, `${c.name}: one line`);
    t.notMatch(err.message, hash.split('$')[5]!, `${c.name}: never echoes a hash`);
  }

  const plain = path.join(dir, 'plain.yaml');
  writeFileSync(plain, `users:\n  - username: carol\n    passwordHash: hunter22\n`);
  const err = await refused(() => loadUsersFile(plain));
  t.match(
    err.message,
    /users\[0\]\.passwordHash: found .*, expected .*scrypt/,
    'path, found and expected in the message',
  );
  t.notMatch(err.message, /hunter22/, 'a plain-text password is not echoed');

  const missing = await refused(() => loadUsersFile(path.join(dir, 'nope.yaml')));
  t.equal(missing.code, 'ERR_CONFIG_READ');
});

t.test('UserDirectory', async (t) => {
  const dir = tempDir(t);
  const store = openSqliteStore(path.join(dir, 'data'));
  t.teardown(() => store.close());
  const storeHash = await hashPassword('store-password');
  const fileHash = await hashPassword('file-password');
  const base = { email: null, name: null, groups: [], roles: [], totpSecret: null, createdAt: 1 };
  await store.users.put(
    { ...base, username: 'alice', passwordHash: storeHash, name: 'Store Alice' },
    'test',
    'user.add',
  );
  await store.users.put({ ...base, username: 'bob', passwordHash: storeHash }, 'test', 'user.add');

  const noFile = new UserDirectory(store.users);
  t.equal((await noFile.find('alice'))?.name, 'Store Alice');
  t.equal((await noFile.find('ALICE'))?.username, 'alice', 'case-insensitive');
  t.equal(await noFile.find('nobody'), undefined);
  t.equal(await noFile.find(''), undefined);
  t.doesNotThrow(() => noFile.reload(), 'reload without a file is a no-op');

  const file = path.join(dir, 'users.yaml');
  writeFileSync(
    file,
    `users:\n  - username: ALICE\n    passwordHash: "${fileHash}"\n    name: File Alice\n  - username: Carol\n    passwordHash: "${fileHash}"\n`,
  );
  const users = new UserDirectory(store.users, file);
  t.equal((await users.find('alice'))?.name, 'File Alice', 'the file overrides the store');
  t.equal((await users.find('Alice'))?.passwordHash, fileHash);
  t.equal((await users.find('bob'))?.passwordHash, storeHash, 'store users stay visible');
  t.equal((await users.find('carol'))?.username, 'carol', 'file user names are lower-cased');
  t.equal((await users.find('CAROL'))?.username, 'carol');

  await store.users.put({ ...base, username: 'dave', passwordHash: storeHash }, 'test', 'user.add');
  t.ok(await users.find('dave'), 'store changes are seen without a reload');

  writeFileSync(file, `users:\n  - username: erin\n    passwordHash: "${fileHash}"\n`);
  users.reload();
  t.equal((await users.find('erin'))?.passwordHash, fileHash, 'reload picks up the new file');
  t.equal((await users.find('alice'))?.name, 'Store Alice', 'and drops users it no longer lists');
  t.equal(await users.find('carol'), undefined);

  writeFileSync(file, `users:\n  - username: frank\n    passwordHash: plain\n`);
  const err = await refused(() => users.reload());
  t.equal(err.code, 'ERR_CONFIG_INVALID', 'a bad file on reload is rethrown');
  t.ok(users.find('erin'), 'the previous users stay');
  t.equal(await users.find('frank'), undefined);

  const ctor = await refused(() => new UserDirectory(store.users, file));
  t.equal(ctor.code, 'ERR_CONFIG_INVALID', 'a bad file at construction throws');
});

t.test('user commands', async (t) => {
  const dir = tempDir(t);
  const dataDir = path.join(dir, 'data');
  const opts = { dataDir };
  const lines: string[] = [];
  const out = (line: string) => {
    lines.push(line);
  };
  const take = (): string[] => lines.splice(0, lines.length);
  const inspect = async <T>(fn: (s: Store) => Promise<T>): Promise<T> => {
    const s = openSqliteStore(dataDir);
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  };

  // add with a generated password
  await addUser(
    'Alice',
    { ...opts, email: 'alice@example.com', name: 'Alice Example', groups: 'staff, admins,staff', roles: 'admin' },
    out,
  );
  let printed = take();
  t.match(printed[0], /added user alice/);
  const generated = /generated password \(shown only now\): (\S+)/.exec(printed.join('\n'))?.[1];
  t.ok(generated && generated.length === 20, 'a 20-character password is printed once');
  const alice = (await inspect((s) => s.users.get('alice')))!;
  t.match(alice, {
    username: 'alice',
    email: 'alice@example.com',
    name: 'Alice Example',
    groups: ['staff', 'admins'],
    roles: ['admin'],
    totpSecret: null,
  });
  t.equal(await verifyPassword(generated!, alice.passwordHash), true, 'the printed password is the stored one');

  // add with --password-file and --password-stdin
  const pwFile = path.join(dir, 'pw.txt');
  writeFileSync(pwFile, 'bob-secret-pw\n');
  await addUser('bob', { ...opts, passwordFile: pwFile }, out);
  printed = take();
  t.same(printed, ['added user bob'], 'no password printed when one was given');
  t.equal(
    await verifyPassword('bob-secret-pw', (await inspect((s) => s.users.get('bob')))!.passwordHash),
    true,
    'trailing newline trimmed',
  );
  await addUser(
    'carol',
    { ...opts, passwordStdin: true, stdin: Readable.from([Buffer.from('carol-stdin-pw\r\n')]) },
    out,
  );
  take();
  t.equal(
    await verifyPassword('carol-stdin-pw', (await inspect((s) => s.users.get('carol')))!.passwordHash),
    true,
    'stdin, CRLF trimmed',
  );

  // refusals
  t.equal(
    (await refused(() => addUser('ALICE', opts, out))).code,
    'ERR_USAGE',
    'duplicate add refused (case-insensitive)',
  );
  t.equal((await refused(() => addUser('bad name', opts, out))).code, 'ERR_USAGE', 'invalid user name');
  t.equal((await refused(() => addUser('-dash', opts, out))).code, 'ERR_USAGE', 'must start with a letter or digit');
  t.equal((await refused(() => addUser('x'.repeat(65), opts, out))).code, 'ERR_USAGE', 'too long');
  t.equal((await refused(() => addUser('dave', { ...opts, email: 'nope' }, out))).code, 'ERR_USAGE', 'bad e-mail');
  writeFileSync(pwFile, 'short\n');
  t.equal(
    (await refused(() => addUser('dave', { ...opts, passwordFile: pwFile }, out))).code,
    'ERR_USAGE',
    'weak password',
  );
  t.equal(
    (await refused(() => addUser('dave', { ...opts, passwordFile: path.join(dir, 'none') }, out))).code,
    'ERR_USAGE',
    'missing password file',
  );
  t.equal(
    (await refused(() => addUser('dave', { ...opts, passwordFile: pwFile, passwordStdin: true }, out))).code,
    'ERR_USAGE',
    'two sources',
  );
  t.equal(await inspect((s) => s.users.get('dave')), undefined, 'nothing stored by refused adds');
  take();

  // list
  await listUsers({ ...opts, json: true }, out);
  const listed = JSON.parse(take().join('\n')) as UserListing[];
  t.same(
    listed.map((u) => u.username),
    ['alice', 'bob', 'carol'],
  );
  t.match(listed[0], {
    username: 'alice',
    email: 'alice@example.com',
    name: 'Alice Example',
    groups: ['staff', 'admins'],
    roles: ['admin'],
    totp: false,
  });
  for (const u of listed) {
    t.notOk('passwordHash' in u || 'totpSecret' in u, `${u.username}: no secrets listed`);
  }
  await listUsers(opts, out);
  const table = take();
  t.match(table[0], /^USERNAME\s+EMAIL\s+NAME\s+GROUPS\s+ROLES\s+TOTP$/);
  t.match(table[1], /^alice\s+alice@example\.com\s+Alice Example\s+staff,admins\s+admin\s+no$/);
  t.notMatch(table.join('\n'), /scrypt/);

  // set-password
  writeFileSync(pwFile, 'alice-new-password\n');
  await setPassword('ALICE', { ...opts, passwordFile: pwFile }, out);
  t.same(take(), ['password of alice changed']);
  const changed = (await inspect((s) => s.users.get('alice')))!;
  t.equal(await verifyPassword('alice-new-password', changed.passwordHash), true, 'new password works');
  t.equal(await verifyPassword(generated!, changed.passwordHash), false, 'old password no longer works');
  t.match(
    changed,
    { email: 'alice@example.com', groups: ['staff', 'admins'], createdAt: alice.createdAt },
    'other fields kept',
  );
  await setPassword('bob', opts, out);
  const bobPw = /generated password \(shown only now\): (\S+)/.exec(take().join('\n'))?.[1];
  t.equal(
    await verifyPassword(bobPw!, (await inspect((s) => s.users.get('bob')))!.passwordHash),
    true,
    'generated when none given',
  );
  t.equal((await refused(() => setPassword('nobody', opts, out))).code, 'ERR_USAGE', 'unknown user');

  // enroll-totp
  await enrollTotp('alice', opts, out);
  printed = take();
  const secret = (await inspect((s) => s.users.get('alice')))!.totpSecret;
  t.ok(secret, 'secret stored');
  t.match(secret!, /^[A-Z2-7]{32}$/);
  const uriLine = printed.find((l) => l.startsWith('otpauth URI: '));
  t.ok(uriLine, 'URI printed');
  const uri = URI.parse(uriLine!.slice('otpauth URI: '.length));
  t.equal(uri.secret.base32, secret, 'the URI carries the stored secret');
  t.equal(uri.label, 'alice');
  t.ok(
    printed.some((l) => l === `secret (base32): ${secret}`),
    'base32 secret printed',
  );
  t.equal(verifyTotp(secret!, TOTP.generate({ secret: Secret.fromBase32(secret!) })), true, 'codes from it verify');
  await listUsers({ ...opts, json: true }, out);
  t.equal((JSON.parse(take().join('\n')) as UserListing[])[0]!.totp, true, 'list shows totp enrolled');
  t.equal((await refused(() => enrollTotp('nobody', opts, out))).code, 'ERR_USAGE', 'unknown user');

  // remove
  await removeUser('Carol', opts, out);
  t.same(take(), ['removed user carol']);
  t.equal(await inspect((s) => s.users.get('carol')), undefined);
  t.equal((await refused(() => removeUser('carol', opts, out))).code, 'ERR_USAGE', 'unknown remove refused');

  // audit trail with the CLI actor
  const audit = (await inspect((s) => s.audit.list(50))).filter((a) => a.action.startsWith('user.'));
  t.same(audit.map((a) => a.action).reverse(), [
    'user.add',
    'user.add',
    'user.add',
    'user.update',
    'user.update',
    'user.update',
    'user.remove',
  ]);
  t.ok(
    audit.every((a) => /^cli:.+/.test(a.actor)),
    'actor is cli:<os user>',
  );
  t.same(audit.at(-1)!.details, { username: 'alice' });

  // the users file, when configured, is pointed out
  const usersFile = path.join(dir, 'users.yaml');
  const fileUser: UserRecord = changed;
  writeFileSync(usersFile, `users:\n  - username: bob\n    passwordHash: "${fileUser.passwordHash}"\n`);
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, `dataDir: ./data\nidentity:\n  embedded:\n    usersFile: ./users.yaml\n`);
  await setPassword('bob', { config, passwordFile: pwFile }, out);
  t.match(take().join('\n'), /note: .*users\.yaml also defines bob/, 'override by the users file noted');
});
