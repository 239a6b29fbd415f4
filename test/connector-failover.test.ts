// Failover inside a group, with real processes: two connectors (child processes,
// real mutual TLS) serve steady load through an in-process relay; one is killed
// with SIGKILL, or frozen with SIGSTOP (a silent peer: no FIN, no pong). Only
// requests the dead connector had read may fail; every other one is answered by
// the survivor, no POST reaches the backend twice, and the dead channels leave the
// registry as soon as their sockets end (kill) or within two heartbeats (freeze).
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { writeRegistration } from '../src/connector/state.js';
import type { QueuedRequest } from '../src/protocol/connector-api.js';
import type { Channel } from '../src/relay/connectors/channels.js';
import { startBackend } from './helpers/backend.js';
import { capturingLogger, startHarness, type Harness } from './helpers/harness.js';
import { ROOT } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

/** The harness's heartbeat (relayYaml): a silent channel must be cut within two of them. */
const HEARTBEAT_MS = 500;

/**
 * A connector in a process of its own, run from source. It prints the id of every request
 * it reads off a control channel (stdout to a pipe is synchronous), before it acts on it:
 * after a kill, the test knows exactly which requests had reached it.
 */
class ConnectorProcess {
  readonly read = new Set<string>();
  readonly exited: Promise<void>;
  private constructor(
    readonly child: ChildProcess,
    readonly connectorId: string,
  ) {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('read ')) this.read.add(line.slice(5));
      }
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  static async start(h: Harness, stateDir: string, connectorId: string): Promise<ConnectorProcess> {
    const src = (f: string) => JSON.stringify(path.join(ROOT, 'src', f));
    const script = `
const { BackendProxy } = await import(${src('connector/proxy.ts')});
const { Connector } = await import(${src('connector/connector.ts')});
const { silentLogger } = await import(${src('log.ts')});
const handle = BackendProxy.prototype.handle;
BackendProxy.prototype.handle = function (msg, reply) {
  process.stdout.write('read ' + msg.id + '\\n');
  return handle.call(this, msg, reply);
};
await new Connector({ stateDir: ${JSON.stringify(stateDir)}, log: silentLogger }).start();`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NODE_OPTIONS: undefined },
    });
    const p = new ConnectorProcess(child, connectorId);
    await waitFor(() => h.relay.channels.byConnector(connectorId).length === 2, {
      timeoutMs: 20_000,
      what: `the channels of connector process ${child.pid}`,
    });
    return p;
  }
}

async function register(h: Harness, name: string): Promise<{ stateDir: string; connectorId: string }> {
  const stateDir = path.join(h.dir, name);
  const { issued, keyPem } = await h.register(name, 'pair');
  writeRegistration(stateDir, { relayUrl: h.apiUrl, name, group: 'pair', keyPem, issued });
  return { stateDir, connectorId: issued.connectorId };
}

interface Outcome {
  /** The relay's request id: on its refusals; for answers, as the backend saw it. */
  id: string;
  url: string;
  method: string;
  status: number;
  code: string | undefined;
}

t.test('a connector of two dies under load', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const { log, lines } = capturingLogger();
  const h = await startHarness(t, {
    log,
    yaml: () => `apps:
  - name: pair
    externalUrl: "https://pair.test/"
    internalUrl: "${backend.origin}/pair/"
    preauth: passthrough
    connectorGroup: pair
`,
  });
  const procs: ConnectorProcess[] = [];
  t.teardown(() => procs.forEach((p) => p.child.kill('SIGKILL')));
  const identities = [await register(h, 'a'), await register(h, 'b')];
  const running = async (i: number) => {
    const p = await ConnectorProcess.start(h, identities[i]!.stateDir, identities[i]!.connectorId);
    procs.push(p);
    return p;
  };
  const live = [await running(0), await running(1)];

  const client = new Agent({
    connect: { ca: h.relay.ca.certPem, lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) },
    connections: 64,
  });
  t.teardown(() => client.close());
  const outcomes: Outcome[] = [];
  let stop = false;
  /** One client in a loop: GETs (and, for some, POSTs) to a backend that takes 20 ms to answer. */
  const worker = async (w: number, method: 'GET' | 'POST') => {
    for (let i = 0; !stop; i++) {
      const url = `/slow?ms=20&w=${w}&i=${i}`;
      try {
        const r = await request(h.url('pair.test', url), {
          dispatcher: client,
          method,
          headers: { accept: 'application/json' },
          ...(method === 'POST' ? { body: 'x' } : {}),
        });
        const body = (await r.body.json()) as { error?: { code: string } };
        const id =
          r.headers['x-request-id'] ?? backend.seen.find((s) => s.url === `/pair${url}`)?.headers['x-request-id'];
        outcomes.push({ id: String(id), url, method, status: r.statusCode, code: body.error?.code });
      } catch (err) {
        outcomes.push({ id: '', url, method, status: 0, code: (err as Error).message });
        await sleep(10);
      }
    }
  };
  const workers = [
    ...Array.from({ length: 14 }, (_, w) => worker(w, 'GET')),
    ...Array.from({ length: 2 }, (_, w) => worker(100 + w, 'POST')),
  ];
  t.teardown(() => {
    stop = true;
  });

  /** Watches the relay side of a connector's channels from the moment of the kill. */
  const watch = (connectorId: string) => {
    const channels = h.relay.channels.byConnector(connectorId);
    const at = { signal: 0, dropped: new Map<Channel, number>(), stillListed: 0 };
    const sentAfter: QueuedRequest[] = [];
    for (const ch of channels) {
      // Added after the registry's own listeners: by the time these run, the channel must be gone.
      for (const e of ['end', 'error', 'close'])
        ch.socket?.once(e, () => {
          if (!ch.gone) at.stillListed++;
        });
      const send = ch.send.bind(ch);
      ch.send = (m) => {
        if (m.type === 'request' && at.signal) sentAfter.push(m);
        send(m);
      };
    }
    h.relay.channels.subscribe({
      onSeen: () => undefined,
      onClose: (ch) => {
        if (channels.includes(ch) && !at.dropped.has(ch)) at.dropped.set(ch, performance.now());
      },
    });
    return { channels, at, sentAfter };
  };

  const victims: ConnectorProcess[] = [];
  /** Load, the signal, and what the relay did with the requests on the dead channels. */
  const round = async (victim: ConnectorProcess, signal: 'SIGKILL' | 'SIGSTOP', what: string) => {
    await sleep(400);
    const logFrom = lines.length;
    const w = watch(victim.connectorId);
    victims.push(victim);
    w.at.signal = performance.now();
    victim.child.kill(signal);
    await waitFor(() => w.at.dropped.size === w.channels.length, {
      timeoutMs: 5000,
      what: `the relay to drop the channels of the ${what} connector`,
    });
    // A GET written to a dead socket is sent again; a POST may have arrived as far as the relay
    // can tell, and fails.
    const unread = w.sentAfter.filter((m) => m.method === 'GET' && !victim.read.has(m.id));
    await waitFor(() => unread.every((m) => outcomes.some((o) => o.id === m.id)), {
      timeoutMs: 15_000,
      what: 'answers to the GETs put on the dead channels',
    });
    for (const m of unread)
      t.equal(
        outcomes.find((o) => o.id === m.id)?.status,
        200,
        `GET ${m.id}, put on a dead channel and never read: answered`,
      );
    const logs = lines.slice(logFrom);
    const sum = (key: 'failed' | 'requeued') =>
      logs
        .filter((l) => l.msg === 'channel closed with requests in flight' && l['connector_id'] === victim.connectorId)
        .reduce((n, l) => n + Number(l[key]), 0);
    const moved = logs.filter(
      (l) => l.msg === 'request moved to another channel' && l['from_connector_id'] === victim.connectorId,
    ).length;
    const dropMs = [...w.at.dropped.values()].map((d) => d - w.at.signal);
    t.comment(
      `${what}: the relay failed ${sum('failed')} and moved ${moved} requests of its channels ` +
        `(${w.sentAfter.length} put on them after the signal, ${unread.length} of those unread GETs); ` +
        `channels dropped ${dropMs.map((d) => d.toFixed(0)).join(' and ')} ms after the signal`,
    );
    return { dropMs, stillListed: w.at.stillListed };
  };

  await t.test('kill -9, three times over: only requests the dead connector had read fail', async (t) => {
    for (let k = 0; k < 3; k++) {
      const victim = live[k % 2]!;
      const r = await round(victim, 'SIGKILL', `killed (${k + 1})`);
      t.equal(
        r.stillListed,
        0,
        'each channel left the registry on the first event of its socket (end, error or close)',
      );
      for (const d of r.dropMs) t.ok(d < 2000, `and ${d.toFixed(0)} ms after the kill (process teardown included)`);
      await victim.exited;
      live[k % 2] = await running(k % 2);
    }
  });

  await t.test('SIGSTOP (no FIN, no pong): cut within two heartbeats, unread requests moved', async (t) => {
    const victim = live[0]!;
    const r = await round(victim, 'SIGSTOP', 'frozen');
    for (const d of r.dropMs)
      t.ok(d <= 2 * HEARTBEAT_MS + 500, `channel dropped ${d.toFixed(0)} ms after the freeze (bound 2 × heartbeat)`);
    victim.child.kill('SIGKILL');
    await victim.exited;
  });

  stop = true;
  await Promise.all(workers);
  // On a loaded machine the relay may also cut a live connector's channel (a missed heartbeat):
  // requests that connector had read fail too, for the same reason. None that no connector read may.
  const failed = outcomes.filter((o) => o.status !== 200);
  for (const f of failed) {
    t.same(
      { status: f.status, code: f.code },
      { status: 502, code: 'ERR_CONNECTOR_LOST' },
      `${f.method} ${f.id}: a connector-lost page`,
    );
    if (f.method === 'GET')
      t.ok(
        procs.some((p) => p.read.has(f.id)),
        `failed GET ${f.id} had reached a connector (whose channel then died)`,
      );
  }
  const ofVictims = failed.filter((f) => victims.some((v) => v.read.has(f.id))).length;
  t.comment(
    `${outcomes.length} requests, ${failed.length} failed (${failed.filter((o) => o.method === 'GET').length} GETs): ` +
      `${ofVictims} had been read by a connector that was killed or frozen, ` +
      `${failed.length - ofVictims} by one whose channel was cut while it lived (or were POSTs no connector read)`,
  );
  const posts = new Map<string, number>();
  for (const s of backend.seen)
    if (s.method === 'POST')
      posts.set(String(s.headers['x-request-id']), (posts.get(String(s.headers['x-request-id'])) ?? 0) + 1);
  t.same(
    [...posts].filter(([, n]) => n > 1),
    [],
    `none of the ${posts.size} POSTs reached the backend twice`,
  );
});
