// The syslog receiver of the benchmark's export test: a TCP server on 127.0.0.1 that
// takes RFC 6587 octet-counted frames (`<byte length> <RFC 5424 record>`), as the
// relay's syslog sink sends them, and counts records and distinct event ids (the `id`
// parameter of the `[proxyctl@32473 …]` structured data, src/export/format.ts).
//
//   node bench/syslog-sink.mjs
//
// Prints {"msg":"sink ready","port":N} on stdout when listening. Each `report` line on
// stdin, and SIGTERM (then it exits), print
//   {"msg":"report","records":N,"distinct":N,"bytes":N,"connections":N,"malformed":N,
//    "ids":{"signin":[[first,last],…],"audit":[…],"risk":[…]}}
// where `ids` lists the distinct ids received per kind as ranges, so a reader can tell
// whether every id of a span arrived without shipping each one.
import net from 'node:net';
import { createInterface } from 'node:readline';

const SD = /\[proxyctl@32473 id="((?:[^"\\\]]|\\.)*)"/;
/** A frame longer than this is not a syslog record from proxyctl: the connection is dropped. */
const MAX_FRAME = 1024 * 1024;
const SPACE = 0x20;

let records = 0;
let bytes = 0;
let connections = 0;
let malformed = 0;
/** kind ("signin", "audit", "risk") -> the numbers received. */
const seen = new Map();

function record(text) {
  records++;
  const m = SD.exec(text);
  const id = m?.[1].replace(/\\(.)/g, '$1');
  const parts = id && /^([a-z]+)-(\d+)$/.exec(id);
  if (!parts) {
    malformed++;
    return;
  }
  let set = seen.get(parts[1]);
  if (!set) seen.set(parts[1], (set = new Set()));
  set.add(Number(parts[2]));
}

const server = net.createServer((socket) => {
  connections++;
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    bytes += chunk.length;
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const sp = buf.indexOf(SPACE, at);
      if (sp < 0) {
        if (buf.length - at > 8) return bad(socket); // a length has at most 7 digits here
        break;
      }
      const digits = buf.toString('latin1', at, sp);
      if (!/^[1-9]\d{0,6}$/.test(digits) || Number(digits) > MAX_FRAME) return bad(socket);
      const len = Number(digits);
      if (buf.length < sp + 1 + len) break;
      record(buf.toString('utf8', sp + 1, sp + 1 + len));
      at = sp + 1 + len;
    }
    buf = buf.subarray(at);
  });
  socket.on('error', () => undefined);
});

function bad(socket) {
  malformed++;
  socket.destroy();
}

/** Sorted numbers as [first, last] runs. */
function ranges(set) {
  const xs = [...set].sort((a, b) => a - b);
  const out = [];
  for (const x of xs) {
    const last = out[out.length - 1];
    if (last && x === last[1] + 1) last[1] = x;
    else out.push([x, x]);
  }
  return out;
}

function report() {
  let distinct = 0;
  const ids = {};
  for (const [kind, set] of seen) {
    distinct += set.size;
    ids[kind] = ranges(set);
  }
  process.stdout.write(`${JSON.stringify({ msg: 'report', records, distinct, bytes, connections, malformed, ids })}\n`);
}

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ msg: 'sink ready', port: server.address().port })}\n`);
});
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'report') report();
});
process.on('SIGTERM', () => {
  report();
  process.exit(0);
});
