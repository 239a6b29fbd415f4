// The demo's internal application: a page that shows the identity the relay
// sent (plain headers and the verified-looking assertion's claims) and a form
// that POSTs, so a new user sees the whole path work end to end. Sign-out is a
// POST to the relay's /.proxyctl/logout from the app's own page (same origin).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import { escapeHtml } from '../http/render.js';

function page(req: IncomingMessage, posted?: { fields: [string, string][]; bytes: number }): string {
  const h = req.headers;
  const assertion = typeof h['x-proxyctl-jwt-assertion'] === 'string' ? h['x-proxyctl-jwt-assertion'] : undefined;
  let claims = '(none)';
  try {
    if (assertion) claims = JSON.stringify(decodeJwt(assertion), null, 2);
  } catch {
    claims = '(unreadable)';
  }
  const rows = [
    'x-proxyctl-user',
    'x-proxyctl-email',
    'x-proxyctl-groups',
    'x-forwarded-for',
    'x-forwarded-host',
    'x-forwarded-proto',
    'x-request-id',
  ]
    .map((k) => `<tr><th>${k}</th><td>${escapeHtml(String(h[k] ?? '—'))}</td></tr>`)
    .join('');
  const postedHtml = posted
    ? `<h2>You posted</h2><p>${posted.bytes} bytes</p><table>${posted.fields.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('')}</table>`
    : '';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>proxyctl demo app</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}th{text-align:left;padding-right:1rem;vertical-align:top}
pre{background:#f4f4f4;padding:1rem;overflow:auto}</style></head><body>
<h1>Hello, <span id="user">${escapeHtml(String(h['x-proxyctl-user'] ?? 'anonymous'))}</span></h1>
<p>This page is served by an internal app that only the connector can reach. The relay signed you in and told the app who you are.</p>
<h2>Identity headers received</h2><table>${rows}</table>
<h2>Signed assertion (X-Proxyctl-Jwt-Assertion) claims</h2><pre id="claims">${escapeHtml(claims)}</pre>
<h2>Try a POST</h2><form method="post" action="/submit"><input name="message" id="message" value="hello from the browser"> <button type="submit" id="send">Send</button></form>
${postedHtml}
<p><a href="/.proxyctl/me">Who am I (JSON)</a></p>
<form method="post" action="/.proxyctl/logout"><button type="submit" id="logout">Sign out</button></form>
</body></html>\n`;
}

export async function startSampleApp(): Promise<{ server: Server; url: string }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST' && req.url === '/submit') {
      let bytes = 0;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes <= 64 * 1024) chunks.push(c);
      });
      req.on('end', () => {
        const fields = [...new URLSearchParams(Buffer.concat(chunks).toString('utf8'))].slice(0, 50);
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(req, { fields, bytes }));
      });
      return;
    }
    req.resume();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(req));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}
