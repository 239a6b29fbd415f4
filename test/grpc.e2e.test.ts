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
import * as grpc from '@grpc/grpc-js';
import { startHarness, type Harness } from './helpers/harness.js';
import { drain, patternSha256, patternStream } from './helpers/backend.js';
import { closeSession, h2Session } from './helpers/h2-client.js';
import { waitFor } from './helpers/wait.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';

/** A plain HTTP/2 cleartext backend: echoes what it got; /trailers answers with trailers. */
async function startH2cBackend(t: { teardown(fn: () => unknown): void }) {
  const sessions: Http2Session[] = [];
  let goawayAfterNext = false;
  const refused = new Set<string>();
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
    if (url.pathname.endsWith('/big-trailers')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('trailers follow');
      const many: Record<string, string> = {};
      for (let i = 0; i < 150; i++) many[`x-t${i}`] = 'v';
      res.addTrailers(many);
      res.end();
      return;
    }
    if (url.pathname.endsWith('/hang')) return; // never answers
    if (url.pathname.endsWith('/refuse-once') && !refused.has(url.pathname)) {
      refused.add(url.pathname);
      req.stream.close(h2.NGHTTP2_REFUSED_STREAM);
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
  - { name: slow, externalUrl: "https://slow.test/", internalUrl: "http://127.0.0.1:${backend.port}/", preauth: passthrough, backendProtocol: h2c, backendTimeout: 400ms }
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

  await t.test('a request the backend refused unprocessed (REFUSED_STREAM) is sent again once', async (t) => {
    const r = await request(h.url('plain.test', '/a/refuse-once'), { dispatcher: h.client });
    t.equal(r.statusCode, 200, 'answered by the second attempt');
    t.equal(((await r.body.json()) as Echo).path, '/base/a/refuse-once');
    const withBody = await request(h.url('plain.test', '/b/refuse-once'), {
      dispatcher: h.client,
      method: 'POST',
      body: 'x',
      headers: { accept: 'application/json' },
    });
    t.equal(withBody.statusCode, 502, 'not with a body: it was read already');
    t.equal(((await withBody.body.json()) as { error: { code: string } }).error.code, 'ERR_BACKEND_FAILED');
  });

  await t.test('response trailers reach an HTTP/1.1 user as chunked trailers', async (t) => {
    const r = await request(h.url('plain.test', '/trailers'), { dispatcher: h.client });
    t.equal(r.statusCode, 200);
    t.equal(await r.body.text(), 'with trailers');
    t.equal(r.trailers['x-checksum'], 'abc123');
    t.equal(r.trailers['x-count'], '2');
  });

  await t.test('trailers over the header limits cut the response instead of ending it', async (t) => {
    const r = await request(h.url('plain.test', '/big-trailers'), { dispatcher: h.client });
    t.equal(r.statusCode, 200, 'the answer had started');
    const read = await drain(r.body);
    t.ok(read.error, `the user sees a broken response, not a clean end (${read.error?.message})`);
  });

  await t.test('a backend that stays silent for backendTimeout is 504 ERR_BACKEND_TIMEOUT', async (t) => {
    const started = Date.now();
    const r = await request(h.url('slow.test', '/hang'), {
      dispatcher: h.client,
      headers: { accept: 'application/json' },
    });
    t.equal(r.statusCode, 504);
    const body = (await r.body.json()) as { error: { code: string } };
    t.equal(body.error.code, 'ERR_BACKEND_TIMEOUT');
    t.ok(Date.now() - started < 4000, "after about 400 ms, not the relay's own guard");
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

// ---- gRPC ------------------------------------------------------------------------------

/** Messages are raw bytes: no protobuf, the service is defined by paths and identity (de)serializers. */
const raw = (b: Buffer): Buffer => b;
const method = (name: string, requestStream: boolean, responseStream: boolean) => ({
  path: `/test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
  originalName: name,
});
const ECHO = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
} satisfies grpc.ServiceDefinition;

const MAX_MESSAGE = 64 * 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** What the backend saw of its calls, for the tests to check. */
interface Seen {
  metadata: grpc.Metadata[];
  cancelled: string[];
  deadlines: number[];
}

/**
 * The echo service. Unary: "fail:<text>" answers NOT_FOUND with that text (no message, so
 * grpc-js sends a trailers-only answer), "slow:<ms>" waits (or until cancelled), anything
 * else comes back with initial metadata and trailing metadata (text and binary).
 */
function echoService(seen: Seen): grpc.UntypedServiceImplementation {
  const trailing = () => {
    const md = new grpc.Metadata();
    md.set('x-trailer', 'bye');
    md.set('x-trailer-bin', Buffer.from([0, 1, 2, 255]));
    return md;
  };
  const initial = () => {
    const md = new grpc.Metadata();
    md.set('x-initial', 'hello');
    return md;
  };
  return {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      seen.metadata.push(call.metadata);
      const deadline = call.getDeadline();
      seen.deadlines.push(deadline instanceof Date ? deadline.getTime() : Number(deadline));
      const text = call.request.subarray(0, 64).toString('latin1');
      if (text.startsWith('fail:')) {
        callback({ code: grpc.status.NOT_FOUND, details: text.slice(5) });
        return;
      }
      if (text.startsWith('slow:')) {
        const timer = setTimeout(() => callback(null, Buffer.from('late')), Number(text.slice(5)));
        call.on('cancelled', () => {
          clearTimeout(timer);
          seen.cancelled.push('unary');
        });
        return;
      }
      call.sendMetadata(initial());
      callback(null, call.request, trailing());
    },
    serverStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      seen.metadata.push(call.metadata);
      const n = Number(call.request.toString());
      call.on('cancelled', () => seen.cancelled.push('serverStream'));
      if (n < 0) {
        // Endless, one message every 20 ms, until the client cancels.
        let i = 0;
        const timer = setInterval(() => call.write(Buffer.from(`tick-${i++}`)), 20);
        call.on('cancelled', () => clearInterval(timer));
        return;
      }
      call.sendMetadata(initial());
      for (let i = 0; i < n; i++) call.write(Buffer.from(`msg-${i}`));
      call.end(trailing());
    },
    clientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      seen.metadata.push(call.metadata);
      const hash = createHash('sha256');
      let count = 0;
      let bytes = 0;
      call.on('data', (m: Buffer) => {
        hash.update(m);
        count++;
        bytes += m.length;
      });
      call.on('end', () =>
        callback(null, Buffer.from(JSON.stringify({ count, bytes, sha256: hash.digest('hex') })), trailing()),
      );
    },
    bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      seen.metadata.push(call.metadata);
      call.on('data', (m: Buffer) => call.write(Buffer.concat([Buffer.from('echo:'), m])));
      call.on('end', () => call.end(trailing()));
    },
  };
}

async function startGrpcBackend(
  t: { teardown(fn: () => unknown): void },
  tls?: { certPem: string; keyPem: string },
): Promise<{ port: number; seen: Seen }> {
  const seen: Seen = { metadata: [], cancelled: [], deadlines: [] };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE,
    'grpc.max_send_message_length': MAX_MESSAGE,
  });
  server.addService(ECHO, echoService(seen));
  const creds = tls
    ? grpc.ServerCredentials.createSsl(null, [
        { private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) },
      ])
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.teardown(() => server.forceShutdown());
  return { port, seen };
}

/** A gRPC client of the relay's public listener for one app host (TLS, relay CA, HTTP/2). */
function grpcClient(t: { teardown(fn: () => unknown): void }, h: Harness, host: string): grpc.Client {
  const client = new grpc.Client(
    `127.0.0.1:${h.publicPort}`,
    grpc.credentials.createSsl(Buffer.from(h.relay.ca.certPem)),
    {
      'grpc.ssl_target_name_override': host,
      'grpc.default_authority': `${host}:${h.publicPort}`,
      'grpc.max_receive_message_length': MAX_MESSAGE,
      'grpc.max_send_message_length': MAX_MESSAGE,
    },
  );
  t.teardown(() => client.close());
  return client;
}

interface UnaryResult {
  err: grpc.ServiceError | null;
  value: Buffer | undefined;
  initial: grpc.Metadata | undefined;
  status: grpc.StatusObject | undefined;
}

function unary(
  client: grpc.Client,
  message: Buffer,
  opts: { metadata?: grpc.Metadata; deadline?: number } = {},
): Promise<UnaryResult> {
  return new Promise((resolve) => {
    let initial: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    let result: { err: grpc.ServiceError | null; value: Buffer | undefined } | undefined;
    const done = () => {
      if (result && status) resolve({ ...result, initial, status });
    };
    const call = client.makeUnaryRequest(
      ECHO.unary.path,
      raw,
      raw,
      message,
      opts.metadata ?? new grpc.Metadata(),
      opts.deadline ? { deadline: opts.deadline } : {},
      (err, value) => {
        result = { err, value };
        done();
      },
    );
    call.on('metadata', (md) => (initial = md));
    call.on('status', (s) => {
      status = s;
      done();
    });
  });
}

/** Resolves with the call's final status. */
function statusOf(call: { on(event: 'status', fn: (s: grpc.StatusObject) => void): unknown }) {
  return new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
}

/** Messages of a readable call as an async queue: next() waits for the next one. */
function reader(call: { on(event: 'data', fn: (m: Buffer) => void): unknown }) {
  const queue: Buffer[] = [];
  const waiting: ((m: Buffer) => void)[] = [];
  call.on('data', (m: Buffer) => {
    const w = waiting.shift();
    if (w) w(m);
    else queue.push(m);
  });
  return {
    next: () =>
      new Promise<Buffer>((resolve) => {
        const m = queue.shift();
        if (m) resolve(m);
        else waiting.push(resolve);
      }),
    all: queue,
  };
}

t.test('gRPC through relay and connector', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-grpc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The backend's own CA: the connector trusts it; another connector does not.
  const backendCa = await loadOrCreateCa(dir);
  const backendCert = await backendCa.issueServerCertificate(['127.0.0.1'], 3_600_000);
  const plain = await startGrpcBackend(t);
  const secure = await startGrpcBackend(t, backendCert);
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: grpcc, externalUrl: "https://grpcc.test/", internalUrl: "http://127.0.0.1:${plain.port}/", preauth: passthrough, backendProtocol: h2c }
  - { name: grpcs, externalUrl: "https://grpcs.test/", internalUrl: "https://127.0.0.1:${secure.port}/", preauth: passthrough, backendProtocol: h2 }
  - { name: grpca, externalUrl: "https://grpca.test/", internalUrl: "http://127.0.0.1:${plain.port}/", backendProtocol: h2c, clientId: "urn:proxyctl:grpc", clientSecret: grpc-secret, assignment: any, identityHeaders: true }
  - { name: grpcu, externalUrl: "https://grpcu.test/", internalUrl: "https://127.0.0.1:${secure.port}/", preauth: passthrough, backendProtocol: h2, connectorGroup: untrusting }
`,
  });
  await h.addConnector({ backendCa: backendCa.certPem });
  await h.addConnector({ group: 'untrusting' });

  for (const [host, protocol, seen] of [
    ['grpcc.test', 'h2c', plain.seen],
    ['grpcs.test', 'h2', secure.seen],
  ] as const) {
    await t.test(`${protocol}: every call shape`, async (t) => {
      const client = grpcClient(t, h, host);

      await t.test('unary, with initial and trailing metadata intact', async (t) => {
        const md = new grpc.Metadata();
        md.set('x-client', 'c1');
        md.set('x-client-bin', Buffer.from([9, 8, 7]));
        const r = await unary(client, Buffer.from('ping'), { metadata: md });
        t.equal(r.err, null);
        t.equal(r.value?.toString(), 'ping');
        t.same(r.initial?.get('x-initial'), ['hello'], 'initial metadata');
        t.equal(r.status?.code, grpc.status.OK);
        t.same(r.status?.metadata.get('x-trailer'), ['bye'], 'trailing metadata');
        t.same(r.status?.metadata.get('x-trailer-bin'), [Buffer.from([0, 1, 2, 255])], 'binary trailing metadata');
        const got = seen.metadata.at(-1)!;
        t.same(got.get('x-client'), ['c1'], 'request metadata reaches the backend');
        t.same(got.get('x-client-bin'), [Buffer.from([9, 8, 7])], 'binary request metadata too');
        t.same(got.get('x-request-id').length, 1, 'the relay names the request');
      });

      await t.test('server streaming', async (t) => {
        const call = client.makeServerStreamRequest(ECHO.serverStream.path, raw, raw, Buffer.from('50'));
        const r = reader(call);
        const status = await statusOf(call);
        t.equal(status.code, grpc.status.OK);
        t.same(
          r.all.map((m) => m.toString()),
          Array.from({ length: 50 }, (_, i) => `msg-${i}`),
          'all 50 messages, in order',
        );
        t.same(status.metadata.get('x-trailer'), ['bye']);
      });

      await t.test('client streaming', async (t) => {
        const hash = createHash('sha256');
        let bytes = 0;
        const result = new Promise<{ err: grpc.ServiceError | null; value: Buffer | undefined }>((resolve) => {
          const call = client.makeClientStreamRequest(ECHO.clientStream.path, raw, raw, (err, value) =>
            resolve({ err, value }),
          );
          for (let i = 0; i < 40; i++) {
            const m = Buffer.alloc(10_000 + i, i);
            hash.update(m);
            bytes += m.length;
            call.write(m);
          }
          call.end();
        });
        const { err, value } = await result;
        t.equal(err, null);
        t.same(JSON.parse(value!.toString()), { count: 40, bytes, sha256: hash.digest('hex') });
      });

      await t.test('bidirectional streaming, interleaved: each reply before the next send', async (t) => {
        const call = client.makeBidiStreamRequest(ECHO.bidi.path, raw, raw);
        const status = statusOf(call);
        const r = reader(call);
        for (const word of ['one', 'two', 'three']) {
          call.write(Buffer.from(word));
          t.equal((await r.next()).toString(), `echo:${word}`, `reply to ${word} while the request is open`);
        }
        call.end();
        const s = await status;
        t.equal(s.code, grpc.status.OK);
        t.same(s.metadata.get('x-trailer'), ['bye']);
      });

      await t.test('an error status with its message (trailers-only answer)', async (t) => {
        const r = await unary(client, Buffer.from('fail:no such widget (42%)'));
        t.equal(r.err?.code, grpc.status.NOT_FOUND);
        t.equal(r.err?.details, 'no such widget (42%)', 'the message, percent-decoded');
        t.equal(r.value, undefined);
      });

      await t.test('a deadline: DEADLINE_EXCEEDED, and the backend sees the call end', async (t) => {
        const cancelled = seen.cancelled.length;
        const started = Date.now();
        const r = await unary(client, Buffer.from('slow:10000'), { deadline: Date.now() + 500 });
        t.equal(r.err?.code, grpc.status.DEADLINE_EXCEEDED);
        t.ok(Date.now() - started < 5000, 'well before the backend would have answered');
        t.ok(Number.isFinite(seen.deadlines.at(-1)), 'grpc-timeout reached the backend');
        await waitFor(() => seen.cancelled.length > cancelled, { what: 'the backend call to be cancelled' });
      });

      await t.test('a client cancel stops an endless server stream at the backend', async (t) => {
        const cancelled = seen.cancelled.length;
        const call = client.makeServerStreamRequest(ECHO.serverStream.path, raw, raw, Buffer.from('-1'));
        // A cancelled call also fails its stream with CANCELLED: read from the status below.
        call.on('error', () => undefined);
        const r = reader(call);
        t.match((await r.next()).toString(), /^tick-/);
        const status = statusOf(call);
        call.cancel();
        t.equal((await status).code, grpc.status.CANCELLED);
        await waitFor(() => seen.cancelled.length > cancelled, { what: 'the backend stream to be cancelled' });
      });

      await t.test('figures: sequential and concurrent unary calls (reported, not a benchmark)', async (t) => {
        const ping = Buffer.from('ping');
        let started = performance.now();
        for (let i = 0; i < 100; i++)
          t.equal((await unary(client, ping)).err, null, `sequential call ${i}`, { diagnostic: false });
        const sequentialMs = (performance.now() - started) / 100;
        started = performance.now();
        const results = await Promise.all(Array.from({ length: 300 }, () => unary(client, ping)));
        const rate = 300 / ((performance.now() - started) / 1000);
        const failures = results.filter((r) => r.err !== null).map((r) => `${r.err!.code} ${r.err!.details}`);
        t.same(failures, [], 'all 300 concurrent calls succeed');
        t.comment(
          `${protocol}: unary ${sequentialMs.toFixed(2)} ms per call one at a time; ${Math.round(rate)} calls/s with 300 in flight`,
        );
      });

      await t.test('a 4 MiB message each way', async (t) => {
        const big = Buffer.alloc(4 * 1024 * 1024);
        for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i ^ 0x9e3779b9) >>> 0, i);
        const r = await unary(client, big);
        t.equal(r.err, null);
        t.equal(r.value?.length, big.length);
        t.equal(sha(r.value!), sha(big), 'the same bytes came back');
      });
    });
  }

  await t.test('the trailers-only answer ends the stream with its HEADERS frame', async (t) => {
    const session = h2Session({ ca: h.relay.ca.certPem, port: h.publicPort, host: 'grpcc.test' });
    t.teardown(() => closeSession(session));
    const message = Buffer.from('fail:gone');
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    const stream = session.request({
      ':method': 'POST',
      ':path': ECHO.unary.path,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    stream.end(frame);
    const [headers, flags] = await new Promise<[Record<string, unknown>, number]>((resolve) =>
      stream.on('response', (hd, f) => resolve([hd, f])),
    );
    stream.resume();
    t.equal(headers[':status'], 200);
    t.equal(headers['grpc-status'], String(grpc.status.NOT_FOUND));
    t.equal(headers['grpc-message'], 'gone');
    t.ok(flags & h2.NGHTTP2_FLAG_END_STREAM, 'END_STREAM on the HEADERS frame');
  });

  await t.test('under sign-in: a bearer access token is required', async (t) => {
    const client = grpcClient(t, h, 'grpca.test');
    const seenBefore = plain.seen.metadata.length;
    const refused = await unary(client, Buffer.from('who'));
    t.equal(refused.err?.code, grpc.status.UNAUTHENTICATED, 'without a token: UNAUTHENTICATED');
    t.match(
      refused.err?.details,
      /\(ERR_[A-Z_]+, request id [0-9a-f-]{36}\)$/,
      'the relay says why, with the request id',
    );
    t.same(refused.status?.metadata.get('www-authenticate'), ['Bearer realm="proxyctl"'], 'and how to sign in');
    t.equal(plain.seen.metadata.length, seenBefore, 'nothing reached the backend');

    const token = await h.idp.adminToken({ audience: 'urn:proxyctl:grpc', roles: [] });
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const ok = await unary(client, Buffer.from('who'), { metadata: md });
    t.equal(ok.err, null);
    t.equal(ok.value?.toString(), 'who');
    const got = plain.seen.metadata.at(-1)!;
    t.same(got.get('authorization'), [], 'the token is not passed on');
    t.equal(got.get('x-proxyctl-jwt-assertion').length, 1, 'the relay asserts the identity instead');

    const call = client.makeBidiStreamRequest(ECHO.bidi.path, raw, raw, md);
    const r = reader(call);
    const status = statusOf(call);
    call.write(Buffer.from('signed'));
    t.equal((await r.next()).toString(), 'echo:signed', 'streaming works signed in too');
    call.end();
    t.equal((await status).code, grpc.status.OK);

    const bad = new grpc.Metadata();
    bad.set('authorization', 'Bearer not-a-token');
    const badToken = await unary(client, Buffer.from('who'), { metadata: bad });
    t.equal(badToken.err?.code, grpc.status.UNAUTHENTICATED, 'a bad token: UNAUTHENTICATED');
  });

  await t.test('h2: a backend certificate the connector does not trust is refused', async (t) => {
    const client = grpcClient(t, h, 'grpcu.test');
    const r = await unary(client, Buffer.from('ping'));
    t.equal(r.err?.code, grpc.status.UNAVAILABLE, 'UNAVAILABLE (HTTP 502)');
    t.match(r.err?.details, /ERR_BACKEND_UNREACHABLE/, 'naming the failed step');
    const page = await request(h.url('grpcu.test', '/test.Echo/Unary'), {
      dispatcher: h.client,
      method: 'POST',
      headers: { accept: 'application/json' },
      body: 'x',
    });
    t.equal(page.statusCode, 502);
    const body = (await page.body.json()) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'ERR_BACKEND_UNREACHABLE');
    t.match(body.error.message, /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/);
  });
});
