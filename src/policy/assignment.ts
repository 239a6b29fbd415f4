// App assignment: is the user assigned to the app (by subject, verified e-mail
// or group)? The relay's sign-in and bearer checks and `policy what-if` all ask
// here, and policies match their users with the same rule (userMatches).

/** Who is signing in, as assignment and policies see it. `email` is set only when the provider verified it. */
export interface Principal {
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
}

/**
 * ASCII-only lower case. Domains are case-insensitive and providers disagree on
 * the local part's case, so addresses compare without it; full Unicode folding
 * would let a look-alike (U+212A KELVIN SIGN lower-cases to "k") match a real address.
 */
export function emailKey(email: string): string {
  return email.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/**
 * Does a configured user entry name this principal? An entry is either a subject
 * (compared exactly: `sub` is case-sensitive) or an e-mail address (compared
 * without ASCII case, and only against a verified address).
 */
export function userMatches(entry: string, who: Pick<Principal, 'user' | 'email'>): boolean {
  if (entry === who.user) return true;
  return who.email !== undefined && entry.includes('@') && emailKey(entry) === emailKey(who.email);
}

/** What assignment reads of an app (its config, AppConfig, has these fields). */
export interface Assignable {
  readonly assignment: 'any' | 'assigned';
  readonly assignedUsers: readonly string[];
  readonly assignedGroups: readonly string[];
}

export function isAssigned(app: Assignable, who: Principal): boolean {
  if (app.assignment === 'any') return true;
  const byUser = app.assignedUsers.some((entry) => userMatches(entry, who));
  const byGroup = who.groups.some((g) => app.assignedGroups.includes(g));
  return byUser || byGroup;
}
