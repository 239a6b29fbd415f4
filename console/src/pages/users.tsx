// Users of the embedded identity provider: list, add (a generated password is
// shown once, here, never again) and remove. With an external provider the API
// refuses the listing; the page says where users are managed instead.
import { useState } from 'preact/hooks';
import type { NewUserInput } from '../../../src/admin/api-types.js';
import type { ApiError } from '../api.js';
import { useAction, useLoad, useSession } from '../session.js';
import {
  Empty,
  ErrorNotice,
  IssueSummary,
  Loading,
  PageTitle,
  Table,
  TextField,
  Time,
  dash,
  splitIssues,
  splitList,
  useConfirm,
} from '../ui.js';

/**
 * The API's answer when users live at an external provider: a 409 conflict (or 501
 * not implemented) on the listing, or ERR_USERS_EXTERNAL whatever the status.
 */
export const isExternalProvider = (e: ApiError | undefined): boolean =>
  !!e && (e.code === 'ERR_USERS_EXTERNAL' || e.status === 409 || e.status === 501);

const FIELDS = ['username', 'email', 'name', 'groups', 'roles', 'password'];

export function UsersPage() {
  const { api, canWrite } = useSession();
  const users = useLoad(() => api.listUsers(), []);
  const add = useAction();
  const remove = useAction();
  const confirm = useConfirm();
  const [form, setForm] = useState({ username: '', email: '', name: '', groups: '', roles: '', password: '' });
  const [created, setCreated] = useState<{ username: string; password: string | null } | undefined>(undefined);
  const split = splitIssues(add.error?.issues ?? [], FIELDS);
  const set = (k: keyof typeof form) => (v: string) => setForm((f) => ({ ...f, [k]: v }));

  if (isExternalProvider(users.error))
    return (
      <>
        <PageTitle>Users</PageTitle>
        <div class="notice" id="users-external" role="status">
          <p>Users are managed at the external identity provider, not by the relay.</p>
          <p class="muted">{users.error?.message}</p>
        </div>
      </>
    );

  const onAdd = async (e: Event) => {
    e.preventDefault();
    setCreated(undefined);
    const input: NewUserInput = { username: form.username.trim() };
    if (form.email.trim()) input.email = form.email.trim();
    if (form.name.trim()) input.name = form.name.trim();
    if (form.groups.trim()) input.groups = splitList(form.groups);
    if (form.roles.trim()) input.roles = splitList(form.roles);
    if (form.password) input.password = form.password;
    const out = await add.run(() => api.addUser(input));
    if (out) {
      setCreated({ username: out.user.username, password: out.password });
      setForm({ username: '', email: '', name: '', groups: '', roles: '', password: '' });
      users.reload();
    }
  };
  const onRemove = async (username: string) => {
    const ok = await confirm({
      title: `Remove ${username}?`,
      body: <p>The user can no longer sign in. Sessions already open end when they next need the provider.</p>,
      yes: 'Yes, remove',
    });
    if (ok && (await remove.run(async () => (await api.removeUser(username), true)))) users.reload();
  };

  return (
    <>
      <PageTitle>Users</PageTitle>
      <ErrorNotice error={users.error ?? remove.error} />
      {users.loading && !users.data && <Loading what="users" />}
      {users.data && (
        <Table label="Users" id="users-table">
          <thead>
            <tr>
              <th scope="col">User name</th>
              <th scope="col">Name</th>
              <th scope="col">E-mail</th>
              <th scope="col">Groups</th>
              <th scope="col">Roles</th>
              <th scope="col">TOTP</th>
              <th scope="col">Created</th>
              {canWrite && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {users.data.length === 0 && <Empty cols={canWrite ? 8 : 7}>No user yet.</Empty>}
            {users.data.map((u) => (
              <tr key={u.username} data-testid={`user-row-${u.username}`}>
                <th scope="row">{u.username}</th>
                <td>{dash(u.name)}</td>
                <td>{dash(u.email)}</td>
                <td>{u.groups.join(', ') || '—'}</td>
                <td>{u.roles.join(', ') || '—'}</td>
                <td>{u.totp ? 'yes' : 'no'}</td>
                <td>
                  <Time iso={u.createdAt} />
                </td>
                {canWrite && (
                  <td>
                    <button
                      type="button"
                      class="small danger"
                      disabled={remove.busy}
                      onClick={() => void onRemove(u.username)}
                    >
                      Remove
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </Table>
      )}
      {created && (
        <div class="notice ok" role="status" id="user-created">
          <p>
            Added <strong>{created.username}</strong>.{created.password ? ' Its password, shown only now:' : ''}
          </p>
          {created.password && (
            <p>
              <label for="user-password-once">Password for {created.username}</label>{' '}
              <input
                id="user-password-once"
                class="code"
                readOnly
                value={created.password}
                onFocus={(e) => e.currentTarget.select()}
                size={Math.max(12, created.password.length)}
              />
            </p>
          )}
        </div>
      )}
      {canWrite && (
        <form id="user-form" class="inline-form" onSubmit={(e) => void onAdd(e)} noValidate>
          <h2>Add a user</h2>
          <IssueSummary id="user-form-summary" error={add.error} rest={split.rest} />
          <TextField
            id="user-username"
            label="User name"
            value={form.username}
            onValue={set('username')}
            required
            issues={split.of('username')}
          />
          <TextField
            id="user-email"
            label="E-mail (optional)"
            value={form.email}
            onValue={set('email')}
            type="email"
            issues={split.of('email')}
          />
          <TextField
            id="user-name"
            label="Display name (optional)"
            value={form.name}
            onValue={set('name')}
            issues={split.of('name')}
          />
          <TextField
            id="user-groups"
            label="Groups (optional)"
            value={form.groups}
            onValue={set('groups')}
            hint="Comma-separated."
            issues={split.of('groups')}
          />
          <TextField
            id="user-roles"
            label="Roles (optional)"
            value={form.roles}
            onValue={set('roles')}
            hint="Comma-separated."
            issues={split.of('roles')}
          />
          <TextField
            id="user-password"
            label="Password (optional)"
            type="password"
            autoComplete="new-password"
            value={form.password}
            onValue={set('password')}
            hint="Empty: a password is generated and shown once."
            issues={split.of('password')}
          />
          <div class="actions">
            <button type="submit" class="primary" disabled={add.busy}>
              Add user
            </button>
          </div>
        </form>
      )}
    </>
  );
}
