// The admin listener on real sockets (port 0): /healthz and /readyz with GET and
// HEAD, readiness from injected checks (failing, slow, throwing, malformed), 404 and
// 405 for everything else, the loopback warning, lifecycle; and the `admin:` key.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { pino } from 'pino';
import { isProxyctlError } from '../src/errors.js';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { createAdminServer, type AdminServerOptions, type Checks } from '../src/relay/admin/admin-server.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function call(port: number, method: string, path: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A logger whose lines the test reads, with levels by name as the relay's logger writes them. */
function capture() {
  const lines: { level: string; msg: string }[] = [];
  const log = pino(
    { level: 'info', formatters: { level: (label) => ({ level: label }) } },
    { write: (l: string) => void lines.push(JSON.parse(l) as never) },
  );
  return { lines, log };
}

async function admin(t: Test, checks: AdminServerOptions['checks'], extra: Partial<AdminServerOptions> = {}) {
  const { lines, log } = capture();
  const server = createAdminServer({ checks, log, ...extra });
  t.teardown(() => server.close());
  await server.start('127.0.0.1', 0);
  const port = server.address()!.port;
  return { server, port, lines, get: (path: string, method = 'GET') => call(port, method, path) };
}

t.test('/healthz: 200 ok while the process runs, whatever readiness says', async (t) => {
  const { get } = await admin(t, () => ({ store: { ok: false } }));
  const r = await get('/healthz');
  t.equal(r.status, 200);
  t.equal(r.body, 'ok');
  t.match(r.headers['content-type'], /^text\/plain/);
  t.equal(r.headers['cache-control'], 'no-store');
  t.equal(r.headers['content-length'], '2');
  const head = await get('/healthz', 'HEAD');
  t.equal(head.status, 200, 'HEAD');
  t.equal(head.body, '', 'HEAD has no body');
  t.equal(head.headers['content-length'], '2', 'HEAD says how long GET would be');
  t.equal((await get('/healthz?probe=1')).status, 200, 'a query string is ignored');
});

t.test('/readyz: 200 when every check passes, 503 naming the failing ones', async (t) => {
  let state: Checks = {
    listeners: { ok: true },
    store: { ok: true, detail: 'sqlite' },
    configuration: { ok: true, detail: 'generation 1' },
  };
  let calls = 0;
  const { get } = await admin(t, () => {
    calls++;
    return state;
  });
  const ok = await get('/readyz');
  t.equal(ok.status, 200);
  t.equal(ok.headers['content-type'], 'application/json');
  t.same(JSON.parse(ok.body), {
    ready: true,
    checks: {
      listeners: { ok: true },
      store: { ok: true, detail: 'sqlite' },
      configuration: { ok: true, detail: 'generation 1' },
    },
  });

  state = { ...state, store: { ok: false, detail: 'connection refused' } };
  const down = await get('/readyz');
  t.equal(down.status, 503, 'one failing check: not ready');
  const body = JSON.parse(down.body) as { ready: boolean; checks: Checks };
  t.equal(body.ready, false);
  t.same(body.checks['store'], { ok: false, detail: 'connection refused' }, 'the failing check and why');
  t.same(body.checks['listeners'], { ok: true }, 'the passing ones are listed too');
  const head = await get('/readyz', 'HEAD');
  t.equal(head.status, 503, 'HEAD gives the same status');
  t.equal(head.body, '');
  t.equal((await get('/healthz')).status, 200, 'healthz stays 200');

  state = { ...state, store: { ok: true } };
  t.equal((await get('/readyz')).status, 200, 'checks run on every request: ready again');
  t.ok(calls >= 4, `the checks ran per request (${calls})`);
});

t.test('/readyz: no checks is ready; malformed results are not', async (t) => {
  t.equal((await (await admin(t, () => ({}))).get('/readyz')).status, 200, 'no checks: ready');
  const malformed: [string, unknown][] = [
    ['ok as a string', { a: { ok: 'true' } }],
    ['ok missing', { a: { detail: 'x' } }],
    ['null entry', { a: null }],
    ['a boolean entry', { a: true }],
    ['ok 1', { a: { ok: 1 } }],
  ];
  for (const [name, result] of malformed) {
    const { get } = await admin(t, () => result as Checks);
    const r = await get('/readyz');
    t.equal(r.status, 503, `${name}: not ready`);
    t.equal((JSON.parse(r.body) as { ready: boolean }).ready, false);
  }
  for (const [name, result] of [
    ['undefined', undefined],
    ['null', null],
    ['a list', [{ ok: true }]],
    ['a string', 'ok'],
  ] as const) {
    const { get } = await admin(t, () => result as unknown as Checks);
    const r = await get('/readyz');
    t.equal(r.status, 503, `checks returning ${name}: not ready`);
    t.match(JSON.parse(r.body), { ready: false, error: String });
  }
  const { get } = await admin(t, () => ({ a: { ok: true, detail: 42 } as never }));
  t.same(
    JSON.parse((await get('/readyz')).body),
    { ready: true, checks: { a: { ok: true } } },
    'a non-string detail is dropped',
  );
});

t.test('/readyz: checks that throw, reject or hang count as not ready, and the server goes on', async (t) => {
  const thrown = await admin(t, () => {
    throw new Error('boom: internal detail');
  });
  const r = await thrown.get('/readyz');
  t.equal(r.status, 503);
  t.notMatch(r.body, 'internal detail', 'the error text of an unexpected failure is not shown');
  t.equal((await thrown.get('/healthz')).status, 200);

  const rejected = await admin(t, () => Promise.reject(new Error('nope')));
  t.equal((await rejected.get('/readyz')).status, 503);

  const asyncOk = await admin(t, async () => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    return { store: { ok: true } };
  });
  t.equal((await asyncOk.get('/readyz')).status, 200, 'asynchronous checks are awaited');

  const hanging = await admin(t, () => new Promise<Checks>(() => undefined), { checkTimeoutMs: 50 });
  const started = performance.now();
  const slow = await hanging.get('/readyz');
  t.equal(slow.status, 503, 'a check that never answers: not ready');
  t.ok(performance.now() - started < 1000, 'answered after the check timeout');
  t.match(JSON.parse(slow.body), { ready: false, error: /50 ms/ });
  t.equal((await hanging.get('/healthz')).status, 200, 'healthz never runs the checks');
});

t.test('everything else: 404 for other paths, 405 for other methods', async (t) => {
  const { get, port } = await admin(t, () => ({}));
  for (const path of [
    '/',
    '/healthz/',
    '/HEALTHZ',
    '/readyz/x',
    '/readyz.json',
    '/metrics',
    '//healthz',
    '/%68ealthz',
  ]) {
    t.equal((await get(path)).status, 404, `GET ${path}`);
  }
  t.equal((await get('/nope', 'POST')).status, 404, 'an unknown path with another method is 404');
  for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
    for (const path of ['/healthz', '/readyz']) {
      const r = await get(path, method);
      t.equal(r.status, 405, `${method} ${path}`);
      t.equal(r.headers['allow'], 'GET, HEAD');
    }
  }
  const posted = await call(port, 'POST', '/readyz', 'x'.repeat(100_000));
  t.equal(posted.status, 405, 'a body is read and dropped');

  // An absolute-form target and a request the parser refuses.
  const raw = connect(port, '127.0.0.1');
  raw.write('GET http://evil.example/healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  const [chunk] = (await once(raw, 'data')) as [Buffer];
  t.match(chunk.toString(), /^HTTP\/1\.1 404/, 'absolute-form is not /healthz');
  raw.destroy();
  const bad = connect(port, '127.0.0.1');
  bad.write('NOT HTTP AT ALL\r\n\r\n');
  await once(bad, 'close');
  t.pass('a malformed request is dropped');
  t.equal((await get('/healthz')).status, 200, 'and the server goes on');
});

t.test('not on loopback: a warning; on loopback: none', async (t) => {
  const loop = await admin(t, () => ({}));
  t.equal(loop.lines.filter((l) => l.level === 'warn').length, 0, 'loopback: no warning');
  t.equal(loop.lines.filter((l) => /admin listener ready/.test(l.msg)).length, 1);

  const { lines, log } = capture();
  const open = createAdminServer({ checks: () => ({}), log });
  t.teardown(() => open.close());
  await open.start('0.0.0.0', 0);
  t.match(lines, [{ level: 'warn', msg: /not on loopback/ }], 'all interfaces: warned');
  t.equal((await call(open.address()!.port, 'GET', '/healthz')).status, 200);
});

t.test('lifecycle: close is idempotent, safe before start, cuts keep-alive connections', async (t) => {
  const log = pino({ level: 'silent' });
  const never = createAdminServer({ checks: () => ({}), log });
  await never.close();
  await never.close();
  await t.rejects(never.start('127.0.0.1', 0), 'no start after close');

  const s = createAdminServer({ checks: () => ({}), log });
  await s.start('127.0.0.1', 0);
  await t.rejects(s.start('127.0.0.1', 0), 'started once only');
  const port = s.address()!.port;
  const idle = connect(port, '127.0.0.1');
  idle.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  await once(idle, 'data');
  const closed = once(idle, 'close');
  await Promise.all([s.close(), s.close()]);
  await closed;
  t.pass('the keep-alive connection was closed');
  t.equal(s.address(), undefined);
  const refused = connect(port, '127.0.0.1');
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  t.equal(err.code, 'ECONNREFUSED', 'nothing listens any more');

  const taken = createServer();
  taken.listen(0, '127.0.0.1');
  await once(taken, 'listening');
  t.teardown(() => taken.close());
  const busy = createAdminServer({ checks: () => ({}), log });
  try {
    await busy.start('127.0.0.1', (taken.address() as AddressInfo).port);
    t.fail('started on a taken port');
  } catch (e) {
    t.ok(isProxyctlError(e, 'ERR_INTERNAL'), 'a taken port is refused with a ProxyctlError');
    t.match((e as Error).message, /admin\.listen/);
  }
  await busy.close();
  t.pass('close after a failed start');
});

t.test('config: admin.listen', async (t) => {
  const admin = (yaml: string) => parseRelayConfig(yaml, 'relay.yaml').admin;
  t.equal(admin('{}'), undefined, 'no admin listener unless admin: is written');
  t.same(admin('admin: {}'), { host: '127.0.0.1', port: 9443 });
  t.same(admin('admin: { listen: "[::1]:9000" }'), { host: '::1', port: 9000 });
  t.same(admin('admin: { listen: "0.0.0.0:9443" }'), { host: '0.0.0.0', port: 9443 }, 'any address written out');
  t.same(admin('admin: { listen: "127.0.0.1:0" }'), { host: '127.0.0.1', port: 0 });
  t.equal(admin('admin: false'), undefined, 'admin: false: no admin listener');
  const refused: [string, string][] = [
    ['admin: true', 'admin'],
    ['admin: "127.0.0.1:9443"', 'admin'],
    ['admin: [1]', 'admin'],
    ['admin: { listen: 9443 }', 'admin.listen'],
    ['admin: { listen: "127.0.0.1" }', 'admin.listen'],
    ['admin: { listen: "127.0.0.1:65536" }', 'admin.listen'],
    ['admin: { listen: "::1:9443" }', 'admin.listen'],
    ['admin: { port: 9443 }', 'admin.port'],
  ];
  for (const [yaml, path] of refused) {
    try {
      parseRelayConfig(yaml, 'relay.yaml');
      t.fail(`${yaml}: accepted`);
    } catch (err) {
      const issues = (isProxyctlError(err, 'ERR_CONFIG_INVALID') ? err.details?.['issues'] : []) as { path: string }[];
      t.same(
        issues.map((i) => i.path),
        [path],
        `${yaml}: refused at ${path}`,
      );
    }
  }
});
