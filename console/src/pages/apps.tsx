// Apps: the list (file and API), one app, and the form that publishes or edits an
// API app. The relay validates as the config loader does; its issues are shown
// next to the field they name, the others in the summary at the top.
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { ObjectView } from '../../../src/admin/api-types.js';
import { ApiError, text, type Issue } from '../api.js';
import { href, navigate } from '../router.js';
import { useAction, useLoad, useSession } from '../session.js';
import {
  Badge,
  Empty,
  ErrorNotice,
  Facts,
  IssueSummary,
  Json,
  Loading,
  PageTitle,
  SelectField,
  Table,
  TextArea,
  TextField,
  Time,
  dash,
  splitIssues,
  splitList,
  useConfirm,
} from '../ui.js';

export function SourceBadge({ source }: { source: string }) {
  return <Badge tone={source === 'file' ? 'plain' : 'info'}>{source}</Badge>;
}

export function InForce({ o }: { o: Pick<ObjectView, 'inForce' | 'problem'> }) {
  return o.inForce ? (
    <Badge tone="ok">in force</Badge>
  ) : (
    <span>
      <Badge tone="bad">not in force</Badge> {o.problem && <span class="problem">{o.problem}</span>}
    </span>
  );
}

const str = (v: unknown): string => (v === undefined || v === null ? '' : text(v));

export function AppsPage() {
  const { api, canWrite } = useSession();
  const apps = useLoad(() => api.listApps(), []);
  return (
    <>
      <PageTitle>Apps</PageTitle>
      {canWrite && (
        <p>
          <a class="button primary" href={href(['apps', 'new'])} id="publish-app-link">
            Publish app
          </a>
        </p>
      )}
      <ErrorNotice error={apps.error} />
      {apps.loading && !apps.data && <Loading what="apps" />}
      {apps.data && (
        <Table label="Apps" id="apps-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Source</th>
              <th scope="col">External URL</th>
              <th scope="col">Internal URL</th>
              <th scope="col">Preauth</th>
              <th scope="col">Group</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {apps.data.length === 0 && <Empty cols={7}>No app is published yet.</Empty>}
            {apps.data.map((a) => (
              <tr key={a.name} data-testid={`app-row-${a.name}`}>
                <th scope="row">
                  <a href={href(['apps', a.name])}>{a.name}</a>
                </th>
                <td>
                  <SourceBadge source={a.source} />
                </td>
                <td class="wrap">{str(a.spec['externalUrl'])}</td>
                <td class="wrap">{str(a.spec['internalUrl'])}</td>
                <td>{str(a.spec['preauth'] ?? 'oidc')}</td>
                <td>{str(a.spec['connectorGroup'] ?? 'default')}</td>
                <td>
                  <InForce o={a} />
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
      )}
    </>
  );
}

export function AppDetail({ name }: { name: string }) {
  const { api, canWrite } = useSession();
  const app = useLoad(() => api.getApp(name), [name]);
  const remove = useAction();
  const confirm = useConfirm();
  const a = app.data;
  const onRemove = async () => {
    if (!a) return;
    const ok = await confirm({
      title: `Remove ${a.name}?`,
      body: <p>The relay stops publishing {a.name} at once. This cannot be undone.</p>,
      yes: 'Yes, remove',
    });
    if (!ok) return;
    const done = await remove.run(async () => {
      await api.removeApp(a.name, a.version ?? undefined);
      return true;
    });
    if (done) navigate(['apps']);
  };
  return (
    <>
      <PageTitle>App {name}</PageTitle>
      <p>
        <a href={href(['apps'])}>← All apps</a>
      </p>
      <ErrorNotice error={app.error ?? remove.error} />
      {app.loading && !a && <Loading what="the app" />}
      {a && (
        <>
          {a.source === 'file' && (
            <p class="notice" data-testid="file-managed">
              Defined in the configuration file: read-only here. Change it in the file and reload the relay.
            </p>
          )}
          {canWrite && a.source === 'api' && (
            <div class="actions">
              <a class="button" href={href(['apps', a.name, 'edit'])}>
                Edit
              </a>
              <button type="button" class="danger" onClick={() => void onRemove()} disabled={remove.busy}>
                Remove
              </button>
            </div>
          )}
          <Facts
            id="app-detail"
            rows={[
              ['Source', <SourceBadge source={a.source} />],
              ['Status', <InForce o={a} />],
              ['External URL', str(a.spec['externalUrl'])],
              ['Internal URL', str(a.spec['internalUrl'])],
              ['Preauth', str(a.spec['preauth'] ?? 'oidc')],
              ['Connector group', str(a.spec['connectorGroup'] ?? 'default')],
              ['Backend timeout', dash(str(a.spec['backendTimeout']))],
              ['Assignment', dash(str(a.spec['assignment']))],
              ['Version', dash(a.version)],
              ['Updated', <Time iso={a.updatedAt} />],
              ['Updated by', dash(a.updatedBy)],
            ]}
          />
          <h2>Definition</h2>
          <Json value={a.spec} id="app-spec" />
        </>
      )}
    </>
  );
}

/** The keys the form has fields for; the rest of a spec is edited as JSON. */
const FIELDS = [
  'name',
  'externalUrl',
  'internalUrl',
  'preauth',
  'connectorGroup',
  'backendTimeout',
  'assignment',
  'assignedUsers',
  'assignedGroups',
] as const;
type Field = (typeof FIELDS)[number];
type Values = Record<Field, string> & { extra: string };

function valuesOf(spec: Record<string, unknown> | undefined): Values {
  const s = spec ?? {};
  const list = (v: unknown) => (Array.isArray(v) ? v.map(String).join(', ') : str(v));
  const rest = Object.fromEntries(Object.entries(s).filter(([k]) => !(FIELDS as readonly string[]).includes(k)));
  return {
    name: str(s['name']),
    externalUrl: str(s['externalUrl']),
    internalUrl: str(s['internalUrl']),
    preauth: str(s['preauth'] ?? 'oidc'),
    connectorGroup: str(s['connectorGroup']),
    backendTimeout: str(s['backendTimeout']),
    assignment: str(s['assignment']),
    assignedUsers: list(s['assignedUsers']),
    assignedGroups: list(s['assignedGroups']),
    extra: Object.keys(rest).length ? JSON.stringify(rest, null, 2) : '',
  };
}

/** The spec to send, or the issue that stops it (the extra JSON does not parse). */
function specOf(v: Values): { spec: Record<string, unknown> } | { issue: Issue } {
  let extra: Record<string, unknown> = {};
  if (v.extra.trim()) {
    try {
      const parsed: unknown = JSON.parse(v.extra);
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      extra = parsed as Record<string, unknown>;
    } catch (err) {
      return { issue: { path: 'extra', found: (err as Error).message, expected: 'a JSON object' } };
    }
  }
  const spec: Record<string, unknown> = { ...extra, name: v.name.trim() };
  for (const k of ['externalUrl', 'internalUrl', 'preauth', 'connectorGroup', 'backendTimeout', 'assignment'] as const)
    if (v[k].trim()) spec[k] = v[k].trim();
  for (const k of ['assignedUsers', 'assignedGroups'] as const) if (v[k].trim()) spec[k] = splitList(v[k]);
  return { spec };
}

export function AppForm({ name }: { name?: string }) {
  const { api, canWrite } = useSession();
  const editing = name !== undefined;
  const existing = useLoad(() => (editing ? api.getApp(name) : Promise.resolve(undefined)), [name]);
  const groups = useLoad(() => api.listGroups().catch(() => []), []);
  const [values, setValues] = useState<Values>(() => valuesOf(undefined));
  const save = useAction();
  const [localIssue, setLocalIssue] = useState<Issue | undefined>(undefined);

  useEffect(() => {
    if (existing.data) setValues(valuesOf(existing.data.spec));
  }, [existing.data]);

  const issues = useMemo(
    () => [...(localIssue ? [localIssue] : []), ...(save.error?.issues ?? [])],
    [localIssue, save.error],
  );
  const extraKeys = useMemo(() => {
    const r = specOf(values);
    return 'spec' in r ? Object.keys(r.spec).filter((k) => !(FIELDS as readonly string[]).includes(k)) : [];
  }, [values]);
  const split = splitIssues(issues, [...FIELDS, 'extra', ...extraKeys]);
  const extraIssues = [...split.of('extra'), ...extraKeys.flatMap((k) => split.of(k))];

  // After a refusal, focus what needs fixing: the summary when it lists something, else the first field.
  useEffect(() => {
    if (!save.error && !localIssue) return;
    const target = document.querySelector<HTMLElement>(
      split.rest.length || !issues.length ? '#app-form-summary' : '#app-form [aria-invalid="true"]',
    );
    if (target) {
      if (!target.hasAttribute('tabindex') && target.id === 'app-form-summary') target.tabIndex = -1;
      target.focus();
    }
  }, [save.error, localIssue]);

  const set = (k: keyof Values) => (v: string) => setValues((old) => ({ ...old, [k]: v }));
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    const r = specOf(values);
    if ('issue' in r) {
      save.clear();
      setLocalIssue(r.issue);
      return;
    }
    setLocalIssue(undefined);
    const saved = await save.run(() =>
      editing ? api.updateApp(name, r.spec, existing.data?.version ?? undefined) : api.publishApp(r.spec),
    );
    if (saved) navigate(['apps', saved.name]);
  };

  if (!canWrite) return <ReadOnly />;
  if (editing && existing.error) return <ErrorNotice error={existing.error} />;
  if (editing && !existing.data) return <Loading what="the app" />;
  if (existing.data?.source === 'file')
    return (
      <>
        <PageTitle>Edit {name}</PageTitle>
        <p class="notice">Defined in the configuration file: read-only here.</p>
      </>
    );
  const summaryError =
    save.error ??
    (localIssue ? new ApiError(0, 'ERR_CONSOLE', 'The app was not saved: fix the fields marked below.') : undefined);
  return (
    <>
      <PageTitle>{editing ? `Edit ${name}` : 'Publish app'}</PageTitle>
      <p>
        <a href={editing ? href(['apps', name]) : href(['apps'])}>← Back</a>
      </p>
      <form id="app-form" onSubmit={(e) => void onSubmit(e)} noValidate>
        <IssueSummary id="app-form-summary" error={summaryError} rest={split.rest} />
        <TextField
          id="app-name"
          label="Name"
          value={values.name}
          onValue={set('name')}
          readOnly={editing}
          required
          hint={
            editing
              ? 'The name of a published app cannot change.'
              : 'Lower-case letters, digits and dashes (at most 63).'
          }
          issues={split.of('name')}
        />
        <TextField
          id="app-external-url"
          label="External URL"
          value={values.externalUrl}
          onValue={set('externalUrl')}
          required
          inputMode="url"
          placeholder="https://app.example.com/"
          issues={split.of('externalUrl')}
        />
        <TextField
          id="app-internal-url"
          label="Internal URL"
          value={values.internalUrl}
          onValue={set('internalUrl')}
          required
          inputMode="url"
          placeholder="http://intranet.example.com:8080/"
          hint="Where the connector reaches the app."
          issues={split.of('internalUrl')}
        />
        <SelectField
          id="app-preauth"
          label="Preauthentication"
          value={values.preauth}
          onValue={set('preauth')}
          options={[
            ['oidc', 'oidc: the relay signs users in'],
            ['passthrough', 'passthrough: no sign-in at the relay'],
          ]}
          issues={split.of('preauth')}
        />
        <TextField
          id="app-group"
          label="Connector group"
          value={values.connectorGroup}
          onValue={set('connectorGroup')}
          list="app-group-list"
          placeholder="default"
          issues={split.of('connectorGroup')}
        />
        <datalist id="app-group-list">
          {(groups.data ?? []).map((g) => (
            <option key={g.name} value={g.name} />
          ))}
        </datalist>
        <TextField
          id="app-backend-timeout"
          label="Backend timeout"
          value={values.backendTimeout}
          onValue={set('backendTimeout')}
          placeholder="85s"
          hint="A duration such as 30s or 2m; empty for the default."
          issues={split.of('backendTimeout')}
        />
        <fieldset>
          <legend>Assignment (optional)</legend>
          <SelectField
            id="app-assignment"
            label="Who may use the app"
            value={values.assignment}
            onValue={set('assignment')}
            options={[
              ['', 'default (assigned users and groups)'],
              ['assigned', 'assigned users and groups only'],
              ['any', 'any signed-in user'],
            ]}
            issues={split.of('assignment')}
          />
          <TextField
            id="app-assigned-users"
            label="Assigned users"
            value={values.assignedUsers}
            onValue={set('assignedUsers')}
            hint="Comma-separated user names or e-mail addresses."
            issues={split.of('assignedUsers')}
          />
          <TextField
            id="app-assigned-groups"
            label="Assigned groups"
            value={values.assignedGroups}
            onValue={set('assignedGroups')}
            hint="Comma-separated group names."
            issues={split.of('assignedGroups')}
          />
        </fieldset>
        <details open={!!values.extra || extraIssues.length > 0}>
          <summary>Other settings (JSON)</summary>
          <TextArea
            id="app-extra"
            label="Other keys of the app, as the configuration file spells them"
            value={values.extra}
            onValue={set('extra')}
            rows={8}
            hint='For example {"identityHeaders": true}. Secrets shown as "(redacted)" are kept as they are.'
            issues={extraIssues}
            showPaths
          />
        </details>
        <div class="actions">
          <button type="submit" class="primary" disabled={save.busy}>
            {editing ? 'Save' : 'Publish'}
          </button>
        </div>
      </form>
    </>
  );
}

export function ReadOnly() {
  return (
    <>
      <PageTitle>Read-only</PageTitle>
      <p class="notice">Your role can read but not change this. Ask an administrator.</p>
    </>
  );
}
