// The relay's side of the protocol-version handshake: a connector that names a
// version this relay does not speak is refused with 426 and a message saying which
// side to upgrade; a malformed header is a bad request. No header = version 1.
import type { IncomingMessage } from 'node:http';
import { ProxyctlError } from '../../errors.js';
import {
  PROTOCOL_HEADER,
  PROTOCOL_SUPPORTED,
  parsePeerProtocol,
  supportedProtocols,
} from '../../protocol/connector-api.js';
import { VERSION } from '../../version.js';

/** Throws unless the connector's protocol version is one this relay speaks. */
export function checkPeerProtocol(req: IncomingMessage): void {
  const peer = parsePeerProtocol(req.headers[PROTOCOL_HEADER]);
  if (!peer.ok) {
    throw new ProxyctlError('ERR_BAD_REQUEST', `invalid protocol version: ${peer.error}`, { status: 400 });
  }
  if (peer.supported) return;
  const upgrade = peer.version > PROTOCOL_SUPPORTED.max ? 'upgrade the relay' : 'upgrade the connector';
  throw new ProxyctlError(
    'ERR_PROTOCOL_VERSION',
    `this connector speaks protocol version ${peer.version}; this relay (proxyctl ${VERSION}) speaks ${supportedProtocols()}: ${upgrade}`,
    {
      status: 426,
      details: { connectorProtocol: peer.version, relayProtocol: PROTOCOL_SUPPORTED },
    },
  );
}
