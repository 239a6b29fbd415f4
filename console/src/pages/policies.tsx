// Conditional Access: policies and named locations (list, view, edit as JSON with
// the relay's issues in place) and the what-if form. A policy's state has its own
// control; the JSON editor holds the whole spec as the configuration file spells it.
import { useEffect, useState } from 'preact/hooks';
import type { ObjectView } from '../../../src/admin/api-types.js';
import { ApiError, type Issue } from '../api.js';
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
  Time,
  dash,
  splitIssues,
  useConfirm,
} from '../ui.js';
import { InForce, SourceBadge } from './apps.js';
import { WhatIf, type DraftSource } from './whatif.js';

export function PoliciesPage() {
  const { api, canWrite } = useSession();
  const policies = useLoad(() => api.listPolicies(), []);
  const locations = useLoad(() => api.listLocations(), []);
  return (
    <>
      <PageTitle>Policies</PageTitle>
      <section aria-labelledby="policies-heading">
        <h2 id="policies-heading">Conditional Access policies</h2>
        {canWrite && (
          <p>
            <a class="button primary" href={href(['policies', 'new'])} id="new-policy-link">
              New policy
            </a>
          </p>
        )}
        <ErrorNotice error={policies.error} />
        {policies.loading && !policies.data && <Loading what="policies" />}
        {policies.data && (
          <Table label="Policies" id="policies-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Source</th>
                <th scope="col">State</th>
                <th scope="col">Status</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {policies.data.length === 0 && (
                <Empty cols={5}>No policy: every assigned user signs in with a password.</Empty>
              )}
              {policies.data.map((p) => (
                <tr key={p.name} data-testid={`policy-row-${p.name}`}>
                  <th scope="row">
                    <a href={href(['policies', p.name])}>{p.name}</a>
                  </th>
                  <td>
                    <SourceBadge source={p.source} />
                  </td>
                  <td>
                    <StateBadge state={p.spec['state']} />
                  </td>
                  <td>
                    <InForce o={p} />
                  </td>
                  <td>
                    <Time iso={p.updatedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        )}
      </section>
      <section aria-labelledby="locations-heading">
        <h2 id="locations-heading">Named locations</h2>
        {canWrite && (
          <p>
            <a class="button" href={href(['locations', 'new'])} id="new-location-link">
              New named location
            </a>
          </p>
        )}
        <ErrorNotice error={locations.error} />
        {locations.loading && !locations.data && <Loading what="named locations" />}
        {locations.data && (
          <Table label="Named locations" id="locations-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Source</th>
                <th scope="col">Ranges</th>
                <th scope="col">Countries</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {locations.data.length === 0 && <Empty cols={5}>No named location.</Empty>}
              {locations.data.map((l) => (
                <tr key={l.name} data-testid={`location-row-${l.name}`}>
                  <th scope="row">
                    <a href={href(['locations', l.name])}>{l.name}</a>
                  </th>
                  <td>
                    <SourceBadge source={l.source} />
                  </td>
                  <td class="wrap">{listText(l.spec['cidrs'])}</td>
                  <td>{listText(l.spec['countries'])}</td>
                  <td>
                    <InForce o={l} />
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        )}
      </section>
      <WhatIf />
    </>
  );
}

const listText = (v: unknown): string => (Array.isArray(v) && v.length ? v.map(String).join(', ') : '—');

function StateBadge({ state }: { state: unknown }) {
  const s = typeof state === 'string' ? state : 'on';
  return <Badge tone={s === 'on' ? 'ok' : s === 'reportOnly' ? 'warn' : 'plain'}>{s}</Badge>;
}

type Kind = 'policy' | 'location';

const TEMPLATES: Record<Kind, Record<string, unknown>> = {
  policy: {
    name: 'require-mfa',
    state: 'reportOnly',
    assignments: { users: { include: ['all'] }, apps: { include: ['all'] } },
    conditions: {},
    grant: { requireMfa: true },
  },
  location: { name: 'office', cidrs: ['192.0.2.0/24'], countries: [] },
};

function parseSpec(text: string): { spec: Record<string, unknown> } | { error: string } {
  try {
    const v: unknown = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v)) return { error: 'expected a JSON object { … }' };
    return { spec: v as Record<string, unknown> };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** A policy (#/policies/NAME, #/policies/new) or a named location (#/locations/…). */
export function ObjectPage({ kind, name }: { kind: Kind; name?: string }) {
  const { api, canWrite } = useSession();
  const editing = name !== undefined;
  const what = kind === 'policy' ? 'policy' : 'named location';
  const list = kind === 'policy' ? 'policies' : 'locations';
  const obj = useLoad<ObjectView | undefined>(
    () => (!editing ? Promise.resolve(undefined) : kind === 'policy' ? api.getPolicy(name) : api.getLocation(name)),
    [kind, name],
  );
  const o = obj.data;
  const title = editing ? `${kind === 'policy' ? 'Policy' : 'Named location'} ${name}` : `New ${what}`;
  const back = (
    <p>
      <a href={href(['policies'])}>← Policies and named locations</a>
    </p>
  );
  if (editing && !o)
    return (
      <>
        <PageTitle>{title}</PageTitle>
        {back}
        <ErrorNotice error={obj.error} />
        {obj.loading && <Loading what={`the ${what}`} />}
      </>
    );
  const writable = canWrite && (!o || o.source === 'api');
  return (
    <>
      <PageTitle>{title}</PageTitle>
      {back}
      {o && (
        <Facts
          id={`${kind}-facts`}
          rows={[
            ['Source', <SourceBadge source={o.source} />],
            ['Status', <InForce o={o} />],
            ['Version', dash(o.version)],
            ['Updated', <Time iso={o.updatedAt} />],
            ['Updated by', dash(o.updatedBy)],
          ]}
        />
      )}
      {o?.source === 'file' && (
        <p class="notice" data-testid="file-managed">
          Defined in the configuration file: read-only here.
        </p>
      )}
      {writable ? (
        <Editor kind={kind} object={o} onSaved={(saved) => (editing ? obj.set(saved) : navigate([list, saved.name]))} />
      ) : (
        o && (
          <>
            <h2>Definition</h2>
            <Json value={o.spec} id={`${kind}-spec`} />
            {kind === 'policy' && <WhatIf />}
          </>
        )
      )}
    </>
  );
}

function Editor({
  kind,
  object,
  onSaved,
}: {
  kind: Kind;
  object: ObjectView | undefined;
  onSaved: (o: ObjectView) => void;
}) {
  const { api } = useSession();
  const confirm = useConfirm();
  const [text, setText] = useState(() => JSON.stringify(object?.spec ?? TEMPLATES[kind], null, 2));
  const [localIssue, setLocalIssue] = useState<Issue | undefined>(undefined);
  const [saved, setSaved] = useState(false);
  const save = useAction();
  const remove = useAction();
  useEffect(() => {
    if (object) setText(JSON.stringify(object.spec, null, 2));
  }, [object]);

  const parsed = parseSpec(text);
  const state = 'spec' in parsed && typeof parsed.spec['state'] === 'string' ? parsed.spec['state'] : 'on';
  const issues = [...(localIssue ? [localIssue] : []), ...(save.error?.issues ?? [])];
  // Every issue is shown in place: the state's by its control, all others by the editor (with their paths).
  const split = splitIssues(issues, kind === 'policy' ? ['state'] : []);
  const id = `${kind}-json`;

  const onState = (s: string) => {
    if (!('spec' in parsed)) return;
    setText(JSON.stringify({ ...parsed.spec, state: s }, null, 2));
  };
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    setSaved(false);
    save.clear();
    if ('error' in parsed) return setLocalIssue({ path: '(root)', found: parsed.error, expected: 'valid JSON' });
    const spec = { ...parsed.spec };
    const name = object?.name ?? (typeof spec['name'] === 'string' ? spec['name'].trim() : '');
    if (!name) return setLocalIssue({ path: 'name', found: 'nothing', expected: `a name for the ${kind}` });
    spec['name'] ??= name;
    setLocalIssue(undefined);
    const version = object?.version ?? undefined;
    const result = await save.run(() =>
      kind === 'policy' ? api.putPolicy(name, spec, version) : api.putLocation(name, spec, version),
    );
    if (result) {
      setSaved(true);
      onSaved(result);
    }
  };
  const onRemove = async () => {
    if (!object) return;
    const ok = await confirm({
      title: `Remove ${object.name}?`,
      body: <p>The relay stops applying it at once.</p>,
      yes: 'Yes, remove',
    });
    if (!ok) return;
    const gone = await remove.run(async () => {
      const version = object.version ?? undefined;
      await (kind === 'policy' ? api.removePolicy(object.name, version) : api.removeLocation(object.name, version));
      return true;
    });
    if (gone) navigate(['policies']);
  };
  const draft: DraftSource = () => {
    const p = parseSpec(text);
    if ('error' in p) return { error: `The draft is not valid JSON: ${p.error}` };
    return { spec: { ...p.spec, name: object?.name ?? p.spec['name'] } };
  };
  const summary =
    save.error ??
    (localIssue ? new ApiError(0, 'ERR_CONSOLE', `The ${kind} was not saved: see the issues below.`) : undefined);

  return (
    <>
      <form id={`${kind}-form`} onSubmit={(e) => void onSubmit(e)} noValidate>
        <IssueSummary id={`${kind}-form-summary`} error={summary} rest={[]} />
        {saved && (
          <p class="notice ok" role="status" id={`${kind}-saved`}>
            Saved (version {object?.version ?? '1'}).
          </p>
        )}
        {kind === 'policy' && (
          <SelectField
            id="policy-state"
            label="State"
            value={state}
            onValue={onState}
            options={[
              ['on', 'on: enforced'],
              ['reportOnly', 'report only: evaluated and logged, not enforced'],
              ['off', 'off'],
            ]}
            hint={'error' in parsed ? 'Fix the JSON below to change the state here.' : undefined}
            issues={split.of('state')}
          />
        )}
        <TextArea
          id={id}
          label={`The whole ${kind === 'policy' ? 'policy' : 'named location'} (JSON)`}
          value={text}
          onValue={(v) => {
            setText(v);
            setSaved(false);
          }}
          rows={kind === 'policy' ? 22 : 10}
          hint={
            'error' in parsed ? `Not valid JSON yet: ${parsed.error}` : 'Keys as the configuration file spells them.'
          }
          issues={split.rest}
          showPaths
        />
        <div class="actions">
          <button type="submit" class="primary" disabled={save.busy}>
            Save
          </button>
          {object && (
            <button type="button" class="danger" onClick={() => void onRemove()} disabled={remove.busy}>
              Remove
            </button>
          )}
        </div>
        <ErrorNotice error={remove.error} />
      </form>
      {kind === 'policy' && <WhatIf draft={draft} />}
    </>
  );
}
