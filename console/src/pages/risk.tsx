// Risk: users at risk (or every user with a risk state, "all"), the detections
// log, and the two decisions an administrator takes: dismiss a user's risk, or
// confirm the user compromised.
import type { RiskUserView } from '../../../src/admin/api-types.js';
import { href, navigate } from '../router.js';
import { useAction, useLoad, usePaged, useSession } from '../session.js';
import {
  Badge,
  CheckField,
  Empty,
  ErrorNotice,
  Loading,
  LoadMore,
  PageTitle,
  Table,
  Time,
  dash,
  riskTone,
  useConfirm,
  type Tone,
} from '../ui.js';

const STATE_TONE: Record<RiskUserView['state'], Tone> = {
  atRisk: 'bad',
  confirmedCompromised: 'bad',
  dismissed: 'plain',
  remediated: 'ok',
  none: 'plain',
};

export function RiskPage({ query }: { query: URLSearchParams }) {
  const { api, canWrite } = useSession();
  const all = query.get('all') === '1';
  const users = useLoad(() => api.riskUsers(all ? { all: true } : {}), [all]);
  const detections = usePaged((cursor) => api.riskDetections(cursor ? { cursor } : {}), []);
  const act = useAction();
  const confirm = useConfirm();

  const onDismiss = async (user: string) => {
    if (await act.run(() => api.dismissRisk(user))) {
      users.reload();
    }
  };
  const onConfirm = async (user: string) => {
    const ok = await confirm({
      title: `Confirm ${user} compromised?`,
      body: (
        <p>The user's risk becomes high: policies on user risk apply to every sign-in of theirs until dismissed.</p>
      ),
      yes: 'Yes, confirm compromised',
    });
    if (ok && (await act.run(() => api.confirmRisk(user)))) users.reload();
  };

  return (
    <>
      <PageTitle>Risk</PageTitle>
      <section aria-labelledby="risky-users-heading">
        <h2 id="risky-users-heading">{all ? 'Users with a risk state' : 'Users at risk'}</h2>
        <CheckField
          id="risk-all"
          label="Show every user with a risk state (also dismissed and remediated)"
          checked={all}
          onValue={(v) => navigate(['risk'], { all: v ? '1' : undefined })}
        />
        <ErrorNotice error={users.error ?? act.error} />
        {users.loading && !users.data && <Loading what="risky users" />}
        {users.data && (
          <Table label="Risky users" id="risk-users-table">
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Risk</th>
                <th scope="col">State</th>
                <th scope="col">Detections</th>
                <th scope="col">Last detection</th>
                <th scope="col">Types</th>
                <th scope="col">Decided by</th>
                {canWrite && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {users.data.length === 0 && <Empty cols={canWrite ? 8 : 7}>No user is at risk.</Empty>}
              {users.data.map((u) => (
                <tr key={u.user} data-testid={`risk-user-${u.user}`}>
                  <th scope="row">
                    <a href={href(['signins'], { user: u.user })}>{u.user}</a>
                  </th>
                  <td>
                    <Badge tone={riskTone(u.risk)}>{u.risk}</Badge>
                  </td>
                  <td>
                    <Badge tone={STATE_TONE[u.state]}>{u.state}</Badge>
                  </td>
                  <td>{u.detections}</td>
                  <td>
                    <Time iso={u.lastDetection} />
                  </td>
                  <td>{u.types.join(', ') || '—'}</td>
                  <td>{dash(u.decidedBy)}</td>
                  {canWrite && (
                    <td class="row-actions">
                      {u.state !== 'dismissed' && u.state !== 'none' && (
                        <button type="button" class="small" disabled={act.busy} onClick={() => void onDismiss(u.user)}>
                          Dismiss
                        </button>
                      )}
                      {u.state !== 'confirmedCompromised' && (
                        <button
                          type="button"
                          class="small danger"
                          disabled={act.busy}
                          onClick={() => void onConfirm(u.user)}
                        >
                          Confirm compromised
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </Table>
        )}
      </section>
      <section aria-labelledby="detections-heading">
        <h2 id="detections-heading">Detections</h2>
        <ErrorNotice error={detections.error} />
        {detections.loading && <Loading what="detections" />}
        {!detections.loading && (
          <Table label="Risk detections" id="detections-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">User</th>
                <th scope="col">Type</th>
                <th scope="col">Level</th>
                <th scope="col">IP</th>
                <th scope="col">App</th>
                <th scope="col">Sign-in</th>
              </tr>
            </thead>
            <tbody>
              {detections.rows.length === 0 && <Empty cols={7}>No detection.</Empty>}
              {detections.rows.map((d) => (
                <tr key={d.id}>
                  <td>
                    <Time iso={d.at} />
                  </td>
                  <td>{dash(d.user)}</td>
                  <td>{d.type}</td>
                  <td>
                    <Badge tone={riskTone(d.level)}>{d.level}</Badge>
                  </td>
                  <td>{dash(d.ip)}</td>
                  <td>{dash(d.app)}</td>
                  <td>{d.signInId !== null ? <a href={href(['signins', d.signInId])}>#{d.signInId}</a> : '—'}</td>
                </tr>
              ))}
            </tbody>
          </Table>
        )}
        <LoadMore next={detections.next} busy={detections.moreBusy} onMore={detections.more} />
      </section>
    </>
  );
}
