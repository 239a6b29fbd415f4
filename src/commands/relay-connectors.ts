// `proxyctl relay connectors list|revoke`: administration against the relay's
// data directory. A running relay notices a revocation within half a second
// (it watches the store) and closes that connector's channels.
import { withStore } from './open-store.js';
import { loadConfigFromOptions, type ServeOptions } from './relay-serve.js';
import { userInfo } from 'node:os';
import { printTable } from './table.js';

export interface ListOptions extends ServeOptions {
  json?: boolean;
}

export async function listConnectors(opts: ListOptions, out: (line: string) => void): Promise<void> {
  const config = loadConfigFromOptions(opts);
  await withStore(config, async (store) => {
    const now = Date.now();
    const onlineWindow = config.connectors.heartbeatIntervalMs * 3;
    const rows = (await store.connectors.list()).map((c) => ({
      id: c.id,
      name: c.name,
      group: c.group,
      status:
        c.revokedAt !== null
          ? 'revoked'
          : c.lastSeen !== null && now - c.lastSeen <= onlineWindow
            ? 'online'
            : 'offline',
      version: c.version,
      lastSeen: c.lastSeen === null ? null : new Date(c.lastSeen).toISOString(),
      certificateExpires: c.certificateExpires === null ? null : new Date(c.certificateExpires).toISOString(),
      certificates: c.certificates,
      registeredBy: c.createdBy,
    }));
    if (opts.json) {
      out(JSON.stringify(rows, null, 2));
      return;
    }
    const header = ['ID', 'NAME', 'GROUP', 'STATUS', 'VERSION', 'LAST SEEN', 'CERT EXPIRES'];
    const table = rows.map((r) => [
      r.id,
      r.name,
      r.group,
      r.status,
      r.version ?? '-',
      r.lastSeen ?? '-',
      r.certificateExpires ?? '-',
    ]);
    printTable(header, table, out);
  });
}

export async function revokeConnector(
  idOrName: string,
  opts: ServeOptions,
  out: (line: string) => void,
): Promise<void> {
  const config = loadConfigFromOptions(opts);
  await withStore(config, async (store) => {
    const c = await store.connectors.revoke(idOrName, `cli:${safeUser()}`);
    out(`revoked connector ${c.id} (${c.name}); its certificates are refused from now on`);
  });
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
