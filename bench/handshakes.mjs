// New TLS connections per second on the relay's public listener, full handshakes and
// resumed ones (session tickets, public.ticketRotation), beside nginx serving the same
// certificate with tickets on (one worker). Two relay replicas share one data directory:
// the resumed runs take their ticket from replica a and resume on replica b, as a client
// moved by a load balancer would. Each connection: handshake, then close (no request).
//
//   npm run build && node bench/handshakes.mjs [--seconds 5] [--clients 2] [--loops 8] [--keep]
//
// Figures: connections per second (the client processes bound it on a small machine) and
// the server's CPU milliseconds per connection (from /proc: what a handshake costs the
// server, which contention moves far less than the rate).
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
};
const HOST = 'app.test';

// ------------------------------------------------------------ client mode (a child process)

if (argv[0] === '--client') {
  const [, port, caFile, sessionHex, maxVersion, seconds, loops] = argv;
  const ca = readFileSync(caFile);
  const session = sessionHex ? Buffer.from(sessionHex, 'hex') : undefined;
  const started = performance.now();
  const end = Date.now() + Number(seconds) * 1000;
  let n = 0;
  let reused = 0;
  const one = () =>
    new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: Number(port), servername: HOST, ca, maxVersion, session });
      s.once('secureConnect', () => {
        if (s.isSessionReused()) reused++;
        s.destroy();
        resolve();
      });
      s.once('error', reject);
    });
  await Promise.all(
    Array.from({ length: Number(loops) }, async () => {
      while (Date.now() < end) {
        await one();
        n++;
      }
    }),
  );
  process.stdout.write(JSON.stringify({ n, reused, seconds: (performance.now() - started) / 1000 }));
  process.exit(0);
}

// ------------------------------------------------------------ orchestration

const SECONDS = Number(flag('seconds', '5'));
const CLIENTS = Number(flag('clients', '2'));
const LOOPS = Number(flag('loops', '8'));
const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-handshakes-'));
const children = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGTERM');
  if (!argv.includes('--keep')) rmSync(dir, { recursive: true, force: true });
});

const cpuSeconds = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

async function startRelay(name) {
  writeFileSync(
    path.join(dir, `${name}.yaml`),
    `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "https://idp.invalid" }
limits: { perIp: false, connectionsPerIp: 100000 }
apps:
  - { name: app, externalUrl: "https://${HOST}/", internalUrl: "http://127.0.0.1:1/", preauth: passthrough }
`,
  );
  const child = spawn(
    process.execPath,
    [path.join(HERE, '..', 'bin', 'proxyctl.js'), 'relay', 'serve', '--config', path.join(dir, `${name}.yaml`)],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  children.push(child);
  let text = '';
  child.stderr.setEncoding('utf8');
  for await (const chunk of child.stderr) {
    text += chunk;
    const m = /"listen":\{"host":"[^"]+","port":(\d+)\},"msg":"public listener ready"/.exec(text);
    if (m) {
      child.stderr.resume();
      return { pid: child.pid, port: Number(m[1]) };
    }
  }
  throw new Error(`relay ${name} did not start:\n${text}`);
}

async function startNginx() {
  if (spawnSync('nginx', ['-v']).error) {
    console.log('nginx: not installed (apt-get install nginx); its rows are skipped');
    return undefined;
  }
  const ng = path.join(dir, 'nginx');
  spawnSync('mkdir', ['-p', ng]);
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  writeFileSync(
    path.join(ng, 'nginx.conf'),
    `worker_processes 1;
daemon off;
pid ${ng}/nginx.pid;
error_log ${ng}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${ng}; proxy_temp_path ${ng}; fastcgi_temp_path ${ng}; uwsgi_temp_path ${ng}; scgi_temp_path ${ng};
  server {
    listen 127.0.0.1:${port} ssl;
    server_name ${HOST};
    ssl_certificate ${dir}/data/tls/public-cert.pem;
    ssl_certificate_key ${dir}/data/tls/public-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets on;
    ssl_session_timeout 12h;
    location / { return 200 "ok\\n"; }
  }
}
`,
  );
  const child = spawn('nginx', ['-c', path.join(ng, 'nginx.conf'), '-p', ng], { stdio: 'ignore' });
  children.push(child);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const worker = spawnSync('pgrep', ['-P', String(child.pid)])
      .stdout.toString()
      .trim()
      .split('\n')[0];
    if (worker) return { pid: Number(worker), port };
  }
  throw new Error('nginx did not start');
}

/** A session ticket from the server at `port`. */
async function ticketFrom(port, maxVersion) {
  const s = connect({
    host: '127.0.0.1',
    port,
    servername: HOST,
    ca: readFileSync(path.join(dir, 'data', 'ca.pem')),
    maxVersion,
  });
  let session;
  s.on('session', (x) => (session ??= x));
  await once(s, 'secureConnect');
  s.write(`GET / HTTP/1.1\r\nhost: ${HOST}\r\nconnection: close\r\n\r\n`);
  s.resume();
  await once(s, 'end');
  s.destroy();
  return session;
}

async function measure(server, session, maxVersion) {
  const c0 = cpuSeconds(server.pid);
  const runs = Array.from({ length: CLIENTS }, () => {
    const child = spawn(
      process.execPath,
      [
        fileURLToPath(import.meta.url),
        '--client',
        String(server.port),
        path.join(dir, 'data', 'ca.pem'),
        session ? session.toString('hex') : '',
        maxVersion,
        String(SECONDS),
        String(LOOPS),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    return (async () => {
      let out = '';
      for await (const chunk of child.stdout) out += chunk;
      return JSON.parse(out);
    })();
  });
  const results = await Promise.all(runs);
  const cpu = cpuSeconds(server.pid) - c0;
  const n = results.reduce((a, r) => a + r.n, 0);
  const reused = results.reduce((a, r) => a + r.reused, 0);
  // Each client's own loop time: process start-up is not counted against the server.
  const rate = results.reduce((a, r) => a + r.n / r.seconds, 0);
  return { rate, cpuMs: (cpu * 1000) / n, n, reused };
}

const a = await startRelay('a');
const b = await startRelay('b');
const nginx = await startNginx();
console.log(
  `${CLIENTS} client processes × ${LOOPS} loops, ${SECONDS} s per row; CPU: the server process's, per connection`,
);
for (const maxVersion of ['TLSv1.3', 'TLSv1.2']) {
  const rows = [
    ['relay, full', b, undefined],
    ['relay, resumed (ticket from a, on b)', b, await ticketFrom(a.port, maxVersion)],
    ...(nginx
      ? [
          ['nginx, full', nginx, undefined],
          ['nginx, resumed', nginx, await ticketFrom(nginx.port, maxVersion)],
        ]
      : []),
  ];
  for (const [name, server, session] of rows) {
    const r = await measure(server, session, maxVersion);
    console.log(
      `${maxVersion} ${name.padEnd(38)} ${r.rate.toFixed(0).padStart(6)} conn/s  ${r.cpuMs.toFixed(3)} ms CPU/conn  (resumed ${r.reused}/${r.n})`,
    );
  }
}
process.exit(0);
