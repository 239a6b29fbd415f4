// `proxyctl group list|show|create|remove`: connector groups. A group is declared
// through the API, or derived from the apps and connectors that name it; only an
// unused declared group can be removed.
import type { GroupView } from '../admin/api-types.js';
import { withAdmin } from './admin-client.js';
import { printJson, type ObjectOptions } from './objects.js';
import { printTable, safeCell } from './table.js';

type Out = (line: string) => void;

export type GroupOptions = Omit<ObjectOptions, 'expectedVersion'>;

const connectors = (g: GroupView) =>
  `${g.connectors.online}/${g.connectors.total} online${g.connectors.revoked ? `, ${g.connectors.revoked} revoked` : ''}`;

export async function listGroups(opts: GroupOptions, out: Out): Promise<void> {
  const groups = await withAdmin(opts, (api) => api.listGroups());
  if (opts.json) return printJson(groups, out);
  printTable(
    ['NAME', 'SOURCE', 'CONNECTORS', 'APPS', 'DESCRIPTION'],
    groups.map((g) => [g.name, g.source, connectors(g), g.apps.join(',') || '-', g.description ?? '-']),
    out,
  );
}

export async function showGroup(name: string, opts: GroupOptions, out: Out): Promise<void> {
  const g = await withAdmin(opts, (api) => api.getGroup(name));
  if (opts.json) return printJson(g, out);
  const line = (label: string, value: string) => out(`${`${label}:`.padEnd(13)}${safeCell(value || '-', 400)}`);
  line('name', g.name);
  line(
    'source',
    g.source === 'api' ? `declared through the API (version ${g.version ?? '-'})` : 'derived from apps and connectors',
  );
  line('description', g.description ?? '');
  line('connectors', connectors(g));
  line('apps', g.apps.join(', '));
}

export async function createGroup(
  name: string,
  opts: GroupOptions & { description?: string },
  out: Out,
): Promise<void> {
  const input = { name, ...(opts.description !== undefined ? { description: opts.description } : {}) };
  const g = await withAdmin(opts, (api) => api.createGroup(input));
  if (opts.json) return printJson(g, out);
  out(`created group ${safeCell(g.name)}`);
}

export async function removeGroup(name: string, opts: GroupOptions, out: Out): Promise<void> {
  await withAdmin(opts, (api) => api.removeGroup(name));
  out(`removed group ${safeCell(name)}`);
}
