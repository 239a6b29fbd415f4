// The internal app the benchmark publishes: plain HTTP on 127.0.0.1, its own process.
//   GET  /small                 a short text body (the small-GET test)
//   GET  /headers               the request headers as JSON (what the relay forwarded)
//   GET  /download?bytes=N      N bytes, streamed from one reused buffer with back-pressure
//   POST /upload                consumes the body, answers {"bytes":N}
// Prints one JSON line {"msg":"backend ready","port":N} on stdout when listening.
import http from 'node:http';

const SMALL = Buffer.from('hello from the proxyctl benchmark backend\n');
const CHUNK = Buffer.alloc(64 * 1024, 'x');

const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
  const url = new URL(req.url ?? '/', 'http://backend');
  if (req.method === 'GET' && url.pathname === '/small') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL.length });
    res.end(SMALL);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/headers') {
    // The request headers as received: the bench checks what the relay adds (identity headers).
    const body = JSON.stringify(req.headers);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/download') {
    const total = Number(url.searchParams.get('bytes') ?? 0);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
    let left = total;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        const ok = res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n));
        if (!ok) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    res.on('close', () => {
      left = 0;
    });
    pump();
    return;
  }
  if (req.method === 'POST' && url.pathname === '/upload') {
    let bytes = 0;
    req.on('data', (c) => {
      bytes += c.length;
    });
    req.on('end', () => {
      const body = JSON.stringify({ bytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    req.on('error', () => res.destroy());
    return;
  }
  req.resume();
  res.writeHead(404, { 'content-length': 0 });
  res.end();
});

server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'backend ready', port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
