// App assignment: is the user assigned to the app (by id, email or group)? The
// relay's sign-in and bearer checks and `policy what-if` all ask here.
import type { AppConfig } from '../config/relay-config.js';

export function isAssigned(app: AppConfig, who: { user: string; email: string | undefined; groups: readonly string[] }): boolean {
  if (app.assignment === 'any') return true;
  const byUser = [who.user, who.email].some((id) => id !== undefined && app.assignedUsers.includes(id));
  const byGroup = who.groups.some((g) => app.assignedGroups.includes(g));
  return byUser || byGroup;
}
