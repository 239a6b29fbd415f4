// How both stores resolve the argument of `find`, `revoke` and `delete`: an id, or a
// name held by exactly one live connector (else the latest revoked one, never a
// deleted one); `id:` and `name:` pick one kind; an argument that is one connector's
// id and another's name is refused. Also the refusals both stores make alike.
import { ProxyctlError } from '../errors.js';
import { toConnector, type ConnectorRow } from './rows.js';
import type { ConnectorRecord } from './types.js';

export interface ConnectorRef {
  kind: 'id' | 'name' | 'any';
  key: string;
}

export function parseConnectorRef(idOrName: string): ConnectorRef {
  const prefixed = /^(id|name):(.*)$/s.exec(idOrName);
  return { kind: (prefixed?.[1] as 'id' | 'name' | undefined) ?? 'any', key: prefixed?.[2] ?? idOrName };
}

/**
 * The connector `ref` names, from the row with its id (unless kind is name) and the rows
 * with its name (unless kind is id), live ones first, newest first.
 */
export function pickConnector(
  ref: ConnectorRef,
  byId: ConnectorRow | undefined,
  named: ConnectorRow[],
): ConnectorRecord {
  const { kind, key } = ref;
  if (byId) {
    const others = named.filter((r) => r.id !== byId.id);
    if (others.length > 0) {
      throw new ProxyctlError(
        'ERR_USAGE',
        `${key} is the id of connector ${byId.id} and the name of ${others.map((r) => r.id).join(', ')}; say id:${key} or name:${key}`,
        { status: 400 },
      );
    }
    return toConnector(byId);
  }
  const live = named.filter((r) => r.revoked_at === null);
  if (live.length === 1) return toConnector(live[0]!);
  if (live.length > 1) {
    throw new ProxyctlError(
      'ERR_USAGE',
      `${live.length} connectors are named ${key}; use the id (${live.map((r) => r.id).join(', ')})`,
      { status: 400 },
    );
  }
  if (named.length > 0) return toConnector(named[0]!);
  throw new ProxyctlError(
    'ERR_CONNECTOR_NOT_FOUND',
    `no connector with ${kind === 'any' ? 'id or name' : kind} ${key}`,
    {
      status: 404,
    },
  );
}

/** ConnectorRepo.delete of a connector still in service. */
export const notRevoked = (c: ConnectorRecord): ProxyctlError =>
  new ProxyctlError(
    'ERR_CONNECTOR_NOT_REVOKED',
    `connector ${c.id} (${c.name}) is not revoked; revoke it before deleting it`,
    { status: 409, details: { id: c.id, name: c.name } },
  );

/** ConnectorRepo.register with a registration key recorded already (its caller reads that one). */
export const registrationKeyUsed = (): ProxyctlError =>
  new ProxyctlError('ERR_CONFLICT', 'this registration key was used already', {
    status: 409,
    details: { reason: 'registration-key-used' },
  });
