// The compat request and response of node:http2 stand in for node:http's on the public
// listener; these tell them apart and reach the HTTP/2 stream under them.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';

/** Whether a request came over HTTP/2 (a compat request of node:http2). */
export function isHttp2(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 2;
}

/** The HTTP/2 stream of a compat request or response, or undefined for HTTP/1.1. */
export function http2StreamOf(x: IncomingMessage | ServerResponse): Http2ServerRequest['stream'] | undefined {
  return (x as unknown as Partial<Http2ServerRequest>).stream;
}
