// `proxyctl connector list|show|revoke|delete` (and `relay connectors list|revoke`,
// the older names): registered connectors through the administration API. A running
// relay closes a revoked connector's channels at once; a deleted one leaves the
// listings while its certificates stay refused.
import type { ConnectorDetail, ConnectorView } from '../admin/api-types.js';
import { withAdmin } from './admin-client.js';
import { printJson, type ObjectOptions } from './objects.js';
import { printTable, safeCell } from './table.js';

type Out = (line: string) => void;

export type ConnectorOptions = Omit<ObjectOptions, 'expectedVersion'>;

const dash = (v: string | number | null | undefined) => (v === null || v === undefined || v === '' ? '-' : String(v));

export async function listConnectors(opts: ConnectorOptions, out: Out): Promise<void> {
  const rows = await withAdmin(opts, (api) => api.listConnectors());
  if (opts.json) return printJson(rows, out);
  printTable(
    ['ID', 'NAME', 'GROUP', 'STATUS', 'VERSION', 'LAST SEEN', 'CERT EXPIRES'],
    rows.map((r) => [r.id, r.name, r.group, r.status, dash(r.version), dash(r.lastSeen), dash(r.certificateExpires)]),
    out,
  );
}

export async function showConnector(idOrName: string, opts: ConnectorOptions, out: Out): Promise<void> {
  const c: ConnectorDetail = await withAdmin(opts, (api) => api.getConnector(idOrName));
  if (opts.json) return printJson(c, out);
  const line = (label: string, value: string | number | null) =>
    out(`${`${label}:`.padEnd(15)}${safeCell(dash(value), 400)}`);
  line('id', c.id);
  line('name', c.name);
  line('group', c.group);
  line('status', c.status);
  line('version', c.version);
  line('registered', `${c.createdAt} by ${c.registeredBy}`);
  line('last seen', c.lastSeen);
  line('revoked', c.revokedAt);
  line('cert expires', c.certificateExpires);
  const indent = (l: string) => out(`  ${l}`);
  if (c.channels === null) out('channels:      - (read from the data directory; a running relay shows them)');
  else if (c.channels.length === 0) out('channels:      none open on the answering relay');
  else {
    out('channels:');
    printTable(
      ['REPLICA', 'OPENED', 'VERSION', 'IN FLIGHT'],
      c.channels.map((ch) => [ch.replica, ch.openedAt, dash(ch.version), String(ch.inFlight)]),
      indent,
    );
  }
  out('certificates:');
  printTable(
    ['SERIAL', 'KIND', 'ISSUED', 'NOT AFTER', 'REVOKED'],
    c.certificateList.map((k) => [k.serial, k.kind, k.issuedAt, k.notAfter, dash(k.revokedAt)]),
    indent,
  );
}

export async function revokeConnector(idOrName: string, opts: ConnectorOptions, out: Out): Promise<void> {
  const c: ConnectorView = await withAdmin(opts, (api) => api.revokeConnector(idOrName));
  if (opts.json) return printJson(c, out);
  out(`revoked connector ${c.id} (${safeCell(c.name)}); its certificates are refused from now on`);
}

export async function deleteConnector(idOrName: string, opts: ConnectorOptions, out: Out): Promise<void> {
  await withAdmin(opts, (api) => api.deleteConnector(idOrName));
  out(`deleted connector ${safeCell(idOrName)} from the listings; its certificates stay refused`);
}
