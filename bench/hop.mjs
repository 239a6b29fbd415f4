// One hop of the benchmark's floor path: a TLS listener that forwards the bytes
// of each connection, unread and unchanged, to one upstream connection (TLS or
// plain TCP), both ways, with Node's stream pipes. Two of these between the
// load generator and the backend cross the same TLS hops, loopback sockets and
// processes as user -> relay -> connector -> backend, with none of the work of
// HTTP, routing, policy or the control channel: what Node's TLS and sockets
// alone cost on this machine.
//
//   node bench/hop.mjs '{"to":PORT,"cert":FILE,"key":FILE,"upstreamTls":{"ca":FILE,"servername":NAME}}'
//
// Without upstreamTls the upstream is plain TCP. TLS settings are proxyctl's
// own (src/crypto/tls-policy.ts), so the floor pays for the same ciphers.
// Prints {"msg":"hop ready","port":N} on stdout when listening.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { CLIENT_TLS, SERVER_TLS } from '../dist/crypto/tls-policy.js';

const opts = JSON.parse(process.argv[2] ?? '{}');
const upstream = opts.upstreamTls
  ? () =>
      tls.connect({
        host: '127.0.0.1',
        port: opts.to,
        ...CLIENT_TLS,
        ca: readFileSync(opts.upstreamTls.ca),
        servername: opts.upstreamTls.servername,
      })
  : () => net.connect({ host: '127.0.0.1', port: opts.to });

const server = tls.createServer(
  { ...SERVER_TLS, cert: readFileSync(opts.cert), key: readFileSync(opts.key) },
  (down) => {
    const up = upstream();
    down.setNoDelay(true);
    up.setNoDelay(true);
    down.pipe(up);
    up.pipe(down);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
  },
);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'hop ready', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
