// The public listener's refusals, by the names the request path and the queue
// use; the rendering itself (HTML or JSON, security headers, raw-socket answers)
// is src/http/render.ts, shared with the connector API and the embedded provider.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { renderError, renderRaw } from '../../http/render.js';

export { refusalOf, wantsJson } from '../../http/render.js';

export function sendRefusal(
  req: IncomingMessage,
  res: ServerResponse,
  err: unknown,
  requestId: string,
  extraHeaders: Record<string, string> = {},
): void {
  renderError(req, res, err, requestId, { headers: extraHeaders });
}

/** The same refusal on a socket that asked to upgrade (no ServerResponse exists). */
export function sendRefusalOnSocket(req: IncomingMessage, socket: Duplex, err: unknown, requestId: string): void {
  renderRaw(socket, err, requestId, { req });
}
