// The benchmark's nginx reference arms (issue 22), for bench/run.mjs. Debian's
// nginx (/usr/sbin/nginx), each instance from a config written into a temporary
// directory of its own (pid, logs, temp paths there too: works as root and not),
// run in the foreground:  nginx -p DIR -c DIR/nginx.conf -e DIR/error.log -g 'daemon off;'
//
//   nginx1  one hop: TLS in, keep-alive HTTP/1.1 upstream to the backend, worker_processes auto.
//   nginx2  proxyctl's topology: a TLS edge -> mutual-TLS keep-alive upstream -> a second
//           nginx that verifies the client certificate -> backend; one worker each, no
//           buffering on either hop. Its CA, server and client certificates are made per run
//           with the openssl CLI.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const NGINX = '/usr/sbin/nginx';
/** The name the inner nginx's certificate is issued for; the edge verifies it. */
export const INNER_NAME = 'inner.bench.internal';

/** nginx's version ("1.22.1"), or undefined when it is not installed. */
export function nginxVersion() {
  if (!existsSync(NGINX)) return undefined;
  const r = spawnSync(NGINX, ['-v'], { encoding: 'utf8' });
  return /nginx\/([\d.]+)/.exec(`${r.stderr}${r.stdout}`)?.[1];
}

/** `http2 on` is a directive from nginx 1.25.1; before it HTTP/2 is a `listen` parameter. */
function atLeast(version, want) {
  const a = version.split('.').map(Number);
  const b = want.split('.').map(Number);
  for (let i = 0; i < b.length; i++) if ((a[i] ?? 0) !== b[i]) return (a[i] ?? 0) > b[i];
  return true;
}

/** A port free right now on 127.0.0.1 (nginx cannot listen on port 0 and say which port it got). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A CA, a server certificate for the inner nginx and a client certificate for the
 * edge, P-256 (as proxyctl's control channel), made with the openssl CLI into `dir`.
 */
export function makeMtlsCerts(dir) {
  mkdirSync(dir, { recursive: true });
  const f = (name) => path.join(dir, name);
  const ossl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const key = (name) => ossl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(name));
  key('ca-key.pem');
  ossl(
    'req',
    '-x509',
    '-new',
    '-key',
    f('ca-key.pem'),
    '-subj',
    '/CN=proxyctl bench nginx CA',
    '-days',
    '2',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    f('ca.pem'),
  );
  const leaf = (name, cn, ext) => {
    key(`${name}-key.pem`);
    ossl('req', '-new', '-key', f(`${name}-key.pem`), '-subj', `/CN=${cn}`, '-out', f(`${name}.csr`));
    writeFileSync(f(`${name}.ext`), ext);
    ossl(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f('ca.pem'),
      '-CAkey',
      f('ca-key.pem'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f(`${name}.ext`),
      '-out',
      f(`${name}.pem`),
    );
  };
  leaf(
    'inner',
    INNER_NAME,
    `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${INNER_NAME}\n`,
  );
  leaf(
    'edge-client',
    'bench-edge',
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
  );
  return {
    ca: f('ca.pem'),
    innerCert: f('inner.pem'),
    innerKey: f('inner-key.pem'),
    clientCert: f('edge-client.pem'),
    clientKey: f('edge-client-key.pem'),
  };
}

/** The `http` block's common part: temp paths in `dir`, logs, TLS versions, long keep-alive. */
function httpCommon(dir, accessLog) {
  const tmp = (name) => path.join(dir, 'tmp', name);
  return `  access_log ${accessLog ? path.join(dir, 'access.log') : 'off'};
  client_body_temp_path ${tmp('body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};
  # The load generators keep their connections for the whole run, as they do with the relay.
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:bench:10m;
  client_max_body_size 0;
  sendfile off;
  tcp_nodelay on;`;
}

/** The `proxy_*` lines of a location: HTTP/1.1 keep-alive upstream and the forwarding headers the relay sets too. */
function proxyLines(upstream, buffering) {
  return `      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
      proxy_read_timeout 180s;
      proxy_send_timeout 180s;
      proxy_request_buffering off;
      proxy_buffering ${buffering ? 'on' : 'off'};
      proxy_max_temp_file_size 0;`;
}

function mainBlock(dir, workers) {
  // As root nginx would run its workers as `nobody`, who cannot use this root-owned temp directory.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes ${workers};
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 16384; }
`;
}

const ROBOTS = `    location = /robots.txt { default_type text/plain; return 200 "User-agent: *\\nDisallow: /\\n"; }`;

/**
 * nginx one hop: TLS (the relay's certificate) on `port`, and on `h2Port` the same with HTTP/2,
 * keep-alive upstream (`keepalive 64`) to the backend. Response buffering is nginx's default (on),
 * in memory only (no temp file); request buffering off (a 1 GiB upload would go to disk).
 */
export function nginx1Conf({ dir, version, port, h2Port, backendPort, cert, key, accessLog }) {
  const h2 = atLeast(version, '1.25.1');
  const server = (p, http2) => `  server {
    listen 127.0.0.1:${p} ssl${http2 && !h2 ? ' http2' : ''};
${http2 && h2 ? '    http2 on;\n' : ''}    ssl_certificate ${cert};
    ssl_certificate_key ${key};
${ROBOTS}
    location / {
${proxyLines('http://backend', true)}
    }
  }`;
  return `${mainBlock(dir, 'auto')}http {
${httpCommon(dir, accessLog)}
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
${server(port, false)}
${server(h2Port, true)}
}
`;
}

/** nginx2's edge: TLS in, mutual TLS out to the inner nginx (verified by name and CA), keep-alive, no buffering. */
export function nginx2EdgeConf({ dir, port, innerPort, cert, key, mtls, accessLog }) {
  return `${mainBlock(dir, 1)}http {
${httpCommon(dir, accessLog)}
  upstream inner {
    server 127.0.0.1:${innerPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
${ROBOTS}
    location / {
${proxyLines('https://inner', false)}
      proxy_ssl_certificate ${mtls.clientCert};
      proxy_ssl_certificate_key ${mtls.clientKey};
      proxy_ssl_trusted_certificate ${mtls.ca};
      proxy_ssl_verify on;
      proxy_ssl_name ${INNER_NAME};
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.3;
    }
  }
}
`;
}

/** nginx2's inner hop: mutual TLS in (ssl_verify_client on), keep-alive plain HTTP to the backend, no buffering. */
export function nginx2InnerConf({ dir, port, backendPort, mtls, accessLog }) {
  return `${mainBlock(dir, 1)}http {
${httpCommon(dir, accessLog)}
  upstream backend {
    server 127.0.0.1:${backendPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name ${INNER_NAME};
    ssl_certificate ${mtls.innerCert};
    ssl_certificate_key ${mtls.innerKey};
    ssl_client_certificate ${mtls.ca};
    ssl_verify_client on;
    location / {
${proxyLines('http://backend', false)}
    }
  }
}
`;
}

/** The pids whose parent is `pid` (nginx's workers). */
export function childPids(pid) {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * Writes `conf` into `dir` and starts nginx on it in the foreground; resolves once every
 * port in `ports` accepts connections. `track` registers the child for cleanup.
 * Returns { child, dir, pids() } where pids() names master and workers for CPU accounting.
 */
export async function startNginx({ name, dir, conf, ports, track }) {
  mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const confFile = path.join(dir, 'nginx.conf');
  writeFileSync(confFile, conf);
  const errorLog = path.join(dir, 'error.log');
  // As the relay: a raised descriptor limit (the workers inherit it); `exec` keeps the pid.
  const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"';
  const child = track(
    spawn('bash', ['-c', script, NGINX, '-p', `${dir}/`, '-c', confFile, '-e', errorLog, '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  let stderr = '';
  child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  const deadline = Date.now() + 15_000;
  for (const port of ports) {
    while (!(await canConnect(port))) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        const log = existsSync(errorLog) ? readFileSync(errorLog, 'utf8').slice(-2000) : '';
        throw new Error(`${name} did not start (port ${port}):\n${stderr}\n${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    name,
    child,
    dir,
    pids() {
      const workers = childPids(child.pid);
      return Object.fromEntries([[`${name}`, child.pid], ...workers.map((pid, i) => [`${name}-w${i + 1}`, pid])]);
    },
  };
}
