// Audit: who changed what, filtered by actor and action (an exact action or a
// prefix ending in "."), paged with the server's cursor; each row's details open
// in place as JSON.
import { useEffect, useState } from 'preact/hooks';
import { navigate } from '../router.js';
import { usePaged, useSession } from '../session.js';
import { Empty, ErrorNotice, Json, Loading, LoadMore, PageTitle, Table, TextField, Time, dash } from '../ui.js';

export function AuditPage({ query }: { query: URLSearchParams }) {
  const { api } = useSession();
  const actor = query.get('actor') ?? '';
  const action = query.get('action') ?? '';
  const [form, setForm] = useState({ actor, action });
  useEffect(() => setForm({ actor, action }), [actor, action]);
  const log = usePaged(
    (cursor) =>
      api.audit({ ...(actor ? { actor } : {}), ...(action ? { action } : {}), ...(cursor ? { cursor } : {}) }),
    [actor, action],
  );
  const [open, setOpen] = useState<Set<number>>(new Set());
  const toggle = (id: number) =>
    setOpen((s) => {
      const n = new Set(s);
      if (!n.delete(id)) n.add(id);
      return n;
    });

  return (
    <>
      <PageTitle>Audit</PageTitle>
      <form
        id="audit-filter"
        class="filters"
        role="search"
        aria-label="Filter the audit log"
        onSubmit={(e) => {
          e.preventDefault();
          navigate(['audit'], form);
        }}
      >
        <TextField
          id="audit-actor"
          label="Actor"
          value={form.actor}
          onValue={(v) => setForm((f) => ({ ...f, actor: v }))}
        />
        <TextField
          id="audit-action"
          label="Action"
          value={form.action}
          onValue={(v) => setForm((f) => ({ ...f, action: v }))}
          placeholder="connector."
          hint='An action, or a prefix ending in "." such as app.'
        />
        <div class="actions">
          <button type="submit" class="primary">
            Filter
          </button>
        </div>
      </form>
      <ErrorNotice error={log.error} />
      {log.loading && <Loading what="the audit log" />}
      {!log.loading && (log.rows.length > 0 || !log.error) && (
        <Table label="Audit log" id="audit-table">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Actor</th>
              <th scope="col">Action</th>
              <th scope="col">Connector</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {log.rows.length === 0 && <Empty cols={5}>No entry matches.</Empty>}
            {log.rows.map((a) => {
              const expanded = open.has(a.id);
              return [
                <tr key={a.id} data-testid={`audit-row-${a.id}`}>
                  <td>
                    <Time iso={a.at} />
                  </td>
                  <td>{a.actor}</td>
                  <td>
                    <code>{a.action}</code>
                  </td>
                  <td>{dash(a.connectorId)}</td>
                  <td>
                    <button
                      type="button"
                      class="small"
                      aria-expanded={expanded}
                      aria-controls={expanded ? `audit-details-${a.id}` : undefined}
                      onClick={() => toggle(a.id)}
                    >
                      {expanded ? 'Hide' : 'Details'}
                    </button>
                  </td>
                </tr>,
                expanded && (
                  <tr key={`${a.id}-details`} id={`audit-details-${a.id}`} class="details-row">
                    <td colSpan={5}>
                      <Json value={a.details} />
                    </td>
                  </tr>
                ),
              ];
            })}
          </tbody>
        </Table>
      )}
      <LoadMore next={log.next} busy={log.moreBusy} onMore={log.more} />
    </>
  );
}
