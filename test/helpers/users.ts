// Users of the embedded identity provider, put straight into a relay store as
// `proxyctl relay users add` would: an ordinary user unless the test says more.
import { hashPassword } from '../../src/idp/users.js';
import type { UserRepo, UserRecord } from '../../src/store/index.js';

/** Adds username with password (a real scrypt hash); no e-mail, name, groups, roles or TOTP unless given. */
export async function addUser(
  store: { users: UserRepo },
  username: string,
  password: string,
  extra: Partial<Omit<UserRecord, 'username' | 'passwordHash'>> = {},
): Promise<void> {
  await store.users.put(
    {
      username,
      passwordHash: await hashPassword(password),
      email: null,
      name: null,
      groups: [],
      roles: [],
      totpSecret: null,
      createdAt: Date.now(),
      ...extra,
    },
    'test',
    'user.add',
  );
}
