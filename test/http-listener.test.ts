// The plain-HTTP listener: ACME HTTP-01 answers, 308 to HTTPS for everything else,
// 400 for bad Host headers and targets, and the HTTPS listener's limits.
import t from 'tap';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { request } from 'node:http';
import { createHttpListener, hostOf } from '../src/relay/edge/http-listener.js';
import { silentLogger } from '../src/log.js';
import { parseRelayConfig } from '../src/config/relay-config.js';

const TOKEN = 'tok_ABCDEFGHIJKLMNOPQRSTUV-0123';
const KEY_AUTH = `${TOKEN}.thumbprint`;

async function start(
  t: { teardown(fn: () => unknown): void },
  httpsPort = 8443,
  limits: Partial<ReturnType<typeof parseRelayConfig>['limits']> = {},
): Promise<number> {
  const cfg = parseRelayConfig('{}', undefined);
  const server = createHttpListener({
    limits: { ...cfg.limits, ...limits },
    httpsPort: () => httpsPort,
    challenge: (token, host) => (token === TOKEN && host === 'app.example.com' ? KEY_AUTH : undefined),
    log: silentLogger,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** Sends raw bytes, returns everything read until the server closes (or `until` matches). */
function raw(port: number, bytes: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => {
      got += d.toString('latin1');
      if (until?.test(got)) s.destroy();
    });
    s.on('close', () => resolve(got));
    s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(got) : reject(err)));
    s.write(bytes);
  });
}

function get(
  port: number,
  path: string,
  headers: Record<string, string>,
  method = 'GET',
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('HTTP-01: a pending token is answered with its key authorization, on its host only', async (t) => {
  const port = await start(t);
  const ok = await get(port, `/.well-known/acme-challenge/${TOKEN}`, { host: 'app.example.com' });
  t.equal(ok.status, 200);
  t.equal(ok.body, KEY_AUTH);
  const head = await get(port, `/.well-known/acme-challenge/${TOKEN}`, { host: 'app.example.com:80' }, 'HEAD');
  t.equal(head.status, 200, 'HEAD and a port in Host are fine');
  t.equal((await get(port, `/.well-known/acme-challenge/${TOKEN}`, { host: 'other.example.com' })).status, 404);
  t.equal(
    (await get(port, `/.well-known/acme-challenge/unknownunknownunknown`, { host: 'app.example.com' })).status,
    404,
  );
  for (const bad of ['', 'short', `${TOKEN}/x`, `${TOKEN}?x=1`, '../../etc/passwd', 'a'.repeat(200), `${TOKEN}%00`])
    t.equal(
      (await get(port, `/.well-known/acme-challenge/${bad}`, { host: 'app.example.com' })).status,
      404,
      `token ${JSON.stringify(bad.slice(0, 30))} is not answered`,
    );
  const post = await get(port, `/.well-known/acme-challenge/${TOKEN}`, { host: 'app.example.com' }, 'POST');
  t.equal(post.status, 308, 'other methods are redirected, never answered with the key authorization');
});

t.test('everything else: 308 to https on the same host, path and query', async (t) => {
  const port = await start(t, 8443);
  const r = await get(port, '/a/b?c=d&e=%2F', { host: 'App.Example.com' });
  t.equal(r.status, 308);
  t.equal(r.headers['location'], 'https://app.example.com:8443/a/b?c=d&e=%2F');
  const v6 = await get(port, '/', { host: '[::1]:80' });
  t.equal(v6.headers['location'], 'https://[::1]:8443/');
  const dot = await get(port, '//evil.example/', { host: 'app.example.com.' });
  t.equal(dot.headers['location'], 'https://app.example.com:8443//evil.example/', 'the host stays ours');
  const del = await get(port, '/x', { host: 'app.example.com' }, 'DELETE');
  t.equal(del.status, 308, 'any method');
});

t.test('port 443 is left out of the redirect', async (t) => {
  const port = await start(t, 443);
  t.equal((await get(port, '/p?q', { host: 'app.example.com:80' })).headers['location'], 'https://app.example.com/p?q');
});

t.test('hostile Host headers and targets are refused with 400', async (t) => {
  const port = await start(t);
  const hosts = [
    'evil.com/x',
    'evil.com@app',
    'a b',
    'app.example.com:99999',
    'app.example.com:x',
    '[zz::1]',
    '[::1',
    '-bad.example',
    'a..b',
    `${'a'.repeat(64)}.example`,
    'app.example.com\\@evil',
    '',
  ];
  for (const h of hosts) {
    const r = await raw(port, `GET / HTTP/1.1\r\nHost: ${h}\r\nConnection: close\r\n\r\n`);
    t.match(r, /^HTTP\/1\.1 400 /, `Host ${JSON.stringify(h)} refused`);
    t.notMatch(r, /location:/i, 'no redirect');
  }
  const none = await raw(port, `GET / HTTP/1.0\r\n\r\n`);
  t.match(none, /^HTTP\/1\.1 400 /, 'no Host at all');
  const abs = await raw(
    port,
    `GET http://evil.example/ HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n`,
  );
  t.match(abs, /^HTTP\/1\.1 400 /, 'absolute-form target');
  const star = await raw(port, `OPTIONS * HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n`);
  t.match(star, /^HTTP\/1\.1 400 /, 'asterisk-form target');
  const two = await raw(port, `GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n`);
  t.match(two, /^HTTP\/1\.1 400 /, 'two Host headers');
  const bytes = await raw(port, `GET /\xe9t\xe9 HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n`);
  t.notMatch(bytes, /\xe9/, 'bytes outside ASCII never reach a header');
});

t.test('the HTTPS listener limits: header size, header timeout, bodies not read', async (t) => {
  const port = await start(t, 8443, { maxHeaderBytes: 2048, headersTimeoutMs: 300, connectionsPerIp: 2 });
  const big = await raw(port, `GET / HTTP/1.1\r\nHost: app.example.com\r\nX: ${'a'.repeat(4096)}\r\n\r\n`);
  t.match(big, /^HTTP\/1\.1 431 /, 'headers too large');
  const slow = await raw(port, `GET / HTTP/1.1\r\nHost: app.example.com\r\n`);
  t.match(slow, /^HTTP\/1\.1 408 /, 'headers never finished: 408, closed');
  const body = await raw(
    port,
    `POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 60\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app.example.com\r\n\r\n`,
  );
  t.equal(body.match(/HTTP\/1\.1 /g)?.length, 1, 'a body is not parsed as another request');
  t.match(body, /connection: close/i);
  // The per-address cap: a third open connection is dropped unanswered.
  const held = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
  await Promise.all(held.map((s) => new Promise((r) => s.once('connect', r))));
  t.teardown(() => held.forEach((s) => s.destroy()));
  const third = await raw(port, `GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n`);
  t.equal(third, '', 'over the per-address cap: closed without an answer');
});

t.test('hostOf', async (t) => {
  t.equal(hostOf('Example.COM:80'), 'example.com');
  t.equal(hostOf('[::FFFF:127.0.0.1]'), '[::ffff:7f00:1]');
  t.equal(hostOf('127.0.0.1:8080'), '127.0.0.1');
  t.equal(hostOf(undefined), undefined);
  t.equal(hostOf('a'.repeat(300)), undefined);
});
