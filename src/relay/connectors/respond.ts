// Connector API answers: JSON bodies, and errors through the one renderer
// (src/http/render.ts: stable code, request id, no internals, the security
// headers). Also the bounded JSON body reader for the connector API.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { refusalOf, renderError } from '../../http/render.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown, requestId: string, log: Logger): void {
  const e = refusalOf(err);
  if (e.status >= 500) log.error({ request_id: requestId, code: e.code, err: e.cause ?? e }, e.message);
  else log.warn({ request_id: requestId, code: e.code, status: e.status }, e.message);
  renderError(undefined, res, e, requestId, {
    json: true,
    ...(e.code === 'ERR_BODY_TOO_LARGE' ? { headers: { connection: 'close' } } : {}),
  });
}

/** Reads a JSON object body of at most `limit` bytes; refuses before buffering more. */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.resume();
    throw new ProxyctlError('ERR_BODY_TOO_LARGE', `request body is ${declared} bytes, the limit is ${limit}`, {
      status: 413,
    });
  }
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    req.resume();
    throw new ProxyctlError('ERR_BAD_REQUEST', 'expected a JSON body (content-type: application/json)', {
      status: 415,
    });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.resume();
      throw new ProxyctlError('ERR_BODY_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`, {
        status: 413,
      });
    }
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ProxyctlError('ERR_BAD_REQUEST', 'request body is not valid JSON', { status: 400 });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ProxyctlError('ERR_BAD_REQUEST', 'request body must be a JSON object', { status: 400 });
  }
  return parsed as Record<string, unknown>;
}

export function field(body: Record<string, unknown>, name: string, maxLength: number, fallback?: string): string {
  const value = body[name] === undefined ? fallback : body[name];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    throw new ProxyctlError(
      'ERR_BAD_REQUEST',
      `field "${name}" must be a non-empty string of at most ${maxLength} characters`,
      { status: 400 },
    );
  }
  return value;
}
