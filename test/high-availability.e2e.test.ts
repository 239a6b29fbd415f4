// High availability with real processes: PostgreSQL (behind a TCP link the test can
// cut, standing in for a database restart without disturbing other tests), three
// `proxyctl relay serve` replicas, HAProxy from Debian in TCP mode in front of their
// public listeners with health checks on /readyz, two connectors and a backend.
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import path from 'node:path';
import { Agent, request } from 'undici';
import { generateMasterKey } from '../src/crypto/master-key.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { startIdp } from './helpers/idp.js';
import { Proc, runCli, tempDir, type LogLine } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';

const HAPROXY = spawnSync('haproxy', ['-v']).status === 0;

/** A TCP link to PostgreSQL that can be cut (every connection dropped, new ones refused) and restored. */
async function pgLink(t: Test): Promise<{ port: number; cut(): void; restore(): void }> {
  const target = new URL(PG_URL);
  const sockets = new Set<Socket>();
  let up = true;
  const server: Server = createNetServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = netConnect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      up = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      up = true;
    },
  };
}

interface Replica {
  name: string;
  proc: Proc;
  publicPort: number;
  adminPort: number;
  apiUrl: string;
  file: string;
}

/** One connection for the file (subtests' schemas are dropped through it as they end). */
const admin = await pgAdmin(t);

t.test(
  'three replicas on PostgreSQL behind HAProxy',
  { skip: HAPROXY ? false : 'haproxy is not installed (apt-get install haproxy)' },
  async (t) => {
    const schema = freshSchema(t, admin, 'pxha');
    const link = await pgLink(t);
    const storeUrl = `postgres://postgres@127.0.0.1:${link.port}/${new URL(PG_URL).pathname.slice(1)}`;

    const backend = createHttpServer((req, res) => {
      req.resume();
      res.end(`hello ${req.url}`);
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    t.teardown(() => backend.close());
    const bport = (backend.address() as { port: number }).port;

    const idp = await startIdp();
    t.teardown(() => idp.close());
    const dir = tempDir(t);
    const keyFile = path.join(dir, 'master.key');
    writeFileSync(keyFile, generateMasterKey(), { mode: 0o600 });

    // The balancer's listening socket is made here and handed to HAProxy as fd 3: its port is known up front.
    const front = createNetServer();
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const lb = (front.address() as { port: number }).port;
    const origin = `https://web.test:${lb}`;
    idp.registerClient({
      clientId: 'urn:web',
      clientSecret: 's3cret',
      redirectUris: [`${origin}/.proxyctl/callback`],
      postLogoutRedirectUris: [`${origin}/.proxyctl/signed-out`],
    });
    idp.setUser('alice', { email: 'alice@example.com', name: 'Alice' });

    const yaml = (name: string, ports: { pub: number; api: number; admin: number }) => `dataDir: ./${name}
public: { listen: "127.0.0.1:${ports.pub}" }
connectorApi: { listen: "127.0.0.1:${ports.api}" }
admin: { listen: "127.0.0.1:${ports.admin}" }
store: { postgres: { url: "${storeUrl}", schema: ${schema} } }
secrets: { masterKeyFile: ./master.key }
identity: { issuer: "${idp.issuer}" }
connectors: { heartbeatInterval: 500ms }
limits: { perIp: false }
apps:
  - { name: web, externalUrl: "${origin}/", internalUrl: "http://127.0.0.1:${bport}/", clientId: "urn:web", clientSecret: s3cret, assignedUsers: [alice] }
  - { name: open, externalUrl: "https://open.test:${lb}/", internalUrl: "http://127.0.0.1:${bport}/open/", preauth: passthrough }
`;
    const startReplica = async (name: string, ports = { pub: 0, api: 0, admin: 0 }): Promise<Replica> => {
      const file = path.join(dir, `${name}.yaml`);
      writeFileSync(file, yaml(name, ports));
      const proc = new Proc(['relay', 'serve', '--config', file]);
      t.teardown(() => proc.stop('SIGKILL'));
      const apiUrl = String((await proc.waitMsg('connector API listening', 30_000))['url']);
      const publicPort = ((await proc.waitMsg('public listener ready'))['listen'] as { port: number }).port;
      const adminPort = (
        (await proc.waitMsg('admin listener ready (/healthz, /readyz, /metrics)'))['listen'] as { port: number }
      ).port;
      await proc.waitMsg('relay ready');
      return { name, proc, publicPort, adminPort, apiUrl, file };
    };
    // Started one after another: the first creates the schema, the CA and the keys the others read.
    const replicas: Replica[] = [];
    for (const name of ['r1', 'r2', 'r3']) replicas.push(await startReplica(name));
    const caPem = readFileSync(path.join(dir, 'r1', 'ca.pem'), 'utf8');
    t.equal(readFileSync(path.join(dir, 'r3', 'ca.pem'), 'utf8'), caPem, 'every replica has the one CA of the store');

    const cfg = path.join(dir, 'haproxy.cfg');
    writeFileSync(
      cfg,
      `global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend users
  bind fd@3
  default_backend relays
backend relays
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  option redispatch
  retries 3
  default-server inter 300ms fall 2 rise 1
${replicas.map((r) => `  server ${r.name} 127.0.0.1:${r.publicPort} check port ${r.adminPort}`).join('\n')}
${replicas.map((r) => `  server ${r.name}-any 127.0.0.1:${r.publicPort} backup`).join('\n')}
`,
    );
    const frontFd = (front as unknown as { _handle: { fd: number } })._handle.fd;
    const haproxy: ChildProcess = spawn('haproxy', ['-db', '-f', cfg], {
      stdio: ['ignore', 'ignore', 'pipe', frontFd],
    });
    let haproxyErr = '';
    haproxy.stderr!.on('data', (d: Buffer) => (haproxyErr += d.toString()));
    t.teardown(() => haproxy.kill('SIGKILL'));
    front.close(); // HAProxy holds the socket now

    // Connectors register with the first replica and learn the others.
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, await idp.adminToken());
    const connectors: Proc[] = [];
    for (const c of ['c1', 'c2']) {
      const reg = await runCli([
        'connector',
        'register',
        '--relay',
        replicas[0]!.apiUrl,
        '--token-file',
        tokenFile,
        '--relay-ca',
        path.join(dir, 'r1', 'ca.pem'),
        '--name',
        c,
        '--state-dir',
        path.join(dir, c),
      ]);
      t.equal(reg.code, 0, reg.stderr);
      const proc = new Proc(['connector', 'run', '--state-dir', path.join(dir, c)]);
      t.teardown(() => proc.stop('SIGKILL'));
      connectors.push(proc);
    }
    /** Open channels a replica holds for a connector, from its log. */
    const channels = (r: Replica, connectorId?: string) => {
      const mine = (l: LogLine) => connectorId === undefined || l['connector_id'] === connectorId;
      return (
        r.proc.lines.filter((l) => l.msg === 'connector channel open' && mine(l)).length -
        r.proc.lines.filter((l) => l.msg === 'connector channel closed' && mine(l)).length
      );
    };
    await waitFor(() => replicas.every((r) => channels(r) === 4), { timeoutMs: 20_000 });
    t.pass('each connector keeps 2 channels to each of the 3 replicas');

    const lookup = (_h: string, _o: unknown, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, [{ address: '127.0.0.1', family: 4 }]);
    const viaLb = new Agent({ connect: { ca: caPem, lookup } });
    t.teardown(() => viaLb.close());
    /** Straight to one replica, with the URL (Host, SNI, cookies) users see through the balancer. */
    const direct = (r: Replica) =>
      new Agent({
        connect: (opts, cb) => {
          const s = tlsConnect({
            host: '127.0.0.1',
            port: r.publicPort,
            servername: opts.servername ?? undefined,
            ca: caPem,
          });
          s.once('secureConnect', () => cb(null, s));
          s.once('error', (e: Error) => cb(e, null));
        },
      });
    const agents = replicas.map(direct);
    t.teardown(() => Promise.all(agents.map((a) => a.close())));
    const get = async (dispatcher: Agent, url: string, cookie?: string) => {
      const r = await request(url, { dispatcher, headers: cookie ? { cookie } : {} });
      return { status: r.statusCode, body: await r.body.text() };
    };
    await waitFor(
      async () => (await get(viaLb, `https://open.test:${lb}/x`).catch(() => ({ status: 0 }))).status === 200,
      {
        timeoutMs: 10_000,
      },
    );

    await t.test('a session made on one replica works on every replica; sign-out on one ends it on all', async (t) => {
      const sim = new BrowserSim(viaLb);
      t.equal((await sim.signIn(`${origin}/page`, 'alice')).status, 200, 'signed in through the balancer');
      const cookie = sim.jar.header(`web.test:${lb}`)!;
      for (const [i, a] of agents.entries()) {
        const r = await get(a, `${origin}/page`, cookie);
        t.equal(r.status, 200, `the cookie works on r${i + 1}`);
      }
      const out = await request(`${origin}/.proxyctl/logout`, {
        dispatcher: agents[1]!,
        method: 'POST',
        headers: { cookie, origin },
      });
      await out.body.dump();
      t.equal(out.statusCode, 303, 'signed out through r2');
      const started = Date.now();
      await waitFor(
        async () => {
          const s = await Promise.all(agents.map((a) => get(a, `${origin}/page`, cookie)));
          return s.every((r) => r.status === 302);
        },
        { timeoutMs: 1_000 },
      );
      t.ok(
        Date.now() - started <= 1_000,
        `the copied cookie was refused by all three within ${Date.now() - started} ms`,
      );
    });

    await t.test('a database outage: signed-in traffic flows, replicas recover by themselves', async (t) => {
      const sim = new BrowserSim(viaLb);
      t.equal((await sim.signIn(`${origin}/during`, 'alice')).status, 200);
      const cookie = sim.jar.header(`web.test:${lb}`)!;
      // A user browsing through a round-robin balancer has been seen by every replica.
      for (const a of agents) t.equal((await get(a, `${origin}/during`, cookie)).status, 200);
      link.cut();
      let failed = 0;
      let served = 0;
      const until = Date.now() + 3_000;
      while (Date.now() < until) {
        const results = await Promise.all(
          [viaLb, viaLb, ...agents].map((a) => get(a, `${origin}/during`, cookie).catch(() => ({ status: 0 }))),
        );
        for (const r of results)
          if (r.status === 200) served++;
          else failed++;
      }
      t.equal(failed, 0, `signed-in requests during the outage: ${served} served, ${failed} failed`);
      const ready = await request(`http://127.0.0.1:${replicas[0]!.adminPort}/readyz`);
      t.equal(ready.statusCode, 503, '/readyz says not ready while the store is unreachable');
      t.match(await ready.body.text(), /store/);
      const fresh = new BrowserSim(agents[0]!);
      const page = await fresh.follow(`${origin}/new`);
      t.equal(page.status, 503, 'a new sign-in is refused with 503');
      t.match(page.body, /cannot reach its database/);
      link.restore();
      await waitFor(
        async () =>
          (
            await Promise.all(
              replicas.map(async (r) => (await request(`http://127.0.0.1:${r.adminPort}/readyz`)).statusCode),
            )
          ).every((s) => s === 200),
        { timeoutMs: 15_000 },
      );
      t.pass('every replica is ready again without a restart');
      t.equal((await new BrowserSim(viaLb).signIn(`${origin}/after`, 'alice')).status, 200, 'sign-in works again');
    });

    await t.test('revoking a connector on one replica closes its channels on all three within 1 s', async (t) => {
      const id = String(
        connectors[1]!.lines.find((l) => l.msg === 'control channel open')?.['connector_id'] ??
          (await connectors[1]!.waitMsg('control channel open'))['connector_id'],
      );
      const started = Date.now();
      const r = await runCli(['relay', 'connectors', 'revoke', `name:c2`, '--config', replicas[2]!.file], {
        env: { PROXYCTL_MASTER_KEY: undefined },
      });
      t.equal(r.code, 0, r.stderr);
      await waitFor(() => replicas.every((x) => channels(x, id) === 0), { timeoutMs: 5_000 });
      // From the commit (the audit row's time) to the last channel closed (the relays' log times).
      const row = await admin.query<{ at: string }>(
        `SELECT at FROM ${schema}.audit WHERE action = 'connector.revoke' ORDER BY id DESC LIMIT 1`,
      );
      const committed = Number(row.rows[0]!.at);
      const closedAt = replicas.map((x) =>
        Math.max(
          ...x.proc.lines
            .filter((l) => l.msg === 'connector channel closed' && l['connector_id'] === id)
            .map((l) => (typeof l['time'] === 'number' ? l['time'] : Date.parse(String(l['time'])))),
        ),
      );
      const took = Math.max(...closedAt) - committed;
      t.ok(took <= 1_000, `channels of c2 closed on every replica ${took} ms after the revocation committed`);
      t.comment(`the whole CLI call and propagation took ${Date.now() - started} ms`);
      t.not(await connectors[1]!.exited, 0, 'the revoked connector stops');
    });

    await t.test('kill -9 of one replica under load through HAProxy', async (t) => {
      let ok = 0;
      let failed = 0;
      let stop = false;
      const failures: string[] = [];
      const worker = async () => {
        while (!stop) {
          const r = await get(viaLb, `https://open.test:${lb}/load`).catch((e: Error) => ({
            status: 0,
            body: e.message,
          }));
          if (r.status === 200) ok++;
          else {
            failed++;
            failures.push(`${r.status} ${r.body.slice(0, 120)}`);
          }
        }
      };
      const load = Promise.all([worker(), worker(), worker(), worker()]);
      await new Promise((r) => setTimeout(r, 1_000));
      const before = { ok, failed };
      const victim = replicas[1]!;
      const logFrom = haproxyErr.length;
      victim.proc.child.kill('SIGKILL');
      await victim.proc.exited;
      // HAProxy says when its health check has taken the replica out.
      await waitFor(() => haproxyErr.slice(logFrom).includes(`relays/${victim.name} is DOWN`), {
        timeoutMs: 10_000,
        what: 'HAProxy to mark the killed replica down',
      });
      const afterDrop = { ok, failed };
      await new Promise((r) => setTimeout(r, 1_500));
      const steady = { ok: ok - afterDrop.ok, failed: failed - afterDrop.failed };
      stop = true;
      await load;
      t.equal(before.failed, 0, `before the kill: ${before.ok} served`);
      t.ok(
        afterDrop.failed - before.failed <= 8,
        `${afterDrop.failed - before.failed} requests failed around the kill (those in flight on r2 or sent before the health check dropped it)`,
      );
      t.equal(steady.failed, 0, `once the health check dropped it: ${steady.ok} served, ${steady.failed} failed`);
      t.comment(failures.join('\n'));
      t.equal(
        channels(replicas[0]!, undefined) > 0 && channels(replicas[2]!, undefined) > 0,
        true,
        'connectors stay attached to the others',
      );

      // It comes back on the same addresses: connectors re-attach, the balancer sends it users again.
      const back = await startReplica('r2', {
        pub: victim.publicPort,
        api: Number(new URL(victim.apiUrl).port),
        admin: victim.adminPort,
      });
      replicas[1] = back;
      await waitFor(() => channels(back) === 2, { timeoutMs: 15_000 });
      t.pass('the remaining connector re-attached to the returning replica');
      await waitFor(async () => (await get(agents[1]!, `https://open.test:${lb}/x`)).status === 200, {
        timeoutMs: 10_000,
      });
      t.notOk(haproxyErr.includes('ALERT'), haproxyErr);
    });
  },
);
