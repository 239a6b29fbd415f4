// Issuing a connector identity: validate the request, sign the CSR with the
// relay CA, record connector + certificate + audit in one transaction. Used by
// the token-authenticated API and by the relay owner in-process (demo).
//
// A request with an idempotency key is recorded under it. Its retry (the answer
// never reached the connector) gets the same certificate back, not a second
// connector, when it proves the same key pair (a CSR for the same public key,
// signed by it) and carries the same administrator token, which must still
// verify; anything else under a used key is refused.
import { X509Certificate, createHash, randomUUID } from 'node:crypto';
import type { RelayConfig } from '../../config/relay-config.js';
import { normalizeSerial, type RelayCa } from '../../crypto/ca.js';
import { verifyCsr } from '../../crypto/csr.js';
import { ProxyctlError, isProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { IDEMPOTENCY_KEY, type RegisterRequest, type RegisterResponse } from '../../protocol/connector-api.js';
import type { RegistrationKey, RegistrationRecord, Store } from '../../store/index.js';

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

/**
 * `credential` is what authenticated the request (the administrator token); only its
 * hash is kept, and only for a request with an idempotency key.
 */
export async function issueConnectorIdentity(
  deps: RegistrationDeps,
  req: RegisterRequest,
  actor: string,
  requestId?: string,
  credential: string = actor,
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
  const key = req.idempotencyKey;
  let attempt: Omit<RegistrationKey, 'certificate'> | undefined;
  if (key !== undefined) {
    if (!IDEMPOTENCY_KEY.test(key))
      throw new ProxyctlError('ERR_BAD_REQUEST', 'idempotencyKey must be 32 to 128 base64url characters', {
        status: 400,
      });
    attempt = { key, publicKey: sha256((await verifyCsr(req.csr)).publicKey.rawData), credential: sha256(credential) };
    const recorded = await deps.store.connectors.registration(key);
    if (recorded) return replay(deps, req, attempt, recorded, requestId);
  }
  const connectorId = randomUUID();
  const issued = await deps.ca.signConnectorCsr(req.csr, {
    connectorId,
    lifetimeMs: deps.config().connectors.certificateLifetimeMs,
  });
  const now = deps.now();
  try {
    await deps.store.connectors.register({
      id: connectorId,
      name: req.name,
      group: req.group,
      actor,
      serial: issued.serial,
      issuedAt: now,
      notAfter: issued.notAfter.getTime(),
      ...(attempt ? { registration: { ...attempt, certificate: issued.certPem } } : {}),
    });
  } catch (err) {
    // The same attempt twice at once (a retry while the first still ran): the first one's answer.
    const recorded =
      attempt && isProxyctlError(err, 'ERR_CONFLICT') && (await deps.store.connectors.registration(attempt.key));
    if (attempt && recorded) return replay(deps, req, attempt, recorded, requestId);
    throw err;
  }
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

const sha256 = (data: ArrayBuffer | string): string =>
  createHash('sha256')
    .update(typeof data === 'string' ? data : Buffer.from(data))
    .digest('hex');

/** The retry of a recorded registration: the same answer, or a refusal naming what differs. */
async function replay(
  deps: RegistrationDeps,
  req: RegisterRequest,
  attempt: Omit<RegistrationKey, 'certificate'>,
  recorded: RegistrationRecord,
  requestId: string | undefined,
): Promise<RegisterResponse> {
  const conflict = (reason: string, message: string) =>
    new ProxyctlError('ERR_CONFLICT', `${message}; a new registration needs a new key`, {
      status: 409,
      details: { reason },
    });
  // Revoked first: whoever asks, that registration is over and a new one may begin.
  const connector = await deps.store.connectors.get(recorded.connectorId);
  if (!connector || connector.revokedAt !== null)
    throw new ProxyctlError(
      'ERR_CERT_REVOKED',
      `connector ${recorded.connectorId}, registered with this key, is revoked`,
      {
        status: 403,
      },
    );
  if (recorded.publicKey !== attempt.publicKey)
    throw conflict(
      'registration-key-other-csr',
      'this registration key was used for a certificate request with another public key',
    );
  if (recorded.credential !== attempt.credential)
    throw conflict(
      'registration-key-other-token',
      'this registration key was used with another administrator token; its retry must carry the same token, while it is valid',
    );
  if (connector.name !== req.name || connector.group !== req.group)
    throw conflict(
      'registration-key-other-request',
      `this registration key was used to register connector ${connector.id} as ${connector.name} in group ${connector.group}`,
    );
  const cert = new X509Certificate(recorded.certificate);
  const serial = normalizeSerial(cert.serialNumber);
  // Renewed since: the connector had its answer, and that certificate is on its way out.
  if ((await deps.store.connectors.getCertificate(serial))?.revokedAt !== null)
    throw conflict('registration-key-superseded', `connector ${connector.id} has renewed its certificate since`);
  deps.log.info(
    { request_id: requestId, connector_id: connector.id, serial },
    'connector registration retried; the identity it issued is given again',
  );
  return {
    connectorId: connector.id,
    certificate: recorded.certificate,
    caCertificate: deps.ca.certPem,
    serial,
    notAfter: new Date(cert.validTo).toISOString(),
  };
}
