// The client address of a request as the relay decided it (the socket address,
// or the X-Forwarded-For entry vetted against trusted proxies). Limits, logs and
// Conditional Access all read it from here.
import type { IncomingMessage } from 'node:http';
import { normalizeAddress } from './limits.js';

const addresses = new WeakMap<IncomingMessage, string>();

export function setClientAddress(req: IncomingMessage, address: string): void {
  addresses.set(req, address);
}

export function clientAddress(req: IncomingMessage): string {
  return addresses.get(req) ?? normalizeAddress(req.socket?.remoteAddress ?? '');
}
