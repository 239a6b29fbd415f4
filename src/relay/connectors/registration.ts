// Issuing a connector identity: validate the request, sign the CSR with the
// relay CA, record connector + certificate + audit in one transaction. Used by
// the token-authenticated API and by the relay owner in-process (demo).
import { randomUUID } from 'node:crypto';
import type { RelayConfig } from '../../config/relay-config.js';
import type { RelayCa } from '../../crypto/ca.js';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { RegisterRequest, RegisterResponse } from '../../protocol/connector-api.js';
import type { Store } from '../../store/index.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Connector ids are UUIDs: a name shaped like one could pass for another connector in `revoke`. */
const ID_SHAPED = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const GROUP = /^[a-z0-9][a-z0-9-]{0,62}$/;

export interface RegistrationDeps {
  ca: RelayCa;
  store: Store;
  config: () => RelayConfig;
  log: Logger;
  now: () => number;
}

export async function issueConnectorIdentity(
  deps: RegistrationDeps,
  req: RegisterRequest,
  actor: string,
  requestId?: string,
): Promise<RegisterResponse> {
  if (!NAME.test(req.name))
    throw new ProxyctlError('ERR_BAD_REQUEST', 'connector name must be letters, digits, ".", "_" or "-" (at most 64)', {
      status: 400,
    });
  if (ID_SHAPED.test(req.name))
    throw new ProxyctlError('ERR_BAD_REQUEST', 'connector name must not look like a connector id (a UUID)', {
      status: 400,
    });
  if (!GROUP.test(req.group))
    throw new ProxyctlError('ERR_BAD_REQUEST', 'connector group must be lower-case letters, digits and dashes', {
      status: 400,
    });
  const connectorId = randomUUID();
  const issued = await deps.ca.signConnectorCsr(req.csr, {
    connectorId,
    lifetimeMs: deps.config().connectors.certificateLifetimeMs,
  });
  const now = deps.now();
  await deps.store.connectors.register({
    id: connectorId,
    name: req.name,
    group: req.group,
    actor,
    serial: issued.serial,
    issuedAt: now,
    notAfter: issued.notAfter.getTime(),
  });
  await deps.store.connectors.touch(connectorId, req.version.slice(0, 64), now);
  deps.log.info(
    { request_id: requestId, connector_id: connectorId, group: req.group, actor, serial: issued.serial },
    'connector registered',
  );
  return {
    connectorId,
    certificate: issued.certPem,
    caCertificate: deps.ca.certPem,
    serial: issued.serial,
    notAfter: issued.notAfter.toISOString(),
  };
}
