// The client address of a request as the relay decided it (the socket address,
// or the X-Forwarded-For entry vetted against trusted proxies). Limits, logs and
// Conditional Access all read it from here.
import type { IncomingMessage } from 'node:http';
import { canonicalAddress } from '../../net/address.js';

const addresses = new WeakMap<IncomingMessage, { client: string; trustedChain: string | undefined }>();

/** trustedChain: the X-Forwarded-For value vetted against trusted proxies (undefined: peer not trusted). */
export function setClientAddress(req: IncomingMessage, client: string, trustedChain: string | undefined): void {
  addresses.set(req, { client, trustedChain });
}

export function clientAddress(req: IncomingMessage): string {
  return addresses.get(req)?.client ?? canonicalAddress(req.socket?.remoteAddress ?? '');
}

export function trustedForwardedFor(req: IncomingMessage): string | undefined {
  return addresses.get(req)?.trustedChain;
}
