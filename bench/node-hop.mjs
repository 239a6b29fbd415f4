// One hop of the benchmark's "Node two hops" arm (node2): proxyctl's topology built
// from Node's own HTTP stack and nothing else, as nginx2 builds it from nginx. An
// HTTPS server (node:https, proxyctl's TLS settings) that forwards each request with a
// keep-alive undici Pool and streams the answer back: no routing, policy, logging,
// control channel or queue. Two of them, TLS edge -> mutual TLS -> inner -> plain
// HTTP backend, are what a Node implementation of this topology costs before any
// proxyctl code: the reference for how far the relay path is from Node's own floor.
//
//   node bench/node-hop.mjs '{"to":"http://127.0.0.1:PORT","cert":F,"key":F,
//                             "clientCa":F,              (require and verify client certificates)
//                             "upstreamTls":{"ca":F,"cert":F,"key":F,"servername":NAME}}'
//
// Prints {"msg":"node hop ready","port":N} on stdout when listening.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { pipeline } from 'node:stream';
import { Pool, buildConnector } from 'undici';
import { SERVER_TLS, CLIENT_TLS } from '../dist/crypto/tls-policy.js';
import { tuneHeapForStreaming } from '../dist/heap-tuning.js';

tuneHeapForStreaming();
const opts = JSON.parse(process.argv[2] ?? '{}');
const up = opts.upstreamTls;
/** TLS to the inner hop, verified by its own name whatever Host the request carries (nginx2: proxy_ssl_name). */
const tlsConnect = up
  ? buildConnector({
      ...CLIENT_TLS,
      ca: readFileSync(up.ca),
      cert: readFileSync(up.cert),
      key: readFileSync(up.key),
    })
  : undefined;
const pool = new Pool(opts.to, {
  connections: 128,
  pipelining: 1,
  keepAliveTimeout: 60_000,
  ...(tlsConnect ? { connect: (o, cb) => tlsConnect({ ...o, servername: up.servername }, cb) } : {}),
});

/** Hop-by-hop fields (RFC 9110 §7.6.1) are not forwarded. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

const server = https.createServer(
  {
    ...SERVER_TLS,
    cert: readFileSync(opts.cert),
    key: readFileSync(opts.key),
    keepAliveTimeout: 65_000,
    ...(opts.clientCa ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(opts.clientCa) } : {}),
  },
  (req, res) => {
    const raw = req.rawHeaders;
    const headers = [];
    for (let i = 0; i < raw.length; i += 2) {
      if (HOP.has(raw[i].toLowerCase())) continue;
      headers.push(raw[i], raw[i + 1]);
    }
    // What nginx2 and the relay add too.
    headers.push('x-forwarded-for', req.socket.remoteAddress, 'x-forwarded-proto', 'https');
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.request({ path: req.url, method: req.method, headers, body: hasBody ? req : null }, (err, answer) => {
      if (err) {
        process.stderr.write(`node hop: ${req.method} ${req.url}: ${err.message}\n`);
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
        return;
      }
      const out = {};
      for (const [k, v] of Object.entries(answer.headers)) if (!HOP.has(k)) out[k] = v;
      res.writeHead(answer.statusCode, out);
      pipeline(answer.body, res, () => undefined);
    });
    if (!hasBody) req.resume();
  },
);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'node hop ready', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
