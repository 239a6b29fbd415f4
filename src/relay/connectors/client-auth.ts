// Connector identity on the connector API: the TLS layer checks the chain to the
// relay CA and validity dates; here we add the store's word (known, not revoked).
// Every mutual-TLS route and the control channel go through this one function.
import type { TLSSocket } from 'node:tls';
import { normalizeSerial } from '../../crypto/ca.js';
import { ProxyctlError } from '../../errors.js';
import type { CertificateRecord, ConnectorRecord, Store } from '../../store/index.js';

export interface ConnectorIdentity {
  connector: ConnectorRecord;
  certificate: CertificateRecord;
}

/**
 * Identities of keep-alive connections are remembered per socket and re-checked
 * whenever the store's connector/certificate state changed (revocation, renewal,
 * a change by the admin CLI) or the certificate expired or reached its revocation time.
 */
const verified = new WeakMap<TLSSocket, { id: ConnectorIdentity; generation: number; until: number }>();

export async function authenticateConnector(
  socket: TLSSocket,
  store: Store,
  now = Date.now(),
): Promise<ConnectorIdentity> {
  const hit = verified.get(socket);
  if (hit && hit.generation === store.generation && hit.until > now) return hit.id;
  const id = await checkConnector(socket, store, now);
  // A renewed certificate in use ends the grace of the ones it replaced (this bumps the generation).
  // Not awaited: the old certificates' grace ends anyway, and an unreachable store must not refuse the new one.
  if (id.certificate.revokedAt === null) store.connectors.retireSuperseded(id.connector.id, now).catch(() => undefined);
  verified.set(socket, {
    id,
    generation: store.generation,
    until: Math.min(id.certificate.notAfter, id.certificate.revokedAt ?? Infinity),
  });
  return id;
}

async function checkConnector(socket: TLSSocket, store: Store, now: number): Promise<ConnectorIdentity> {
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) {
    throw new ProxyctlError('ERR_CERT_REQUIRED', 'a connector client certificate is required for this call', {
      status: 401,
    });
  }
  if (!socket.authorized) {
    const reason = String(socket.authorizationError ?? 'unknown');
    const expired = reason === 'CERT_HAS_EXPIRED';
    throw new ProxyctlError(
      'ERR_CERT_UNTRUSTED',
      expired
        ? 'the client certificate has expired; register the connector again'
        : `the client certificate was not issued by this relay (${reason})`,
      { status: 401, details: { reason } },
    );
  }
  const serial = normalizeSerial(peer.serialNumber);
  const certificate = await store.connectors.getCertificate(serial);
  if (!certificate) {
    throw new ProxyctlError('ERR_CERT_UNKNOWN', `certificate ${serial} is not known to this relay`, { status: 401 });
  }
  const connector = await store.connectors.get(certificate.connectorId);
  // A revocation time still ahead is a renewal's grace period: the old certificate works until then.
  if (!connector || connector.revokedAt !== null) {
    throw new ProxyctlError('ERR_CERT_REVOKED', `connector ${certificate.connectorId} has been revoked`, {
      status: 403,
    });
  }
  // A revocation time still ahead is a renewal's grace period: the old certificate works until then.
  if (certificate.revokedAt !== null && certificate.revokedAt <= now) {
    throw new ProxyctlError(
      'ERR_CERT_REVOKED',
      `certificate ${serial} was replaced by a renewal and is no longer accepted`,
      { status: 403 },
    );
  }
  if (certificate.notAfter <= now) {
    throw new ProxyctlError('ERR_CERT_UNTRUSTED', 'the client certificate has expired; register the connector again', {
      status: 401,
    });
  }
  if (peer.subject?.CN !== connector.id) {
    throw new ProxyctlError('ERR_CERT_UNTRUSTED', 'client certificate subject does not match its record', {
      status: 401,
    });
  }
  return { connector, certificate };
}
