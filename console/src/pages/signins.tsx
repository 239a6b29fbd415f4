// Sign-ins: the log filtered by user, app, result, risk and age, paged with the
// server's cursor; a chart of results and a table of locations over the rows
// listed; one sign-in with its location, client, methods, policies and detections.
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { SignInFilter, SignInView } from '../../../src/admin/api-types.js';
import { BarChart, SIGN_IN_SERIES, dayLabel, hourLabel, type Bucket } from '../charts.js';
import { href, navigate } from '../router.js';
import { useLoad, usePaged, useSession } from '../session.js';
import {
  Badge,
  Empty,
  ErrorNotice,
  Facts,
  Json,
  Loading,
  LoadMore,
  PageTitle,
  SelectField,
  Table,
  TextField,
  Time,
  dash,
  resultTone,
  riskTone,
} from '../ui.js';

const RESULTS: [string, string][] = [
  ['', 'any'],
  ['success', 'success'],
  ['failure', 'failure'],
  ['stepUp', 'step-up'],
];
const RISKS: [string, string][] = [
  ['', 'any'],
  ['none', 'none'],
  ['low', 'low'],
  ['medium', 'medium'],
  ['high', 'high'],
];
const FILTER_KEYS = ['user', 'app', 'result', 'risk', 'since'] as const;
type Filters = Record<(typeof FILTER_KEYS)[number], string>;

export const place = (s: Pick<SignInView, 'city' | 'country'>): string =>
  [s.city, s.country].filter(Boolean).join(', ') || '—';

/** Results per time bucket: hours over two days or less, else days, weeks or 30-day spans (at most 48 bars). */
export function resultBuckets(rows: SignInView[]): Bucket[] {
  if (!rows.length) return [];
  const times = rows.map((r) => new Date(r.at).getTime()).filter((t) => !Number.isNaN(t));
  const min = Math.min(...times);
  const max = Math.max(...times);
  const H = 3_600_000;
  const size = [H, 24 * H, 7 * 24 * H, 30 * 24 * H].find((s) => (max - min) / s < 48) ?? 30 * 24 * H;
  const start = size === H ? Math.floor(min / H) * H : new Date(new Date(min).toDateString()).getTime();
  const count = Math.floor((max - start) / size) + 1;
  const buckets: Bucket[] = Array.from({ length: count }, (_, i) => {
    const iso = new Date(start + i * size).toISOString();
    return { label: size === H ? hourLabel(iso) : dayLabel(iso), values: { success: 0, failure: 0, stepUp: 0 } };
  });
  for (const r of rows) {
    const b = buckets[Math.floor((new Date(r.at).getTime() - start) / size)];
    if (b) b.values[r.result] = (b.values[r.result] ?? 0) + 1;
  }
  return buckets;
}

export function SignInsPage({ query }: { query: URLSearchParams }) {
  const { api } = useSession();
  const key = query.toString();
  const applied = useMemo(() => Object.fromEntries(FILTER_KEYS.map((k) => [k, query.get(k) ?? ''])) as Filters, [key]);
  const [form, setForm] = useState<Filters>(applied);
  useEffect(() => setForm(applied), [applied]);
  const filter = (cursor?: string): SignInFilter => ({
    ...Object.fromEntries(FILTER_KEYS.filter((k) => applied[k]).map((k) => [k, applied[k]])),
    ...(cursor ? { cursor } : {}),
  });
  const log = usePaged((cursor) => api.signIns(filter(cursor)), [key]);
  const rows = log.rows;
  const set = (k: keyof Filters) => (v: string) => setForm((f) => ({ ...f, [k]: v }));

  return (
    <>
      <PageTitle>Sign-ins</PageTitle>
      <form
        id="signins-filter"
        class="filters"
        role="search"
        aria-label="Filter sign-ins"
        onSubmit={(e) => {
          e.preventDefault();
          navigate(['signins'], form);
        }}
      >
        <TextField id="signins-user" label="User" value={form.user} onValue={set('user')} />
        <TextField id="signins-app" label="App" value={form.app} onValue={set('app')} />
        <SelectField id="signins-result" label="Result" value={form.result} onValue={set('result')} options={RESULTS} />
        <SelectField id="signins-risk" label="Risk" value={form.risk} onValue={set('risk')} options={RISKS} />
        <TextField
          id="signins-since"
          label="Since"
          value={form.since}
          onValue={set('since')}
          placeholder="24h"
          hint="A duration ago (24h, 7d) or an ISO 8601 time."
        />
        <div class="actions">
          <button type="submit" class="primary">
            Filter
          </button>
        </div>
      </form>
      <ErrorNotice error={log.error} />
      {log.loading && <Loading what="sign-ins" />}
      {!log.loading && (rows.length > 0 || !log.error) && (
        <>
          <Table label="Sign-ins" id="signins-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">User</th>
                <th scope="col">App</th>
                <th scope="col">Result</th>
                <th scope="col">Risk</th>
                <th scope="col">IP</th>
                <th scope="col">Location</th>
                <th scope="col">Client</th>
              </tr>
            </thead>
            <tbody>
              {rows.length === 0 && <Empty cols={8}>No sign-in matches.</Empty>}
              {rows.map((s) => (
                <tr key={s.id} data-testid={`signin-row-${s.id}`}>
                  <th scope="row">
                    <a href={href(['signins', s.id])}>
                      <Time iso={s.at} />
                    </a>
                  </th>
                  <td>{dash(s.user)}</td>
                  <td>{dash(s.app)}</td>
                  <td>
                    <Badge tone={resultTone(s.result)}>{s.result}</Badge>
                  </td>
                  <td>
                    <Badge tone={riskTone(s.risk)}>{s.risk}</Badge>
                  </td>
                  <td>{dash(s.ip)}</td>
                  <td>{place(s)}</td>
                  <td>{[s.browser, s.os].filter(Boolean).join(' on ') || dash(s.clientType)}</td>
                </tr>
              ))}
            </tbody>
          </Table>
          <LoadMore next={log.next} busy={log.moreBusy} onMore={log.more} />
          {rows.length > 0 && (
            <div class="charts">
              <BarChart
                id="signins-results-chart"
                title={`Results of the ${rows.length} sign-ins listed`}
                series={SIGN_IN_SERIES}
                buckets={resultBuckets(rows)}
              />
              <Locations rows={rows} />
            </div>
          )}
        </>
      )}
    </>
  );
}

function Locations({ rows }: { rows: SignInView[] }) {
  const groups = new Map<
    string,
    { country: string; city: string; total: number; failed: number; users: Set<string> }
  >();
  for (const r of rows) {
    const k = `${r.country ?? ''}|${r.city ?? ''}`;
    const g = groups.get(k) ?? { country: r.country ?? '', city: r.city ?? '', total: 0, failed: 0, users: new Set() };
    g.total++;
    if (r.result === 'failure') g.failed++;
    if (r.user) g.users.add(r.user);
    groups.set(k, g);
  }
  const sorted = [...groups.values()].sort((a, b) => b.total - a.total);
  return (
    <section aria-labelledby="locations-of-signins">
      <h2 id="locations-of-signins">Locations of the sign-ins listed</h2>
      <Table label="Locations of the sign-ins listed" id="signin-locations-table">
        <thead>
          <tr>
            <th scope="col">Country</th>
            <th scope="col">City</th>
            <th scope="col">Sign-ins</th>
            <th scope="col">Failed</th>
            <th scope="col">Users</th>
          </tr>
        </thead>
        <tbody>
          {sorted.map((g) => (
            <tr key={`${g.country}|${g.city}`}>
              <td>{g.country || 'unknown'}</td>
              <td>{g.city || '—'}</td>
              <td>{g.total}</td>
              <td>{g.failed}</td>
              <td>{g.users.size}</td>
            </tr>
          ))}
        </tbody>
      </Table>
    </section>
  );
}

interface PolicyRow {
  name: string;
  state: string;
  applies: string;
  result: string;
  why: string;
  missing: string;
}

/** A policy result as the sign-in log stored it; anything else is shown as its JSON. */
function policyRow(p: unknown, i: number): PolicyRow {
  const o = (p && typeof p === 'object' ? p : {}) as Record<string, unknown>;
  const s = (v: unknown) => (typeof v === 'string' ? v : '');
  return {
    name: s(o['name']) || `#${i + 1}`,
    state: s(o['state']),
    applies: typeof o['applies'] === 'boolean' ? (o['applies'] ? 'yes' : 'no') : '—',
    result: s(o['result']) || s(o['outcome']) || (typeof p === 'object' ? '' : JSON.stringify(p)),
    why: s(o['why']),
    missing: Array.isArray(o['missing']) ? o['missing'].map(String).join(', ') : '',
  };
}

export function SignInDetail({ id }: { id: string }) {
  const { api } = useSession();
  const n = Number(id);
  const valid = Number.isSafeInteger(n) && n > 0;
  const s = useLoad(() => (valid ? api.signIn(n) : Promise.reject(new Error(`${id} is not a sign-in id`))), [id]);
  const d = s.data;
  return (
    <>
      <PageTitle>Sign-in {id}</PageTitle>
      <p>
        <a href={href(['signins'])}>← Sign-ins</a>
      </p>
      <ErrorNotice error={s.error} />
      {s.loading && !d && <Loading what="the sign-in" />}
      {d && (
        <div id="signin-detail" data-testid="signin-detail">
          <p class="headline">
            <Badge tone={resultTone(d.result)}>{d.result}</Badge> {d.user ?? 'someone'} → {d.app ?? 'no app'}{' '}
            <Time iso={d.at} relative />
          </p>
          {d.reason && <p class="reason">{d.reason}</p>}
          <div class="cards">
            <section class="card" aria-labelledby="si-summary">
              <h2 id="si-summary">Sign-in</h2>
              <Facts
                rows={[
                  ['Kind', d.kind],
                  ['User', dash(d.user)],
                  ['App', dash(d.app)],
                  ['Result', d.result],
                  ['Reason', dash(d.reason)],
                  ['Risk', <Badge tone={riskTone(d.risk)}>{d.risk}</Badge>],
                  ['Request ID', <code>{dash(d.requestId)}</code>],
                  ['Trace ID', <code id="signin-trace-id">{dash(d.traceId)}</code>],
                ]}
              />
            </section>
            <section class="card" aria-labelledby="si-location">
              <h2 id="si-location">Location</h2>
              <Facts
                rows={[
                  ['IP', dash(d.ip)],
                  ['Place', place(d)],
                  ['Coordinates', d.latitude !== null && d.longitude !== null ? `${d.latitude}, ${d.longitude}` : '—'],
                  ['Network', d.asn !== null ? `AS${d.asn} ${d.network ?? ''}` : dash(d.network)],
                ]}
              />
            </section>
            <section class="card" aria-labelledby="si-client">
              <h2 id="si-client">Client</h2>
              <Facts
                rows={[
                  ['Type', dash(d.clientType)],
                  ['Browser', dash(d.browser)],
                  ['OS', dash(d.os)],
                  ['User agent', <span class="wrap">{dash(d.userAgent)}</span>],
                  ['Methods', d.methods.length ? d.methods.join(', ') : '—'],
                ]}
              />
            </section>
          </div>
          <h2>Policies</h2>
          <Table label="Policies applied to this sign-in" id="signin-policies">
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
              {d.policies.length === 0 && <Empty cols={6}>No policy was evaluated.</Empty>}
              {d.policies.map(policyRow).map((p) => (
                <tr key={p.name}>
                  <th scope="row">{p.name}</th>
                  <td>{dash(p.state)}</td>
                  <td>{p.applies}</td>
                  <td>
                    <Badge tone={resultTone(p.result)}>{dash(p.result)}</Badge>
                  </td>
                  <td class="wrap">{dash(p.why)}</td>
                  <td>{dash(p.missing)}</td>
                </tr>
              ))}
            </tbody>
          </Table>
          <h2>Detections</h2>
          <Table label="Risk detections of this sign-in" id="signin-detections">
            <thead>
              <tr>
                <th scope="col">Type</th>
                <th scope="col">Level</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {d.detections.length === 0 && <Empty cols={3}>None.</Empty>}
              {d.detections.map((x, i) => (
                <tr key={`${x.type}-${i}`}>
                  <td>{x.type}</td>
                  <td>
                    <Badge tone={riskTone(x.level)}>{x.level}</Badge>
                  </td>
                  <td class="wrap">{dash(x.detail)}</td>
                </tr>
              ))}
            </tbody>
          </Table>
          <details>
            <summary>Raw record</summary>
            <Json value={d} />
          </details>
        </div>
      )}
    </>
  );
}
