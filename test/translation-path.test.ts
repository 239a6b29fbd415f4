// Header and link translation through the running relay: the backend speaks in
// internal URLs, the user sees external ones (streamed, gzip included).
import t from 'tap';
import { createServer } from 'node:http';
import { gzipSync, gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { startHarness } from './helpers/harness.js';

t.test('translation', async (t) => {
  let origin = '';
  const backend = createServer((req, res) => {
    req.resume();
    const url = req.url ?? '';
    if (url.startsWith('/base/redirect')) {
      res.writeHead(302, {
        location: `${origin}/base/landing?x=1`,
        'set-cookie': ['a=1; Path=/base/; Domain=127.0.0.1', 'b=2; Path=/base/deep'],
      });
      return void res.end();
    }
    if (url.startsWith('/base/page')) {
      const html =
        `<html><head><link rel="stylesheet" href="${origin}/base/s.css"></head><body><a href="${origin}/base/next">n</a>` +
        `<img srcset="${origin}/base/a.png 1x, ${origin}/base/b.png 2x"><a href="${origin}/other/x">other app</a><a href="http://unpublished.internal/">u</a></body></html>`;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-encoding': 'gzip' });
      return void res.end(gzipSync(html));
    }
    if (url.startsWith('/base/s.css')) {
      res.writeHead(200, { 'content-type': 'text/css' });
      return void res.end(`body{background:url("${origin}/base/bg.png")}`);
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`plain ${origin}/base/untouched`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  origin = `http://127.0.0.1:${(backend.address() as { port: number }).port}`;
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: tr, externalUrl: "https://tr.test/app/", internalUrl: "${origin}/base/", preauth: passthrough, translateLinks: true }
  - { name: other, externalUrl: "https://other.test/", internalUrl: "${origin}/other/", preauth: passthrough }
  - { name: raw, externalUrl: "https://raw.test/", internalUrl: "${origin}/base/", preauth: passthrough, translateHeaders: false }
`,
  });
  await h.addConnector();

  const redirect = await request(h.url('tr.test', '/app/redirect'), { dispatcher: h.client });
  t.equal(redirect.statusCode, 302);
  t.equal(redirect.headers['location'], 'https://tr.test/app/landing?x=1', 'Location rewritten');
  t.same(
    redirect.headers['set-cookie'],
    ['a=1; Path=/app/', 'b=2; Path=/app/deep'],
    'cookie path remapped, internal IP domain dropped',
  );
  await redirect.body.dump();

  const page = await request(h.url('tr.test', '/app/page'), { dispatcher: h.client });
  t.equal(page.headers['content-encoding'], 'gzip', 'encoding kept');
  t.notOk(page.headers['content-length'], 'length dropped (the body changed)');
  const html = gunzipSync(Buffer.from(await page.body.arrayBuffer())).toString();
  t.match(html, 'href="https://tr.test/app/s.css"');
  t.match(html, 'href="https://tr.test/app/next"');
  t.match(html, 'srcset="https://tr.test/app/a.png 1x, https://tr.test/app/b.png 2x"');
  t.match(html, 'href="https://other.test/x"', 'links to another published app');
  t.match(html, 'href="http://unpublished.internal/"', 'unpublished hosts untouched');
  t.notMatch(html, origin, 'no internal URL left');

  const css = await request(h.url('tr.test', '/app/s.css'), { dispatcher: h.client });
  t.equal(await css.body.text(), 'body{background:url("https://tr.test/app/bg.png")}');
  const plain = await request(h.url('tr.test', '/app/plain'), { dispatcher: h.client });
  t.equal(await plain.body.text(), `plain ${origin}/base/untouched`, 'other content types pass through');

  const raw = await request(h.url('raw.test', '/redirect'), { dispatcher: h.client });
  t.equal(raw.headers['location'], `${origin}/base/landing?x=1`, 'translateHeaders: false leaves headers alone');
  await raw.body.dump();
});
