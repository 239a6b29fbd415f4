// A refusal as a gRPC client reads it: HTTP/2 200 with grpc-status and grpc-message in
// one HEADERS frame that ends the stream (gRPC's trailers-only answer). A gRPC client
// shown an HTTP error status only learns "Received HTTP status code 401"; this way it
// gets the code that fits (UNAUTHENTICATED, PERMISSION_DENIED…), the relay's message,
// the error code and the request id that is also in the relay log.
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { ProxyctlError } from '../errors.js';
import { http2StreamOf, isHttp2 } from './http2-compat.js';

/** gRPC status codes (grpc/doc/statuscodes.md) the relay answers with. */
export const GRPC_STATUS = {
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
  UNKNOWN: 2,
} as const;

/** gRPC's content types: application/grpc, +proto, +json… */
export function isGrpcContentType(value: string | undefined): boolean {
  return value !== undefined && /^application\/grpc/i.test(value);
}

/** A gRPC call: HTTP/2 with a gRPC content type. */
export function isGrpcRequest(req: IncomingMessage | undefined): boolean {
  return req !== undefined && isHttp2(req) && isGrpcContentType(req.headers['content-type']);
}

/**
 * The HTTP status of a refusal as a gRPC code: gRPC's own mapping of HTTP statuses
 * (grpc/doc/http-grpc-status-mapping.md), made specific where the relay knows more
 * (a timeout is DEADLINE_EXCEEDED, a body over the limit RESOURCE_EXHAUSTED).
 */
export function grpcStatusOf(status: number): number {
  switch (status) {
    case 401:
      return GRPC_STATUS.UNAUTHENTICATED;
    case 403:
      return GRPC_STATUS.PERMISSION_DENIED;
    case 404:
    case 405:
      return GRPC_STATUS.UNIMPLEMENTED;
    case 408:
    case 504:
      return GRPC_STATUS.DEADLINE_EXCEEDED;
    case 413:
    case 431:
      return GRPC_STATUS.RESOURCE_EXHAUSTED;
    case 429:
    case 502:
    case 503:
      return GRPC_STATUS.UNAVAILABLE;
    default:
      return status >= 500 ? GRPC_STATUS.INTERNAL : status >= 400 ? GRPC_STATUS.INTERNAL : GRPC_STATUS.UNKNOWN;
  }
}

/** grpc-message encoding (gRPC over HTTP/2): UTF-8, bytes outside 0x20-0x7E and "%" percent-encoded. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const b of Buffer.from(text, 'utf8'))
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

/**
 * Answers `res` with the refusal as a trailers-only gRPC response. false when `res` is not
 * an HTTP/2 response (the caller renders the usual page). The response keeps the HTTP
 * status in statusCode for the request log and metrics; on the wire it is 200.
 */
export function renderGrpcRefusal(
  res: ServerResponse,
  e: ProxyctlError,
  message: string,
  requestId: string,
  extra: Record<string, string>,
): boolean {
  const stream = http2StreamOf(res);
  if (!stream || stream.headersSent || stream.destroyed) return false;
  const headers: OutgoingHttpHeaders = {
    ':status': 200,
    'content-type': 'application/grpc',
    'grpc-status': String(grpcStatusOf(e.status)),
    'grpc-message': grpcMessage(`${message} (${e.code}, request id ${requestId})`),
    'x-request-id': requestId,
    ...extra,
  };
  res.statusCode = e.status;
  stream.respond(headers, { endStream: true });
  return true;
}
