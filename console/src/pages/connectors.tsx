// Connectors and their groups: the list, one connector with its channels and
// certificates, Revoke (its channels close at once) and Delete once revoked;
// groups declared through the API are created and removed here.
import { useState } from 'preact/hooks';
import type { ConnectorView } from '../../../src/admin/api-types.js';
import { href, navigate } from '../router.js';
import { useAction, useLoad, useSession } from '../session.js';
import {
  Badge,
  Empty,
  ErrorNotice,
  Facts,
  IssueSummary,
  Loading,
  PageTitle,
  Table,
  TextField,
  Time,
  dash,
  splitIssues,
  useConfirm,
  type Tone,
} from '../ui.js';

const STATUS_TONE: Record<ConnectorView['status'], Tone> = { online: 'ok', offline: 'warn', revoked: 'bad' };
const SOON_MS = 14 * 86_400_000;

function Expiry({ iso }: { iso: string | null }) {
  if (!iso) return <span class="muted">—</span>;
  const left = new Date(iso).getTime() - Date.now();
  return (
    <span>
      <Time iso={iso} />{' '}
      {left < 0 ? <Badge tone="bad">expired</Badge> : left < SOON_MS ? <Badge tone="warn">expires soon</Badge> : null}
    </span>
  );
}

export function ConnectorsPage() {
  const { api } = useSession();
  const connectors = useLoad(() => api.listConnectors(), []);
  return (
    <>
      <PageTitle>Connectors &amp; groups</PageTitle>
      <section aria-labelledby="connectors-heading">
        <h2 id="connectors-heading">Connectors</h2>
        <ErrorNotice error={connectors.error} />
        {connectors.loading && !connectors.data && <Loading what="connectors" />}
        {connectors.data && (
          <Table label="Connectors" id="connectors-table">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Group</th>
                <th scope="col">Status</th>
                <th scope="col">Version</th>
                <th scope="col">Last seen</th>
                <th scope="col">Certificate expires</th>
              </tr>
            </thead>
            <tbody>
              {connectors.data.length === 0 && (
                <Empty cols={6}>No connector has registered. Run proxyctl connector register on a machine.</Empty>
              )}
              {connectors.data.map((c) => (
                <tr key={c.id} data-testid={`connector-row-${c.name}`}>
                  <th scope="row">
                    <a href={href(['connectors', c.id])}>{c.name}</a>
                  </th>
                  <td>{c.group}</td>
                  <td>
                    <Badge tone={STATUS_TONE[c.status]}>{c.status}</Badge>
                  </td>
                  <td>{dash(c.version)}</td>
                  <td>
                    <Time iso={c.lastSeen} />
                  </td>
                  <td>
                    <Expiry iso={c.certificateExpires} />
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        )}
      </section>
      <Groups />
    </>
  );
}

function Groups() {
  const { api, canWrite } = useSession();
  const groups = useLoad(() => api.listGroups(), []);
  const create = useAction();
  const remove = useAction();
  const confirm = useConfirm();
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const split = splitIssues(create.error?.issues ?? [], ['name', 'description']);

  const onCreate = async (e: Event) => {
    e.preventDefault();
    const made = await create.run(() =>
      api.createGroup({ name: name.trim(), ...(description.trim() ? { description: description.trim() } : {}) }),
    );
    if (made) {
      setName('');
      setDescription('');
      groups.reload();
    }
  };
  const onDelete = async (group: string) => {
    const ok = await confirm({
      title: `Delete group ${group}?`,
      body: <p>The group is no longer declared. Apps and connectors can no longer name it.</p>,
      yes: 'Yes, delete',
    });
    if (ok && (await remove.run(async () => (await api.removeGroup(group), true)))) groups.reload();
  };

  return (
    <section aria-labelledby="groups-heading">
      <h2 id="groups-heading">Connector groups</h2>
      <ErrorNotice error={groups.error ?? remove.error} />
      {groups.loading && !groups.data && <Loading what="groups" />}
      {groups.data && (
        <Table label="Connector groups" id="groups-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Source</th>
              <th scope="col">Description</th>
              <th scope="col">Connectors (online / total)</th>
              <th scope="col">Apps</th>
              {canWrite && <th scope="col">Actions</th>}
            </tr>
          </thead>
          <tbody>
            {groups.data.length === 0 && <Empty cols={canWrite ? 6 : 5}>No group yet.</Empty>}
            {groups.data.map((g) => (
              <tr key={g.name} data-testid={`group-row-${g.name}`}>
                <th scope="row">{g.name}</th>
                <td>
                  <Badge tone={g.source === 'api' ? 'info' : 'plain'}>{g.source}</Badge>
                </td>
                <td>{dash(g.description)}</td>
                <td>
                  {g.connectors.online} / {g.connectors.total}
                  {g.connectors.revoked > 0 && <span class="muted"> ({g.connectors.revoked} revoked)</span>}
                </td>
                <td class="wrap">{g.apps.length ? g.apps.join(', ') : '—'}</td>
                {canWrite && (
                  <td>
                    {g.source === 'api' && (
                      <button
                        type="button"
                        class="danger small"
                        onClick={() => void onDelete(g.name)}
                        disabled={remove.busy}
                      >
                        Delete
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </Table>
      )}
      {canWrite && (
        <form id="group-form" class="inline-form" onSubmit={(e) => void onCreate(e)} noValidate>
          <h3>Create a group</h3>
          <IssueSummary id="group-form-summary" error={create.error} rest={split.rest} />
          <TextField
            id="group-name"
            label="Group name"
            value={name}
            onValue={setName}
            required
            issues={split.of('name')}
          />
          <TextField
            id="group-description"
            label="Description (optional)"
            value={description}
            onValue={setDescription}
            issues={split.of('description')}
          />
          <div class="actions">
            <button type="submit" class="primary" disabled={create.busy}>
              Create group
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

export function ConnectorDetail({ id }: { id: string }) {
  const { api, canWrite } = useSession();
  const c = useLoad(() => api.getConnector(id), [id]);
  const act = useAction();
  const confirm = useConfirm();
  const d = c.data;

  const onRevoke = async () => {
    if (!d) return;
    const ok = await confirm({
      title: `Revoke ${d.name}?`,
      body: (
        <p>
          Its channels close at once and its certificates are refused from now on. The apps of group {d.group} are
          served by its other connectors only. A revoked connector cannot come back: register a new one.
        </p>
      ),
      yes: 'Yes, revoke',
    });
    if (ok && (await act.run(() => api.revokeConnector(d.id)))) c.reload();
  };
  const onDelete = async () => {
    if (!d) return;
    const ok = await confirm({
      title: `Delete ${d.name}?`,
      body: <p>The revoked connector leaves the listings. Its certificates stay refused.</p>,
      yes: 'Yes, delete',
    });
    if (ok && (await act.run(async () => (await api.deleteConnector(d.id), true)))) navigate(['connectors']);
  };

  return (
    <>
      <PageTitle>Connector {d?.name ?? id}</PageTitle>
      <p>
        <a href={href(['connectors'])}>← All connectors</a>
      </p>
      <ErrorNotice error={c.error ?? act.error} />
      {c.loading && !d && <Loading what="the connector" />}
      {d && (
        <>
          {canWrite && (
            <div class="actions">
              {d.status !== 'revoked' ? (
                <button type="button" class="danger" onClick={() => void onRevoke()} disabled={act.busy}>
                  Revoke
                </button>
              ) : (
                <button type="button" class="danger" onClick={() => void onDelete()} disabled={act.busy}>
                  Delete
                </button>
              )}
            </div>
          )}
          <Facts
            id="connector-detail"
            rows={[
              ['ID', <code>{d.id}</code>],
              ['Group', d.group],
              ['Status', <Badge tone={STATUS_TONE[d.status]}>{d.status}</Badge>],
              ['Version', dash(d.version)],
              ['Registered', <Time iso={d.createdAt} />],
              ['Registered by', d.registeredBy],
              ['Last seen', <Time iso={d.lastSeen} relative />],
              ['Revoked', <Time iso={d.revokedAt} />],
              ['Certificate expires', <Expiry iso={d.certificateExpires} />],
            ]}
          />
          <h2>Channels</h2>
          {d.channels === null ? (
            <p class="muted">Open channels are known to a running relay only.</p>
          ) : (
            <Table label="Channels" id="channels-table">
              <thead>
                <tr>
                  <th scope="col">Replica</th>
                  <th scope="col">Opened</th>
                  <th scope="col">Version</th>
                  <th scope="col">In flight</th>
                </tr>
              </thead>
              <tbody>
                {d.channels.length === 0 && <Empty cols={4}>No open channel.</Empty>}
                {d.channels.map((ch, i) => (
                  <tr key={`${ch.replica}-${i}`}>
                    <td>{ch.replica}</td>
                    <td>
                      <Time iso={ch.openedAt} relative />
                    </td>
                    <td>{dash(ch.version)}</td>
                    <td>{ch.inFlight}</td>
                  </tr>
                ))}
              </tbody>
            </Table>
          )}
          <h2>Certificates</h2>
          <Table label="Certificates" id="certificates-table">
            <thead>
              <tr>
                <th scope="col">Serial</th>
                <th scope="col">Kind</th>
                <th scope="col">Issued</th>
                <th scope="col">Not after</th>
                <th scope="col">Revoked</th>
              </tr>
            </thead>
            <tbody>
              {d.certificateList.length === 0 && <Empty cols={5}>No certificate.</Empty>}
              {d.certificateList.map((cert) => (
                <tr key={cert.serial}>
                  <td>
                    <code>{cert.serial}</code>
                  </td>
                  <td>{cert.kind}</td>
                  <td>
                    <Time iso={cert.issuedAt} />
                  </td>
                  <td>
                    <Time iso={cert.notAfter} />
                  </td>
                  <td>
                    <Time iso={cert.revokedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </>
      )}
    </>
  );
}
