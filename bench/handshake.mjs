// New-connection TLS handshakes per second, for bench/run.mjs (issue 22), in a process
// of its own:
//   node bench/handshake.mjs '{"port":N,"host":NAME,"ca":FILE,"seconds":S,"concurrency":C,"resume":BOOL}'
// `concurrency` loops, each: connect (TLS, certificate verified against `ca`, SNI `host`),
// send `GET /robots.txt` with `Connection: close`, read the answer, close; again, for
// `seconds`. With `resume` each new connection offers the latest session (ticket) the
// server handed out, as a browser does; whether the server took it is read from
// isSessionReused(), never assumed. Prints one JSON line:
//   {"msg":"result","connections":N,"perSecond":X,"resumed":N,"failed":N,"firstError":...}
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const opts = JSON.parse(process.argv[2] ?? '{}');
const ca = readFileSync(opts.ca);
const request = Buffer.from(`GET /robots.txt HTTP/1.1\r\nhost: ${opts.host}\r\nconnection: close\r\n\r\n`);

/** The newest session the server gave any connection (TLS 1.3 sends tickets after the handshake). */
let session;
let connections = 0;
let resumed = 0;
let failed = 0;
let firstError;

function once() {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: opts.port,
      ca,
      servername: opts.host,
      ALPNProtocols: ['http/1.1'],
      ...(opts.resume && session ? { session } : {}),
    });
    let head = '';
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      if (err) {
        failed++;
        firstError ??= err.message;
      } else {
        connections++;
        if (socket.isSessionReused()) resumed++;
      }
      socket.destroy();
      resolve();
    };
    if (opts.resume) socket.on('session', (s) => (session = s));
    socket.setTimeout(10_000, () => finish(new Error('timeout')));
    socket.once('secureConnect', () => socket.write(request));
    socket.on('data', (d) => {
      if (head.length < 16) head += d.toString('latin1', 0, 16);
    });
    socket.on('end', () =>
      finish(head.startsWith('HTTP/1.1 200') ? undefined : new Error(`answered ${JSON.stringify(head.slice(0, 16))}`)),
    );
    socket.on('error', (err) => finish(err));
  });
}

const until = performance.now() + opts.seconds * 1000;
const t0 = performance.now();
await Promise.all(
  Array.from({ length: opts.concurrency }, async () => {
    while (performance.now() < until) await once();
  }),
);
const seconds = (performance.now() - t0) / 1000;
process.stdout.write(
  `${JSON.stringify({ msg: 'result', connections, seconds, perSecond: connections / seconds, resumed, failed, firstError })}\n`,
);
process.exit(0);
