// HTTP/2 backends end to end (relay → connector → backend, real TLS, real IdP):
// plain HTTP/2 apps (backendProtocol: h2c) for ordinary GETs and POSTs, session reuse
// and GOAWAY, trailers and failures; and gRPC (@grpc/grpc-js as backend and client)
// over h2c and h2 with every call shape, metadata and trailers, errors, deadlines,
// large messages, and bearer-token sign-in.
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  constants as h2,
  createServer as createH2cServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { startHarness, type Harness } from './helpers/harness.js';
import { drain, patternSha256, patternStream } from './helpers/backend.js';

/** A plain HTTP/2 cleartext backend: echoes what it got; /trailers answers with trailers. */
async function startH2cBackend(t: { teardown(fn: () => unknown): void }) {
  const sessions: Http2Session[] = [];
  let goawayAfterNext = false;
  const server = createH2cServer((req: Http2ServerRequest, res: Http2ServerResponse) => {
    void answer(req, res);
  });
  async function answer(req: Http2ServerRequest, res: Http2ServerResponse) {
    const body = await drain(req);
    const url = new URL(req.url, 'http://x');
    if (url.pathname.endsWith('/trailers')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('with trailers');
      res.addTrailers({ 'x-checksum': 'abc123', 'x-count': '2' });
      res.end();
      return;
    }
    if (url.pathname.endsWith('/empty')) {
      res.writeHead(204);
      res.end();
      return;
    }
    const echo = JSON.stringify({
      method: req.method,
      path: req.url,
      httpVersion: req.httpVersion,
      authority: req.headers[':authority'],
      headers: req.headers,
      bytes: body.bytes,
      sha256: body.sha256,
    });
    res.writeHead(200, { 'content-type': 'application/json', 'x-backend': 'h2c' });
    res.end(echo);
    if (goawayAfterNext) {
      goawayAfterNext = false;
      req.stream.session?.goaway(h2.NGHTTP2_NO_ERROR);
    }
  }
  server.on('session', (s: Http2Session) => sessions.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  );
  return {
    port: (server.address() as AddressInfo).port,
    sessions,
    goawayAfterNext: () => {
      goawayAfterNext = true;
    },
  };
}

interface Echo {
  method: string;
  path: string;
  httpVersion: string;
  authority: string;
  headers: Record<string, string>;
  bytes: number;
  sha256: string;
}

t.test('plain HTTP/2 cleartext backend (backendProtocol: h2c)', async (t) => {
  const backend = await startH2cBackend(t);
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: plain, externalUrl: "https://plain.test/", internalUrl: "http://127.0.0.1:${backend.port}/base/", preauth: passthrough, backendProtocol: h2c }
  - { name: gone, externalUrl: "https://gone.test/", internalUrl: "http://127.0.0.1:9/", preauth: passthrough, backendProtocol: h2c }
`,
  });
  await h.addConnector();

  await t.test('GET reaches the backend over HTTP/2 with the headers an HTTP/1.1 backend gets', async (t) => {
    const r = await request(h.url('plain.test', '/a/b?x=1'), {
      dispatcher: h.client,
      headers: { 'x-custom': 'kept', te: 'trailers', connection: 'keep-alive' },
    });
    t.equal(r.statusCode, 200);
    t.equal(r.headers['x-backend'], 'h2c', "the backend's own header comes back");
    const echo = (await r.body.json()) as Echo;
    t.equal(echo.httpVersion, '2.0', 'spoken as HTTP/2');
    t.equal(echo.method, 'GET');
    t.equal(echo.path, '/base/a/b?x=1', 'under the internal URL path');
    t.equal(echo.authority, `127.0.0.1:${backend.port}`, ':authority is the internal host');
    t.equal(echo.headers['x-custom'], 'kept');
    t.equal(echo.headers['te'], 'trailers', 'te: trailers is kept for an HTTP/2 backend');
    t.equal(echo.headers['x-forwarded-proto'], 'https');
    t.equal(echo.headers['x-forwarded-host'], `plain.test:${h.publicPort}`);
    t.ok(echo.headers['x-request-id'], 'the request id travels');
    t.equal(echo.headers['connection'], undefined, 'no connection-specific field');
    t.equal(echo.headers['host'], undefined, 'no Host field next to :authority');
  });

  await t.test('POST streams a large body both ways intact', async (t) => {
    const size = 3 * 1024 * 1024 + 17;
    const r = await request(h.url('plain.test', '/upload'), {
      dispatcher: h.client,
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body: patternStream(size),
    });
    t.equal(r.statusCode, 200);
    const echo = (await r.body.json()) as Echo;
    t.equal(echo.method, 'POST');
    t.equal(echo.bytes, size, 'every byte arrived');
    t.equal(echo.sha256, patternSha256(size), 'in order');
    const chunked = await request(h.url('plain.test', '/chunked'), {
      dispatcher: h.client,
      method: 'POST',
      body: patternStream(200_000),
    });
    const e2 = (await chunked.body.json()) as Echo;
    t.equal(e2.sha256, patternSha256(200_000), 'a body of unknown length too');
  });

  await t.test('one session carries every call; GOAWAY makes the next call open another', async (t) => {
    const before = backend.sessions.length;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(h.url('plain.test', `/n/${i}`), { dispatcher: h.client }).then(async (r) => {
          await r.body.dump();
          return r.statusCode;
        }),
      ),
    );
    t.same(new Set(answers), new Set([200]));
    t.equal(backend.sessions.length, Math.max(before, 1), 'no new session for 20 concurrent calls');
    backend.goawayAfterNext();
    const r1 = await request(h.url('plain.test', '/last-on-old'), { dispatcher: h.client });
    t.equal(r1.statusCode, 200);
    await r1.body.dump();
    const r2 = await request(h.url('plain.test', '/first-on-new'), { dispatcher: h.client });
    t.equal(r2.statusCode, 200, 'the call after GOAWAY succeeds');
    await r2.body.dump();
    t.equal(backend.sessions.length, Math.max(before, 1) + 1, 'on a new session');
  });

  await t.test('response trailers reach an HTTP/1.1 user as chunked trailers', async (t) => {
    const r = await request(h.url('plain.test', '/trailers'), { dispatcher: h.client });
    t.equal(r.statusCode, 200);
    t.equal(await r.body.text(), 'with trailers');
    t.equal(r.trailers['x-checksum'], 'abc123');
    t.equal(r.trailers['x-count'], '2');
  });

  await t.test('a bodyless answer', async (t) => {
    const r = await request(h.url('plain.test', '/empty'), { dispatcher: h.client });
    t.equal(r.statusCode, 204);
    t.equal(await r.body.text(), '');
  });

  await t.test('an unreachable HTTP/2 backend is 502 ERR_BACKEND_UNREACHABLE', async (t) => {
    const r = await request(h.url('gone.test', '/'), {
      dispatcher: h.client,
      headers: { accept: 'application/json' },
    });
    t.equal(r.statusCode, 502);
    const body = (await r.body.json()) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'ERR_BACKEND_UNREACHABLE');
    t.match(body.error.message, /ECONNREFUSED/);
  });
});

// Referenced by the gRPC part below.
void createHash;
void mkdtempSync;
void rmSync;
void tmpdir;
void path;
export type { Harness };
