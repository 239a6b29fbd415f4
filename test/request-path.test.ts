// The request path in-process: a real relay (TLS, CA, SQLite), real connectors
// and a real HTTP backend, driven by an HTTPS client as a user would. Each case
// asserts what the user sees (status, code, bytes) and what the backend saw.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { LookupFunction } from 'node:net';
import path from 'node:path';
import { Agent, request, type Dispatcher } from 'undici';
import WebSocket from 'ws';
import { Connector } from '../src/connector/connector.js';
import { writeRegistration } from '../src/connector/state.js';
import { Channel } from '../src/relay/connectors/channels.js';
import {
  RANGE_SIZE,
  SET_COOKIES,
  drain,
  patternChunks,
  patternSha256,
  patternStream,
  startBackend,
  type Backend,
  type EchoBody,
} from './helpers/backend.js';
import { capturingLogger, startHarness, testLogger, type Harness } from './helpers/harness.js';
import { closedPort } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

const MiB = 1024 * 1024;

const lookup: LookupFunction = (_host, opts, cb) => {
  if ((opts as { all?: boolean }).all)
    (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  else cb(null, '127.0.0.1', 4);
};

interface ErrorJson {
  error: { code: string; step: string; message: string; requestId: string; app?: string };
}

function yaml(backend: Backend, deadPort: number): string {
  const app = (name: string, ext: string, internal: string, extra = '') =>
    `  - name: ${name}\n    externalUrl: "${ext}"\n    internalUrl: "${internal}"\n    preauth: passthrough\n${extra}`;
  const b = backend.origin;
  // 200 concurrent requests with uploads stall a loaded CI machine's event loop for longer than
  // the harness's 500 ms heartbeat: a healthy channel would be cut as dead (the product default is 2 s).
  return `connectors: { heartbeatInterval: 2s, queueTimeout: 1s }
apps:
${app('main', 'https://files.test/', `${b}/main/`)}
${app('api', 'https://files.test/api/', `${b}/api-b/`)}
${app('wild', 'https://*.apps.test/', `${b}/wild/`)}
${app('special', 'https://special.apps.test/', `${b}/special/`)}
${app('deep', 'https://*.deep.apps.test/', `${b}/deep/`)}
${app('pass', 'https://pass.test/', `${b}/pass/`, '    passHostHeader: true\n')}
${app('slowapp', 'https://slow.test/', `${b}/t/`, '    backendTimeout: 300ms\n')}
${app('dead', 'https://dead.test/', `http://127.0.0.1:${deadPort}/`)}
${app('lonely', 'https://lonely.test/', `${b}/lonely/`, '    connectorGroup: nobody\n')}
${app('late', 'https://late.test/', `${b}/late/`, '    connectorGroup: late\n')}
${app('pair', 'https://pair.test/', `${b}/pair/`, '    connectorGroup: pair\n')}
${app('kill', 'https://kill.test/', `${b}/kill/`, '    connectorGroup: kill\n')}
`;
}

t.test('request path through an in-process relay and connectors', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const deadPort = await closedPort();
  // The relay's (and connectors') log lines, for the moments no event marks.
  const { log, lines: logLines } = capturingLogger();
  const h: Harness = await startHarness(t, { yaml: () => yaml(backend, deadPort), log });
  await h.addConnector(); // the "default" group: every app not given another group
  const ca = h.relay.ca.certPem;
  // Hosts the relay certificate does not name still reach the relay; the test checks its answer.
  const anyHost = new Agent({ connect: { ca, lookup, checkServerIdentity: () => undefined } });
  t.teardown(() => anyHost.close());

  // Control messages the relay puts on channels, to see what connectors are told.
  const sent: { type: string; id?: string }[] = [];
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with call(this) below
  const origSend = Channel.prototype.send;
  Channel.prototype.send = function (this: Channel, m) {
    sent.push({ type: m.type, id: 'id' in m ? m.id : undefined });
    return origSend.call(this, m);
  };
  t.teardown(() => {
    Channel.prototype.send = origSend;
  });

  const call = (host: string, p: string, opts: Partial<Dispatcher.RequestOptions> & { dispatcher?: Dispatcher } = {}) =>
    request(h.url(host, p), { dispatcher: h.client, ...opts });
  const echo = async (host: string, p: string, opts: Partial<Dispatcher.RequestOptions> = {}) => {
    const r = await call(host, p, opts);
    t.equal(r.statusCode, 200, `${host}${p} answered`);
    return (await r.body.json()) as EchoBody;
  };
  const errorJson = async (r: Dispatcher.ResponseData<unknown>) => (await r.body.json()) as ErrorJson;
  /** Node's own client, for headers undici refuses to send (Keep-Alive, Connection tokens, Expect). */
  const raw = (
    host: string,
    p: string,
    o: { method?: string; headers?: Record<string, string | number>; body?: Buffer; expectContinue?: boolean },
  ) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer; sawContinue: boolean }>(
      (resolve, reject) => {
        let sawContinue = false;
        const req = httpsRequest({
          host: '127.0.0.1',
          port: h.publicPort,
          servername: host,
          ca,
          agent: false,
          path: p,
          method: o.method ?? 'GET',
          headers: { host: `${host}:${h.publicPort}`, ...o.headers },
        });
        req.on('error', reject);
        req.on('response', (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), sawContinue }),
          );
          res.on('error', reject);
        });
        if (o.expectContinue) {
          req.on('continue', () => {
            sawContinue = true;
            req.end(o.body);
          });
        } else {
          req.end(o.body);
        }
      },
    );

  await t.test('passthrough app end to end', async (t) => {
    const body = randomBytes(5000);
    const e = await echo('files.test', '/some/path?q=1&r=%20x', {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/x-test', 'x-custom': 'yes' },
    });
    t.equal(e.method, 'POST');
    t.equal(e.url, '/main/some/path?q=1&r=%20x', 'path and query mapped onto the internal URL');
    t.equal(e.bodyLength, body.length);
    t.equal(e.bodySha256, createHash('sha256').update(body).digest('hex'));
    t.equal(e.headers['x-custom'], 'yes');
    t.equal(e.headers['content-type'], 'application/x-test');
    t.equal(e.headers['content-length'], String(body.length), 'declared length kept');
    t.match(e.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  });

  await t.test('host routing: path prefix, wildcard, most specific wins, unknown host', async (t) => {
    t.equal((await echo('files.test', '/api/v1/items?x=1')).url, '/api-b/v1/items?x=1', 'longest prefix on the host');
    t.equal((await echo('files.test', '/api')).url, '/api-b/', 'prefix without its trailing slash');
    t.equal((await echo('files.test', '/api?x=2')).url, '/api-b/?x=2');
    t.equal((await echo('files.test', '/apix/y')).url, '/main/apix/y', 'a longer segment is not the prefix');
    t.equal((await echo('FILES.test', '/')).url, '/main/', 'host matched case-insensitively');
    t.equal((await echo('one.apps.test', '/w')).url, '/wild/w', 'wildcard host');
    t.equal((await echo('special.apps.test', '/s')).url, '/special/s', 'exact host beats the wildcard');
    t.equal((await echo('x.deep.apps.test', '/d')).url, '/deep/d', 'longer wildcard suffix beats the shorter');
    const hits = backend.hits('echo');
    for (const host of ['a.b.apps.test', 'apps.test', 'nowhere.test']) {
      const r = await call(host, '/anything', { dispatcher: anyHost, headers: { accept: 'application/json' } });
      t.equal(r.statusCode, 404, `${host} is not published`);
      const j = await errorJson(r);
      t.equal(j.error.code, 'ERR_APP_NOT_FOUND');
      t.match(r.headers['x-request-id'], /^[0-9a-f-]{36}$/);
      t.equal(j.error.requestId, r.headers['x-request-id'], 'page and header carry the same request id');
    }
    const page = await call('nowhere.test', '/', { dispatcher: anyHost });
    t.equal(page.statusCode, 404);
    t.match(page.headers['content-type'], /^text\/html/);
    const html = await page.body.text();
    t.ok(html.includes(String(page.headers['x-request-id'])), 'the HTML page shows the request id');
    t.equal(backend.hits('echo'), hits, 'nothing reached the backend');
  });

  await t.test('dot segments cannot leave the published path prefix', async (t) => {
    for (const p of [
      '/api/../escape',
      '/api/%2e%2e/escape',
      '/api/./..//escape',
      '/api/%2E%2e/escape',
      '/api/..%5cescape',
      '/api/x%2f..%2fescape',
    ]) {
      const before = backend.seen.length;
      const r = await raw('files.test', p, {});
      const reached = backend.seen.slice(before).map((s) => s.url);
      const escaped = reached.some(
        (u) => (!u.startsWith('/api-b/') && !u.startsWith('/main/')) || /(^|\/)(\.|%2e){1,2}(\/|$)/i.test(u),
      );
      t.ok(r.status === 400 || !escaped, `${p}: status ${r.status}, backend saw ${JSON.stringify(reached)}`);
    }
  });

  await t.test('methods: HEAD, PUT, PATCH, DELETE, OPTIONS', async (t) => {
    const head = await call('files.test', '/bytes?n=12345', { method: 'HEAD' });
    t.equal(head.statusCode, 200);
    t.equal(head.headers['content-length'], '12345', 'HEAD keeps the length');
    t.equal((await head.body.arrayBuffer()).byteLength, 0, 'and has no body');
    for (const method of ['PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const) {
      const e = await echo('files.test', `/m-${method}`, {
        method,
        body: method === 'PUT' || method === 'PATCH' ? 'data' : undefined,
      });
      t.equal(e.method, method);
      if (method === 'PUT' || method === 'PATCH') t.equal(e.bodyLength, 4);
    }
  });

  await t.test('Expect: 100-continue', async (t) => {
    const body = randomBytes(100_000);
    const r = await raw('files.test', '/upload', {
      method: 'POST',
      body,
      expectContinue: true,
      headers: { expect: '100-continue', 'content-length': body.length },
    });
    t.ok(r.sawContinue, 'the client got 100 Continue');
    t.equal(r.status, 200);
    const j = JSON.parse(r.body.toString()) as { sha256: string; length: number };
    t.equal(j.length, body.length);
    t.equal(j.sha256, createHash('sha256').update(body).digest('hex'));
    const seen = backend.seen.at(-1)!;
    t.equal(seen.headers['expect'], undefined, 'the relay answered the expectation; the backend is not asked again');
  });

  await t.test('chunked request body without a length', async (t) => {
    const n = 3 * MiB + 17;
    const r = await call('files.test', '/upload', { method: 'POST', body: patternStream(n) });
    t.equal(r.statusCode, 200);
    const j = (await r.body.json()) as {
      sha256: string;
      length: number;
      contentLength: string | null;
      transferEncoding: string | null;
    };
    t.equal(j.length, n);
    t.equal(j.sha256, patternSha256(n));
    t.equal(j.contentLength, null);
    t.equal(j.transferEncoding, 'chunked', 'streamed on to the backend, not buffered to learn its length');
  });

  await t.test('16 MiB download and upload, byte-exact', async (t) => {
    const n = 16 * MiB + 3;
    const down = await call('files.test', `/bytes?n=${n}&tag=dl16`);
    t.equal(down.statusCode, 200);
    t.equal(down.headers['content-length'], String(n));
    const got = await drain(down.body);
    t.equal(got.error, undefined);
    t.equal(got.bytes, n);
    const sentByBackend = await backend.ended('dl16');
    t.equal(got.sha256, sentByBackend.sha256, 'client received what the backend sent');
    t.equal(got.sha256, patternSha256(n));
    const up = await call('files.test', '/upload', {
      method: 'POST',
      body: patternStream(n),
      headers: { 'content-length': String(n) },
    });
    const j = (await up.body.json()) as { sha256: string; length: number; contentLength: string };
    t.equal(j.length, n);
    t.equal(j.contentLength, String(n));
    t.equal(j.sha256, patternSha256(n));
  });

  await t.test('a backend that answers an upload early (413): the user gets that answer', async (t) => {
    for (const size of [100_000, 8 * MiB]) {
      const r = await call('files.test', '/reject-upload', {
        method: 'POST',
        body: patternStream(size),
        headers: { 'content-length': String(size) },
      }).catch((err: Error) => err);
      if (r instanceof Error) {
        t.fail(`${size}-byte upload: connection cut (${r.message})`);
        continue;
      }
      t.equal(r.statusCode, 413, `${size}-byte upload`);
      t.same(await r.body.json(), { error: 'too large' });
    }
  });

  await t.test('an informational 103 before the answer: the user gets the final response', async (t) => {
    const r = await call('files.test', '/early-hints');
    t.equal(r.statusCode, 200);
    t.same(await r.body.json(), { hinted: true });
  });

  await t.test('Range requests', async (t) => {
    const whole = Buffer.concat([...patternChunks(RANGE_SIZE)]);
    const r = await call('files.test', '/range', { headers: { range: 'bytes=100-199' } });
    t.equal(r.statusCode, 206);
    t.equal(r.headers['content-range'], `bytes 100-199/${RANGE_SIZE}`);
    t.same(Buffer.from(await r.body.arrayBuffer()), whole.subarray(100, 200));
    const tail = await call('files.test', '/range', { headers: { range: 'bytes=-10' } });
    t.equal(tail.statusCode, 206);
    t.same(Buffer.from(await tail.body.arrayBuffer()), whole.subarray(RANGE_SIZE - 10));
    const bad = await call('files.test', '/range', { headers: { range: `bytes=${RANGE_SIZE}-` } });
    t.equal(bad.statusCode, 416);
    await bad.body.dump();
  });

  await t.test('multiple Set-Cookie headers are preserved', async (t) => {
    const r = await call('files.test', '/cookies');
    t.equal(r.statusCode, 200);
    t.same(r.headers['set-cookie'], SET_COOKIES, 'both, in order, not joined');
    await r.body.dump();
  });

  await t.test('large headers (~12 KB) both ways', async (t) => {
    const big = 'x'.repeat(12 * 1024);
    const e = await echo('files.test', '/big', { headers: { 'x-large': big } });
    t.equal(e.headers['x-large'], big);
    const r = await call('files.test', '/big-header?n=12000');
    t.equal(r.statusCode, 200);
    t.equal(String(r.headers['x-big']).length, 12000);
    await r.body.dump();
  });

  await t.test('hop-by-hop and identity headers are stripped, forwarding headers set', async (t) => {
    const r = await raw('files.test', '/hop', {
      headers: {
        connection: 'keep-alive, X-Foo',
        'x-foo': '1',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic eDp5',
        'x-proxyctl-user': 'mallory',
        x_proxyctl_email: 'mallory@example.com',
        'X-PROXYCTL-JWT-ASSERTION': 'forged',
        'x-forwarded-for': '10.9.9.9',
        'x-forwarded-host': 'evil.test',
        'x-forwarded-proto': 'http',
        'x-request-id': 'client-chosen',
        'x-kept': 'kept',
      },
    });
    t.equal(r.status, 200);
    const e = JSON.parse(r.body.toString()) as EchoBody;
    const names = e.rawHeaderNames.map((n) => n.toLowerCase());
    for (const gone of [
      'x-foo',
      'keep-alive',
      'te',
      'proxy-authorization',
      'x-proxyctl-user',
      'x_proxyctl_email',
      'x-proxyctl-jwt-assertion',
    ]) {
      t.notOk(names.includes(gone), `${gone} not forwarded`);
    }
    t.notOk(
      names.some((n) => /proxyctl/.test(n)),
      'no proxyctl identity header of any spelling',
    );
    t.equal(e.headers['x-kept'], 'kept');
    t.equal(e.headers['x-forwarded-for'], '127.0.0.1', 'client-sent X-Forwarded-For replaced');
    t.equal(e.headers['x-forwarded-proto'], 'https');
    t.equal(e.headers['x-forwarded-host'], `files.test:${h.publicPort}`);
    t.match(e.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'request id chosen by the relay');
    t.equal(e.headers['host'], `127.0.0.1:${backend.port}`, 'backend sees its internal host');
  });

  await t.test('passHostHeader: the backend sees the external host', async (t) => {
    const e = await echo('pass.test', '/p');
    t.equal(e.headers['host'], `pass.test:${h.publicPort}`);
    t.equal(e.url, '/pass/p');
  });

  await t.test('/robots.txt is answered by the relay', async (t) => {
    const before = backend.seen.length;
    const r = await call('files.test', '/robots.txt');
    t.equal(r.statusCode, 200);
    t.match(await r.body.text(), /Disallow: \//);
    const head = await call('files.test', '/robots.txt', { method: 'HEAD' });
    t.equal(head.statusCode, 200);
    await head.body.dump();
    t.equal(backend.seen.length, before, 'the backend was not asked');
  });

  await t.test('200 concurrent mixed requests', async (t) => {
    const ids = new Set<string>();
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        if (i % 3 === 0) {
          const r = await call('files.test', `/mixed/${i}?i=${i}`);
          const e = (await r.body.json()) as EchoBody;
          ids.add(String(e.headers['x-request-id']));
          return r.statusCode === 200 && e.url === `/main/mixed/${i}?i=${i}` && e.method === 'GET';
        }
        if (i % 3 === 1) {
          const body = randomBytes(i * 331);
          const r = await call('files.test', `/upload?i=${i}`, { method: 'POST', body });
          const j = (await r.body.json()) as { sha256: string; length: number };
          return (
            r.statusCode === 200 &&
            j.length === body.length &&
            j.sha256 === createHash('sha256').update(body).digest('hex')
          );
        }
        const r = await call('files.test', `/bytes?n=${i * 100}`, { method: 'HEAD' });
        const empty = (await r.body.arrayBuffer()).byteLength === 0;
        return r.statusCode === 200 && r.headers['content-length'] === String(i * 100) && empty;
      }),
    );
    t.equal(results.filter(Boolean).length, 200, 'every request answered correctly');
    t.equal(ids.size, 67, 'each request had its own id');
  });

  await t.test('a completed request is not cancelled on the connector', async (t) => {
    sent.length = 0;
    for (let i = 0; i < 5; i++) {
      const r = await call('files.test', `/done-${i}`);
      await r.body.dump();
    }
    const dl = await call('files.test', '/bytes?n=3000000');
    t.equal((await drain(dl.body)).bytes, 3000000, 'a streamed download read to its end');
    // The relay logs a request when its response closes, in the 'close' listener registered
    // just before the one that would send a cancel: once all six are logged, every cancel
    // there was going to be has been sent.
    const ids = sent.filter((m) => m.type === 'request').map((m) => m.id);
    await waitFor(() => ids.every((id) => logLines.some((l) => l.msg === 'request' && l['request_id'] === id)), {
      what: 'the six requests to be logged as closed',
    });
    t.equal(sent.filter((m) => m.type === 'request').length, 6);
    t.same(
      sent.filter((m) => m.type === 'cancel'),
      [],
      'no cancel for requests that finished normally',
    );
  });

  await t.test('WebSocket echo through the relay', async (t) => {
    const ws = new WebSocket(h.url('files.test', '/ws').replace(/^https/, 'wss'), { ca, lookup });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const next = () =>
      new Promise<{ data: Buffer; binary: boolean }>((resolve) =>
        ws.once('message', (data, binary) => resolve({ data: data as Buffer, binary })),
      );
    let m = next();
    ws.send('hello');
    t.same(await m, { data: Buffer.from('hello'), binary: false });
    const bin = randomBytes(200_000);
    m = next();
    ws.send(bin);
    const got = await m;
    t.ok(got.binary && got.data.equals(bin), 'binary frame echoed byte-exact');
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.send('close');
    t.equal(await closed, 4001, 'the backend close code reaches the client');
  });

  /** A WebSocket handshake the relay or backend refuses: its status and headers, or 'timeout'. */
  const wsRefusal = (host: string, p: string, agentOpts: { checkServerIdentity?: () => undefined } = {}) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: string } | 'timeout' | 'opened'>(
      (resolve, reject) => {
        const ws = new WebSocket(h.url(host, p).replace(/^https/, 'wss'), { ca, lookup, ...agentOpts });
        const timer = setTimeout(() => {
          ws.terminate();
          resolve('timeout');
        }, 3000);
        ws.on('unexpected-response', (_req, res) => {
          clearTimeout(timer);
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
          res.on('error', reject);
        });
        ws.on('open', () => {
          clearTimeout(timer);
          ws.terminate();
          resolve('opened');
        });
        ws.on('error', () => undefined);
      },
    );

  await t.test('WebSocket refused by the relay: unknown host → 404 with a request id', async (t) => {
    const r = await wsRefusal('nowhere.test', '/ws', { checkServerIdentity: () => undefined });
    if (typeof r === 'string') return void t.fail(`expected a refusal, got ${r}`);
    t.equal(r.status, 404);
    t.match(r.headers['x-request-id'], /^[0-9a-f-]{36}$/);
  });

  await t.test('a backend that never answers an upgrade: 504 ERR_BACKEND_TIMEOUT after backendTimeout', async (t) => {
    const started = performance.now();
    const r = await wsRefusal('slow.test', '/ws-hang');
    if (typeof r === 'string') return void t.fail(`expected a 504, got ${r}`);
    t.equal(r.status, 504);
    t.match(r.body, /ERR_BACKEND_TIMEOUT/);
    const took = performance.now() - started;
    t.ok(took >= 280 && took < 2900, `answered after ${Math.round(took)} ms (backendTimeout 300 ms)`);
    await waitFor(() => backend.hangingUpgrades() === 0, { what: 'the connector to close the backend socket' });
    t.pass('the connector closed its socket to the backend');
  });

  await t.test('WebSocket declined by the backend: its answer reaches the client promptly', async (t) => {
    const started = performance.now();
    const r = await wsRefusal('files.test', '/not-a-socket');
    if (typeof r === 'string')
      return void t.fail(`expected the backend's 403, got ${r} after ${Math.round(performance.now() - started)} ms`);
    t.equal(r.status, 403, 'the backend status');
    t.equal(r.headers['x-declined'], 'yes', 'and its headers');
    t.equal(r.body, 'forbidden');
  });

  await t.test('SSE: events stream before the response ends', async (t) => {
    const started = performance.now();
    const r = await call('files.test', '/sse?n=10&tag=sse1');
    t.equal(r.statusCode, 200);
    t.match(r.headers['content-type'], /text\/event-stream/);
    let text = '';
    let firstAt = 0;
    let backendAtFirst = -1;
    for await (const chunk of r.body as AsyncIterable<Buffer>) {
      text += chunk.toString();
      if (!firstAt && text.includes('data: event-0')) {
        firstAt = performance.now() - started;
        backendAtFirst = backend.sseSent('sse1');
      }
    }
    t.ok(
      backendAtFirst >= 1 && backendAtFirst < 10,
      `first event arrived while the backend was still sending (${backendAtFirst}/10 sent)`,
    );
    t.ok(firstAt < 600, `first event after ${Math.round(firstAt)} ms`);
    t.equal(text.match(/data: event-\d+/g)?.length, 10, 'all events arrived');
  });

  await t.test('client aborts a large download: the backend response is aborted', async (t) => {
    const r = await call('files.test', `/bytes?n=${1024 * MiB}&tag=abort1`);
    t.equal(r.statusCode, 200);
    let got = 0;
    for await (const chunk of r.body as AsyncIterable<Buffer>) {
      got += chunk.length;
      if (got >= 2 * MiB) break; // leaving the loop destroys the body: the user went away
    }
    const started = performance.now();
    const e = await backend.ended('abort1', 5000);
    t.equal(e.finished, false, 'backend response closed without finishing');
    t.ok(e.bytes < 1024 * MiB);
    t.ok(performance.now() - started < 5000);
  });

  await t.test('client leaves before the backend answers: the backend request is aborted', async (t) => {
    // A small answer would come back inline; the cancel must reach the backend call before any answer.
    const ac = new AbortController();
    const pending = call('files.test', '/slow?ms=4000&tag=early-leave', { signal: ac.signal }).catch(
      (err: Error) => err,
    );
    await waitFor(() => backend.seen.some((s) => s.url.includes('tag=early-leave')), {
      timeoutMs: 3000,
      what: 'the backend to see the request',
    });
    ac.abort();
    t.ok((await pending) instanceof Error, 'the client gave up');
    const started = performance.now();
    const e = await backend.ended('early-leave', 3000);
    t.equal(e.finished, false, 'the backend response was closed unfinished');
    t.ok(performance.now() - started < 2000, 'long before the backend would have answered');
    const after = await call('files.test', '/slow?ms=10');
    t.equal(after.statusCode, 200, 'the app still answers');
    await after.body.dump();
  });

  await t.test('client aborts an upload: the backend never sees a complete body', async (t) => {
    const declared = 8 * MiB;
    const req = httpsRequest({
      host: '127.0.0.1',
      port: h.publicPort,
      servername: 'files.test',
      ca,
      agent: false,
      path: '/upload?tag=upabort',
      method: 'POST',
      headers: { host: `files.test:${h.publicPort}`, 'content-length': declared },
    });
    req.on('error', () => undefined);
    req.on('response', (res) => res.resume());
    const src = patternStream(declared);
    let written = 0;
    for await (const chunk of src as AsyncIterable<Buffer>) {
      if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
      written += chunk.length;
      if (written >= MiB) break;
    }
    // Let the first megabyte travel through relay and connector before the user goes away.
    await waitFor(() => backend.seen.some((s) => s.url.includes('tag=upabort')), {
      timeoutMs: 3000,
      what: 'the backend to see the upload',
    });
    req.destroy();
    const e = await backend.ended('upabort', 5000);
    t.equal(e.finished, false, 'the backend never answered: its request body did not complete');
  });

  await t.test('backend fails mid-body: the client never sees a clean end', async (t) => {
    const r = await call('files.test', '/fail-mid');
    t.equal(r.statusCode, 200);
    t.equal(r.headers['content-length'], String(MiB));
    const got = await drain(r.body);
    t.ok(got.error, `body errored (${got.error?.message})`);
    t.ok(got.bytes < MiB, `received ${got.bytes} of ${MiB}`);
    const chunked = await call('files.test', '/fail-mid?chunked=1');
    t.equal(chunked.statusCode, 200);
    const got2 = await drain(chunked.body);
    t.ok(got2.error, `chunked body errored (${got2.error?.message})`);
  });

  await t.test('backend sends headers then stalls: headers at once, the body cut after backendTimeout', async (t) => {
    // Larger than an inline response, so it streams: the headers go out before any body byte.
    const started = performance.now();
    const r = await call('slow.test', '/hang-body?n=1000000');
    const headersAfter = performance.now() - started;
    t.equal(r.statusCode, 200, 'the backend status, not a timeout page');
    t.ok(headersAfter < 800, `headers reached the user before any body byte (${Math.round(headersAfter)} ms)`);
    t.equal(r.headers['content-length'], '1000000');
    const got = await drain(r.body);
    t.ok(got.error, 'body errored');
    t.equal(got.bytes, 0);
    t.ok(performance.now() - started < 4000, 'within a few seconds');
  });

  await t.test('a small response that stalls mid-body becomes an error page, never a truncated 200', async (t) => {
    const r = await call('slow.test', '/hang-body?n=1000', { headers: { accept: 'application/json' } });
    t.ok(r.statusCode === 502 || r.statusCode === 504, `error status (${r.statusCode})`);
    const j = (await r.body.json()) as { error: { code: string } };
    t.match(j.error.code, /^ERR_BACKEND_/);
  });

  await t.test('slow backend beyond backendTimeout → 504', async (t) => {
    const started = performance.now();
    const r = await call('slow.test', '/slow?ms=3000', { headers: { accept: 'application/json' } });
    t.equal(r.statusCode, 504);
    const j = await errorJson(r);
    t.equal(j.error.code, 'ERR_BACKEND_TIMEOUT');
    t.equal(j.error.app, 'slowapp');
    t.equal(r.headers['x-request-id'], j.error.requestId);
    const took = performance.now() - started;
    t.ok(took >= 280 && took < 2900, `answered after ${Math.round(took)} ms (backendTimeout 300 ms)`);
    const fast = await call('slow.test', '/slow?ms=10');
    t.equal(fast.statusCode, 200, 'a fast answer on the same app passes');
    t.same(await fast.body.json(), { slept: 10 });
  });

  await t.test('dead backend → 502 ERR_BACKEND_UNREACHABLE', async (t) => {
    const r = await call('dead.test', '/', { headers: { accept: 'application/json' } });
    t.equal(r.statusCode, 502);
    const j = await errorJson(r);
    t.equal(j.error.code, 'ERR_BACKEND_UNREACHABLE');
    t.equal(j.error.app, 'dead');
    t.match(r.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    // The connector abandons the body it pulled; the user still gets the page, and the relay lives on.
    for (const size of [10, 100_000, 2 * MiB]) {
      const post = await call('dead.test', '/upload', {
        method: 'POST',
        body: patternStream(size),
        headers: { accept: 'application/json', 'content-length': String(size) },
      }).catch((err: Error) => err);
      if (post instanceof Error) {
        t.fail(`a ${size}-byte upload: connection cut (${post.message})`);
        continue;
      }
      t.equal(post.statusCode, 502, `a ${size}-byte upload gets the page too`);
      t.equal((await errorJson(post)).error.code, 'ERR_BACKEND_UNREACHABLE');
    }
    const html = await call('dead.test', '/');
    t.equal(html.statusCode, 502);
    t.match(html.headers['content-type'], /^text\/html/);
    t.match(html.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    await html.body.dump();
  });

  await t.test('no connector for the group → 503 ERR_NO_CONNECTOR after the queue timeout', async (t) => {
    const started = performance.now();
    const r = await call('lonely.test', '/', { headers: { accept: 'application/json' } });
    const took = performance.now() - started;
    t.equal(r.statusCode, 503);
    const j = await errorJson(r);
    t.equal(j.error.code, 'ERR_NO_CONNECTOR');
    t.equal(j.error.app, 'lonely', 'names the app');
    t.equal(r.headers['x-request-id'], j.error.requestId);
    t.ok(took >= 950, `waited the queue timeout (${Math.round(took)} ms)`);
  });

  await t.test('a connector coming online during the wait gets the request', async (t) => {
    // Registered ahead (that needs the IdP), started only once the request waits.
    const stateDir = path.join(h.dir, 'late-connector');
    const { issued, keyPem } = await h.register('late', 'late');
    writeRegistration(stateDir, { relayUrl: h.apiUrl, name: 'late', group: 'late', keyPem, issued });
    const late = new Connector({ stateDir, log: testLogger() });
    t.teardown(() => late.close(500));
    const waitingBefore = logLines.length;
    const pending = call('late.test', '/waited');
    await waitFor(
      () =>
        logLines.slice(waitingBefore).some((l) => l.msg === 'request waiting for a connector' && l['group'] === 'late'),
      { what: 'the request to wait in the relay queue' },
    );
    t.equal([...h.relay.channels.inGroup('late')].length, 0, 'no channel yet while the request waits');
    await late.start();
    const r = await pending;
    t.equal(r.statusCode, 200);
    t.equal(((await r.body.json()) as EchoBody).url, '/late/waited');
  });

  await t.test('least outstanding: two connectors of a group both get traffic', async (t) => {
    const a = await h.addConnector({ group: 'pair' });
    const b = await h.addConnector({ group: 'pair' });
    const all = Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const r = await call('pair.test', `/slow?ms=1200&i=${i}`);
        await r.body.dump();
        return r.statusCode;
      }),
    );
    await waitFor(() => a.activeRequests + b.activeRequests >= 20, {
      timeoutMs: 3000,
      what: '20 requests in flight',
    }).catch(() => undefined);
    const [na, nb] = [a.activeRequests, b.activeRequests];
    t.equal(na + nb, 20, 'all twenty in flight on the two connectors');
    t.ok(na >= 8 && nb >= 8, `spread evenly (${na}/${nb})`);
    t.same(await all, Array(20).fill(200));
  });

  await t.test(
    'connector killed mid-stream: in-flight requests fail fast, a second connector takes over',
    async (t) => {
      const first = await h.addConnector({ group: 'kill' });
      const waiting = call('kill.test', '/slow?ms=10000', { headers: { accept: 'application/json' } });
      const streaming = await call('kill.test', `/bytes?n=${512 * MiB}&tag=kill1`);
      t.equal(streaming.statusCode, 200);
      const reading = drain(streaming.body);
      await waitFor(() => first.activeRequests >= 2, { timeoutMs: 10_000, what: 'two requests in flight' });
      const second = await h.addConnector({ group: 'kill' });
      const started = performance.now();
      await first.close(0);
      const w = await waiting;
      t.equal(w.statusCode, 502, 'the waiting request gets a page');
      const j = await errorJson(w);
      t.equal(j.error.code, 'ERR_CONNECTOR_LOST');
      t.equal(w.headers['x-request-id'], j.error.requestId);
      const s = await reading;
      t.ok(s.error, 'the streaming download is cut, not ended cleanly');
      t.ok(s.bytes < 512 * MiB);
      t.ok(performance.now() - started < 3000, `both failed within ${Math.round(performance.now() - started)} ms`);
      for (let i = 0; i < 5; i++) {
        const e = await echo('kill.test', `/after-${i}`);
        t.equal(e.url, `/kill/after-${i}`);
      }
      t.equal(second.openChannels(), 2);
    },
  );
});
