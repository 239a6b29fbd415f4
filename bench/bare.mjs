// The idle test's floor: a bare Node HTTPS server, with proxyctl's TLS settings
// and heap tuning, that answers every request with a short 200. What an idle
// keep-alive TLS connection costs Node itself, before any proxyctl code.
//
//   node bench/bare.mjs '{"cert":FILE,"key":FILE[,"sni":true][,"h2":true]}'
//
// sni: an SNICallback handing every handshake one shared SecureContext, as the
// relay's listener does (bench/storm.mjs --server bare-sni). h2: a node:http2 secure
// server taking HTTP/2 (ALPN h2) and HTTP/1.1, as the relay's public listener does.
//
// Prints {"msg":"bare ready","port":N} on stdout when listening.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import http2 from 'node:http2';
import { createSecureContext } from 'node:tls';
import { SERVER_TLS } from '../dist/crypto/tls-policy.js';
import { tuneHeapForStreaming } from '../dist/heap-tuning.js';

tuneHeapForStreaming();
const opts = JSON.parse(process.argv[2] ?? '{}');
const BODY = Buffer.from('User-agent: *\nDisallow: /\n');
const tls = { ...SERVER_TLS, cert: readFileSync(opts.cert), key: readFileSync(opts.key) };
const sniContext = opts.sni ? createSecureContext(tls) : undefined;
const answer = (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': BODY.length });
  res.end(BODY);
};
const serverOptions = {
  ...tls,
  keepAliveTimeout: 65_000,
  ...(sniContext ? { SNICallback: (_name, cb) => cb(null, sniContext) } : {}),
};
const server = opts.h2
  ? http2.createSecureServer({ ...serverOptions, allowHTTP1: true }, answer)
  : https.createServer(serverOptions, answer);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'bare ready', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
