// Overview: the replicas and their heartbeats, connector and app counts, the
// sign-in chart (24 h, every replica's) and the request chart (this replica's).
import type { Overview } from '../../../src/admin/api-types.js';
import { BarChart, SIGN_IN_SERIES, hourLabel, minuteLabel } from '../charts.js';
import { useLoad, useSession } from '../session.js';
import { Badge, Empty, ErrorNotice, Loading, PageTitle, Table, Time } from '../ui.js';

function Stat({ label, value, tone, id }: { label: string; value: number; tone?: string; id: string }) {
  return (
    <div class={`stat ${tone ?? ''}`} data-testid={id}>
      <span class="value">{value}</span>
      <span class="label">{label}</span>
    </div>
  );
}

export function OverviewPage() {
  const { api } = useSession();
  const o = useLoad(() => api.overview(), []);
  return (
    <>
      <PageTitle>Overview</PageTitle>
      <p>
        <button type="button" onClick={o.reload} disabled={o.loading}>
          Refresh
        </button>
      </p>
      <ErrorNotice error={o.error} />
      {o.loading && !o.data && <Loading what="the overview" />}
      {o.data && <OverviewBody o={o.data} />}
    </>
  );
}

function OverviewBody({ o }: { o: Overview }) {
  const c = o.connectors;
  return (
    <>
      <section aria-labelledby="ov-replicas">
        <h2 id="ov-replicas">Replicas</h2>
        <Table label="Replicas" id="replicas-table">
          <thead>
            <tr>
              <th scope="col">Replica</th>
              <th scope="col">URL</th>
              <th scope="col">Started</th>
              <th scope="col">Last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {o.replicas.length === 0 && <Empty cols={4}>No replica has reported.</Empty>}
            {o.replicas.map((r) => (
              <tr key={r.id}>
                <td>
                  {r.id} {r.self && <Badge tone="info">this replica</Badge>}
                </td>
                <td class="wrap">{r.url}</td>
                <td>
                  <Time iso={r.startedAt} />
                </td>
                <td>
                  <Time iso={r.heartbeatAt} relative />
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
      </section>

      <div class="cards">
        <section aria-labelledby="ov-connectors" class="card">
          <h2 id="ov-connectors">Connectors</h2>
          <div class="stats">
            <Stat id="connectors-online" label="online" value={c.online} tone="ok" />
            <Stat id="connectors-offline" label="offline" value={c.offline} tone={c.offline ? 'warn' : ''} />
            <Stat id="connectors-revoked" label="revoked" value={c.revoked} />
            <Stat
              id="connectors-expiring"
              label="expiring soon"
              value={c.expiringSoon}
              tone={c.expiringSoon ? 'warn' : ''}
            />
          </div>
        </section>
        <section aria-labelledby="ov-apps" class="card">
          <h2 id="ov-apps">Apps</h2>
          <div class="stats">
            <Stat id="apps-total" label="total" value={o.apps.total} />
            <Stat id="apps-file" label="from the file" value={o.apps.file} />
            <Stat id="apps-api" label="from the API" value={o.apps.api} />
            <Stat
              id="apps-not-in-force"
              label="not in force"
              value={o.apps.notInForce}
              tone={o.apps.notInForce ? 'bad' : ''}
            />
          </div>
        </section>
        <section aria-labelledby="ov-risk" class="card">
          <h2 id="ov-risk">Risk</h2>
          <div class="stats">
            <Stat
              id="risk-users"
              label="users at risk"
              value={o.risk.usersAtRisk}
              tone={o.risk.usersAtRisk ? 'bad' : ''}
            />
            <Stat id="risk-detections" label="detections in 24 h" value={o.risk.detections24h} />
          </div>
        </section>
      </div>

      <section aria-labelledby="ov-charts">
        <h2 id="ov-charts">Activity</h2>
        <div class="charts">
          <BarChart
            id="signins-chart"
            title="Sign-ins per hour, last 24 hours"
            series={SIGN_IN_SERIES}
            buckets={o.signIns.map((b) => ({
              label: hourLabel(b.start),
              values: { success: b.success, failure: b.failure, stepUp: b.stepUp },
            }))}
          />
          {o.requests ? (
            <BarChart
              id="requests-chart"
              title="Requests per minute on this replica, last hour"
              series={[
                { key: 'ok', label: 'answered', cls: 's-info' },
                { key: 'errors', label: 'errors', cls: 's-bad' },
              ]}
              buckets={o.requests.map((b) => ({
                label: minuteLabel(b.start),
                values: { ok: Math.max(0, b.count - b.errors), errors: b.errors },
              }))}
            />
          ) : (
            <p class="muted" data-testid="requests-unavailable">
              Request counts come from a running relay; this answer has none.
            </p>
          )}
        </div>
      </section>
    </>
  );
}
