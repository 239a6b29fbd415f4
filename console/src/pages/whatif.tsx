// What-if: what the relay would decide for a sign-in, policy by policy. On a
// policy being edited, "What-if with this draft" evaluates the draft in place of
// the saved policy (nothing is saved) next to the saved policies' decision.
import { useState } from 'preact/hooks';
import type { WhatIfInput, WhatIfResult } from '../../../src/admin/api-types.js';
import { ApiError } from '../api.js';
import { useAction, useLoad, useSession } from '../session.js';
import {
  Badge,
  CheckField,
  Empty,
  IssueSummary,
  SelectField,
  Table,
  TextField,
  dash,
  resultTone,
  splitIssues,
  splitList,
} from '../ui.js';

const LEVELS: [string, string][] = [
  ['', 'default (none)'],
  ['none', 'none'],
  ['low', 'low'],
  ['medium', 'medium'],
  ['high', 'high'],
];
const PLATFORMS: [string, string][] = [
  ['', 'default (other)'],
  ...['windows', 'macos', 'linux', 'ios', 'android', 'other'].map((p): [string, string] => [p, p]),
];
const FIELDS = ['app', 'user', 'email', 'groups', 'ip', 'platform', 'mfa', 'acr', 'risk', 'userRisk', 'time'];

type Level = NonNullable<WhatIfInput['risk']>;

interface Values {
  app: string;
  user: string;
  email: string;
  groups: string;
  ip: string;
  platform: string;
  mfa: boolean;
  acr: string;
  risk: string;
  userRisk: string;
  time: string;
  deviceCert: boolean;
}

const EMPTY: Values = {
  app: '',
  user: '',
  email: '',
  groups: '',
  ip: '',
  platform: '',
  mfa: false,
  acr: '',
  risk: '',
  userRisk: '',
  time: '',
  deviceCert: false,
};

function inputOf(v: Values): WhatIfInput {
  const input: WhatIfInput = { app: v.app.trim(), user: v.user.trim() };
  if (v.email.trim()) input.email = v.email.trim();
  if (v.groups.trim()) input.groups = splitList(v.groups);
  if (v.ip.trim()) input.ip = v.ip.trim();
  if (v.platform) input.platform = v.platform as WhatIfInput['platform'];
  if (v.mfa) input.mfa = true;
  if (v.acr.trim()) input.acr = v.acr.trim();
  if (v.risk) input.risk = v.risk as Level;
  if (v.userRisk) input.userRisk = v.userRisk as Level;
  if (v.time.trim()) input.time = v.time.trim();
  if (v.deviceCert) input.deviceCert = true;
  return input;
}

/** The decision as the page shows it. */
function decisionOf(r: WhatIfResult) {
  const d = r.decision;
  return {
    action: d.result,
    reason: d.hint ?? undefined,
    decidedBy: d.decidedBy ?? undefined,
    policies: d.policies.map((p) => ({
      name: p.name,
      state: p.state,
      result: p.outcome,
      applies: p.applies ? 'yes' : 'no',
      why: p.why,
      missing: p.missing.join(', '),
    })),
  };
}

export type DraftSource = () => { spec: Record<string, unknown> } | { error: string };

export function WhatIf({ draft }: { draft?: DraftSource }) {
  const { api } = useSession();
  const apps = useLoad(() => api.listApps().catch(() => []), []);
  const [values, setValues] = useState<Values>(EMPTY);
  const [shown, setShown] = useState<{ result: WhatIfResult; baseline?: WhatIfResult } | undefined>(undefined);
  const act = useAction();
  const split = splitIssues(act.error?.issues ?? [], FIELDS);
  const set =
    <K extends keyof Values>(k: K) =>
    (v: Values[K]) =>
      setValues((old) => ({ ...old, [k]: v }));

  const run = async (withDraft: boolean) => {
    const input = inputOf(values);
    const out = await act.run(async () => {
      if (!withDraft || !draft) return { result: await api.whatIf(input) };
      const d = draft();
      if ('error' in d) throw new ApiError(0, 'ERR_DRAFT', d.error);
      const [result, baseline] = await Promise.all([
        api.whatIf({ ...input, draftPolicies: [d.spec] }),
        api.whatIf(input),
      ]);
      return { result, baseline };
    });
    setShown(out);
  };

  return (
    <section aria-labelledby="whatif-heading" class="whatif">
      <h2 id="whatif-heading">What-if</h2>
      <form
        id="whatif-form"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          void run(false);
        }}
      >
        <IssueSummary id="whatif-summary" error={act.error} rest={split.rest} />
        <div class="grid">
          <TextField
            id="whatif-app"
            label="App"
            value={values.app}
            onValue={set('app')}
            list="whatif-app-list"
            required
            issues={split.of('app')}
          />
          <datalist id="whatif-app-list">
            {(apps.data ?? []).map((a) => (
              <option key={a.name} value={a.name} />
            ))}
          </datalist>
          <TextField
            id="whatif-user"
            label="User"
            value={values.user}
            onValue={set('user')}
            required
            hint="A user name or e-mail of the embedded provider, or a subject."
            issues={split.of('user')}
          />
          <TextField
            id="whatif-email"
            label="E-mail (optional)"
            value={values.email}
            onValue={set('email')}
            issues={split.of('email')}
          />
          <TextField
            id="whatif-groups"
            label="Groups (optional)"
            value={values.groups}
            onValue={set('groups')}
            hint="Comma-separated."
            issues={split.of('groups')}
          />
          <TextField
            id="whatif-ip"
            label="IP address"
            value={values.ip}
            onValue={set('ip')}
            placeholder="203.0.113.7"
            issues={split.of('ip')}
          />
          <SelectField
            id="whatif-platform"
            label="Platform"
            value={values.platform}
            onValue={set('platform')}
            options={PLATFORMS}
            issues={split.of('platform')}
          />
          <SelectField
            id="whatif-risk"
            label="Sign-in risk"
            value={values.risk}
            onValue={set('risk')}
            options={LEVELS}
            issues={split.of('risk')}
          />
          <SelectField
            id="whatif-user-risk"
            label="User risk"
            value={values.userRisk}
            onValue={set('userRisk')}
            options={LEVELS}
            issues={split.of('userRisk')}
          />
          <TextField
            id="whatif-time"
            label="Time (optional)"
            value={values.time}
            onValue={set('time')}
            placeholder="2025-06-02T09:30:00+02:00"
            hint="ISO 8601 with a zone; empty for now."
            issues={split.of('time')}
          />
          <TextField
            id="whatif-acr"
            label="ACR (optional)"
            value={values.acr}
            onValue={set('acr')}
            issues={split.of('acr')}
          />
          <CheckField id="whatif-mfa" label="Signed in with MFA" checked={values.mfa} onValue={set('mfa')} />
          <CheckField
            id="whatif-device-cert"
            label="With a device certificate"
            checked={values.deviceCert}
            onValue={set('deviceCert')}
          />
        </div>
        <div class="actions">
          <button type="submit" class="primary" disabled={act.busy}>
            Run what-if
          </button>
          {draft && (
            <button type="button" disabled={act.busy} onClick={() => void run(true)}>
              What-if with this draft
            </button>
          )}
        </div>
      </form>
      <div aria-live="polite">{shown && <WhatIfAnswer {...shown} />}</div>
    </section>
  );
}

function WhatIfAnswer({ result, baseline }: { result: WhatIfResult; baseline?: WhatIfResult }) {
  const d = decisionOf(result);
  const b = baseline && decisionOf(baseline);
  return (
    <div id="whatif-result" class="result">
      <p id="whatif-decision" data-decision={d.action}>
        Decision{baseline ? ' with this draft' : ''}: <Badge tone={resultTone(d.action)}>{d.action}</Badge>
        {d.decidedBy && <> by policy {d.decidedBy}</>}
        {d.reason && <span class="muted"> — {d.reason}</span>}
      </p>
      {b && (
        <p id="whatif-baseline" data-decision={b.action}>
          With the saved policies: <Badge tone={resultTone(b.action)}>{b.action}</Badge>{' '}
          {b.action === d.action ? (
            '(the draft does not change the decision)'
          ) : (
            <strong>(the draft changes the decision)</strong>
          )}
        </p>
      )}
      <p>
        Assignment:{' '}
        {result.assigned ? 'the user is assigned to the app' : <strong>the user is not assigned to the app</strong>}
      </p>
      <Table label="Policies evaluated" id="whatif-policies">
        <thead>
          <tr>
            <th scope="col">Policy</th>
            <th scope="col">State</th>
            <th scope="col">Applies</th>
            <th scope="col">Result</th>
            <th scope="col">Why</th>
            <th scope="col">Missing</th>
          </tr>
        </thead>
        <tbody>
          {d.policies.length === 0 && <Empty cols={6}>No policy is configured.</Empty>}
          {d.policies.map((p) => (
            <tr key={p.name}>
              <th scope="row">{p.name}</th>
              <td>{p.state}</td>
              <td>{p.applies}</td>
              <td>
                <Badge tone={resultTone(p.result)}>{p.result}</Badge>
              </td>
              <td class="wrap">{dash(p.why)}</td>
              <td>{dash(p.missing)}</td>
            </tr>
          ))}
        </tbody>
      </Table>
    </div>
  );
}
