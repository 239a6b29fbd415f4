// Debian's Pebble (ACME test CA) with pebble-challtestsrv as its DNS server, for the
// ACME tests: every name resolves to 127.0.0.1 (no AAAA) unless a test adds an A
// record. Pebble validates HTTP-01 on `httpPort` and TLS-ALPN-01 on `tlsPort` of
// 127.0.0.1: the ports a test's relay listens on. Each piece is killed at teardown.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { caFromPem, generateCa } from '../../src/crypto/ca.js';
import { waitFor } from './wait.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A port nobody listens on now (Pebble's configuration needs numbers before the relay binds). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function spawnUntil(cmd: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<ChildProcess> {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let seen = '';
    const look = (d: Buffer) => {
      seen += d.toString();
      if (ready.test(seen)) resolve(child);
    };
    child.stdout.on('data', look);
    child.stderr.on('data', look);
    child.once('exit', (code) => reject(new Error(`${cmd} exited (${code}): ${seen.slice(-2000)}`)));
  });
}

function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/** GET over HTTPS trusting `ca` (Pebble's management API). */
function httpsGet(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
    req.end();
  });
}

function post(url: string, body: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

export interface Pebble {
  /** The directory URL for `acme.directory`. */
  directory: string;
  /** Written into `dir`: the CA of Pebble's own HTTPS certificate, for `acme.caFile`. */
  caFile: string;
  /** Starts Pebble itself (tests start the relay first to see it retry). */
  start(): Promise<void>;
  /** The root Pebble signs issued certificates with (PEM), once started. */
  root(): Promise<string>;
  /** Resolves `host` to `address` instead of 127.0.0.1. */
  addA(host: string, address: string): Promise<void>;
}

/** Configures Pebble for the relay ports given and starts its DNS server; `start()` starts Pebble. */
export async function preparePebble(
  t: Teardown,
  dir: string,
  ports: { httpPort: number; tlsPort: number },
): Promise<Pebble> {
  const [acmePort, mgmtPort, dnsPort, dnsMgmtPort] = (await Promise.all(
    Array.from({ length: 4 }, () => freePort()),
  )) as [number, number, number, number];
  // Pebble's own HTTPS certificate, from a throwaway CA the relay is told to trust (acme.caFile).
  const tlsCa = await generateCa();
  const pebbleTls = await (
    await caFromPem(tlsCa.certPem, tlsCa.keyPem, 'test')
  ).issueServerCertificate(['127.0.0.1', 'localhost'], 86_400_000);
  const caFile = path.join(dir, 'pebble-ca.pem');
  writeFileSync(caFile, tlsCa.certPem);
  writeFileSync(path.join(dir, 'pebble-cert.pem'), pebbleTls.certPem);
  writeFileSync(path.join(dir, 'pebble-key.pem'), pebbleTls.keyPem);
  writeFileSync(
    path.join(dir, 'pebble.json'),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: path.join(dir, 'pebble-cert.pem'),
        privateKey: path.join(dir, 'pebble-key.pem'),
        // Where the validation authority connects: the relay's HTTP and public listeners.
        httpPort: ports.httpPort,
        tlsPort: ports.tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const dns = await spawnUntil(
    'pebble-challtestsrv',
    [
      '-dns01',
      `127.0.0.1:${dnsPort}`,
      '-management',
      `127.0.0.1:${dnsMgmtPort}`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-defaultIPv6',
      '',
    ],
    {},
    /Starting management server/,
  );
  t.teardown(() => stop(dns));
  let root: string | undefined;
  return {
    directory: `https://127.0.0.1:${acmePort}/dir`,
    caFile,
    async start() {
      const pebble = await spawnUntil(
        'pebble',
        ['-config', path.join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`],
        { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
        /ACME directory available/,
      );
      t.teardown(() => stop(pebble));
    },
    async root() {
      // Pebble says its directory is up before its management listener is: ask until it answers.
      root ??= await waitFor(() => httpsGet(`https://127.0.0.1:${mgmtPort}/roots/0`, tlsCa.certPem).catch(() => ''), {
        timeoutMs: 10_000,
        what: "Pebble's management API",
      });
      return root;
    },
    async addA(host, address) {
      const status = await post(`http://127.0.0.1:${dnsMgmtPort}/add-a`, { host: `${host}.`, addresses: [address] });
      if (status !== 200) throw new Error(`pebble-challtestsrv add-a answered ${status}`);
    },
  };
}

/** The certificate the listener on `port` presents for `servername`, and whether it verifies against `ca`. */
export function peerCert(
  port: number,
  servername: string,
  ca: string,
): Promise<{ serial: string; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false }, () => {
      const c = s.getPeerX509Certificate();
      resolve({ serial: c?.serialNumber ?? '', authorized: s.authorized && !!c?.checkHost(servername) });
      s.destroy();
    });
    s.on('error', reject);
  });
}
