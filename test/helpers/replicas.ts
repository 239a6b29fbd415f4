// Several relay replicas in one process, as high availability runs them: one data
// directory (one CA, one SQLite store in WAL mode), each replica with its own
// listeners on port 0, and a replica set the test edits by hand where the registry
// will keep it. Connectors register at the first replica; everything is torn down.
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import type { LookupFunction } from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { parseRelayConfig } from '../../src/config/relay-config.js';
import { Connector } from '../../src/connector/connector.js';
import { writeRegistration } from '../../src/connector/state.js';
import { createKeyAndCsr } from '../../src/crypto/csr.js';
import type { Logger } from '../../src/log.js';
import { frameText } from '../../src/net/frames.js';
import { API, type ReplicaInfo } from '../../src/protocol/connector-api.js';
import { Relay } from '../../src/relay/relay.js';
import { relayYaml, testLogger } from './harness.js';
import { tempDir } from './proc.js';
import { waitFor } from './wait.js';

export interface Replicas {
  dir: string;
  /** Replicas started and not stopped, oldest first. */
  live(): Relay[];
  /** A replica as the registry would record it. */
  infoOf(relay: Relay): ReplicaInfo;
  /** Starts one more replica (new ports); it is not in the set until published. */
  start(): Promise<Relay>;
  /** Stops a replica; it stays in the set until the next publish. */
  stop(relay: Relay): Promise<void>;
  /** Makes `members` the set; `announcers` (every live replica by default) tell their connectors. */
  publish(members: Relay[], announcers?: Relay[]): void;
  /** Replaces the set with anything at all (hostile values), announced by every live replica. */
  publishRaw(value: unknown): void;
  /** A connector registered at `at` (the first replica by default), started, with its channels to every member up. */
  addConnector(opts?: { at?: Relay; log?: Logger; random?: () => number }): Promise<Connector>;
  /** GET (or POST `body`) on the app through a replica's public listener. */
  call(relay: Relay, p: string, body?: Buffer): Promise<{ status: number; text: string }>;
  /** Opens a WebSocket to the app's echo through a replica, sends `text` and returns what comes back. */
  echo(relay: Relay, text: string): Promise<string>;
  /** Data connections the connectors opened (body pulls, response pushes, failure reports, tunnels) by connector API port. */
  dataCalls(port: number): { body: number; response: number; error: number; upgrade: number };
  /** Open channels a replica holds for a connector. */
  channelsAt(relay: Relay, connectorId: string): number;
}

/** Every host on 127.0.0.1, in both shapes net.connect asks for. */
const loopback: LookupFunction = (_host, opts, cb) => {
  if ((opts as { all?: boolean }).all)
    (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  else cb(null, '127.0.0.1', 4);
};

const portOf = (origin: string) => Number(new URL(origin).port);

export async function startReplicas(
  t: { teardown(fn: () => unknown): void },
  options: { count: number; backendOrigin: string; log?: Logger },
): Promise<Replicas> {
  const log = options.log ?? testLogger();
  const dir = tempDir(t, 'proxyctl-replicas-');
  const yaml = relayYaml(
    'https://idp.invalid',
    `apps:\n  - name: app\n    externalUrl: "https://app.test/"\n    internalUrl: "${options.backendOrigin}/"\n    preauth: passthrough\n`,
  );
  let set: unknown = [];
  const relays: Relay[] = [];
  const connectors: Connector[] = [];
  let n = 0;

  // The connector's data connections, seen where it makes them: undici for body pulls and
  // failure reports, node:https for response pushes and tunnels.
  const calls = new Map<string, number>();
  const count = (port: number, pathname: string | undefined) => {
    if (!pathname?.startsWith(API.requests)) return;
    const action = pathname.split('/').pop() ?? '';
    calls.set(`${port} ${action}`, (calls.get(`${port} ${action}`) ?? 0) + 1);
  };
  const onUndici = (m: unknown) => {
    const r = (m as { request: { origin: string; path: string } }).request;
    count(portOf(String(r.origin)), r.path);
  };
  const onHttp = (m: unknown) => {
    const r = (m as { request: ClientRequest }).request;
    count(Number(String(r.getHeader('host')).split(':').pop()), r.path);
  };
  diagnostics.subscribe('undici:request:create', onUndici);
  diagnostics.subscribe('http.client.request.start', onHttp);

  // Users' client: trusts the relay CA (which signs the public certificates too), every host on loopback.
  let client: Agent | undefined;
  const users = () =>
    (client ??= new Agent({
      connect: {
        ca: relays[0]!.ca.certPem,
        lookup: (_host, _opts, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
      },
    }));

  const r: Replicas = {
    dir,
    live: () => [...relays],
    infoOf: (relay) => ({ id: relay.replicaId, url: `https://127.0.0.1:${relay.connectorApiAddress().port}/` }),
    async start() {
      const config = parseRelayConfig(yaml, path.join(dir, 'relay.yaml'));
      const relay = await Relay.create(config, { log, storeWatchMs: 100, replicas: () => set as ReplicaInfo[] });
      try {
        await relay.start();
      } catch (err) {
        await relay.close().catch(() => undefined);
        throw err;
      }
      relays.push(relay);
      return relay;
    },
    async stop(relay) {
      relays.splice(relays.indexOf(relay), 1);
      await relay.close();
    },
    publish(members, announcers = relays) {
      set = members.map((m) => r.infoOf(m));
      for (const a of announcers) a.announceReplicas();
    },
    publishRaw(value) {
      set = value;
      for (const a of relays) a.announceReplicas();
    },
    async addConnector(opts = {}) {
      const at = opts.at ?? relays[0]!;
      const stateDir = path.join(dir, `connector-${++n}`);
      const { keyPem, csrPem } = await createKeyAndCsr('c');
      const issued = await at.registerLocal({ csr: csrPem, name: `c${n}`, group: 'default', version: 'test' }, 'test');
      writeRegistration(stateDir, {
        relayUrl: `https://127.0.0.1:${at.connectorApiAddress().port}`,
        name: `c${n}`,
        group: 'default',
        keyPem,
        issued,
      });
      const c = new Connector({ stateDir, log: opts.log ?? log, ...(opts.random ? { random: opts.random } : {}) });
      await c.start();
      connectors.push(c);
      const inSet = relays.filter((x) => isMember(set, x));
      const members = inSet.length > 0 ? inSet : [at];
      const want = c.currentConfig?.channels ?? 2;
      // Both ends: a replica records a channel a moment before the connector sees it open.
      await waitFor(
        () =>
          members.every(
            (m) =>
              r.channelsAt(m, c.connectorId) === want &&
              c.openChannelsByRelay().get(`https://127.0.0.1:${m.connectorApiAddress().port}`) === want,
          ),
        { timeoutMs: 10_000, what: "the connector's channels to every replica" },
      );
      return c;
    },
    async call(relay, p, body) {
      const res = await request(`https://app.test:${relay.publicAddress().port}${p}`, {
        dispatcher: users(),
        method: body ? 'POST' : 'GET',
        ...(body ? { body } : {}),
      });
      return { status: res.statusCode, text: await res.body.text() };
    },
    echo(relay, text) {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://app.test:${relay.publicAddress().port}/ws`, {
          ca: relay.ca.certPem,
          lookup: loopback,
        });
        ws.once('open', () => ws.send(text));
        ws.once('message', (data) => {
          resolve(frameText(data));
          ws.close();
        });
        ws.once('error', reject);
      });
    },
    dataCalls(port) {
      const get = (a: string) => calls.get(`${port} ${a}`) ?? 0;
      return { body: get('body'), response: get('response'), error: get('error'), upgrade: get('upgrade') };
    },
    channelsAt: (relay, connectorId) => relay.channels.byConnector(connectorId).length,
  };
  t.teardown(async () => {
    await Promise.all(connectors.map((c) => c.close(500)));
    await Promise.all(relays.map((x) => x.close()));
    await client?.close().catch(() => undefined);
    diagnostics.unsubscribe('undici:request:create', onUndici);
    diagnostics.unsubscribe('http.client.request.start', onHttp);
  });
  for (let i = 0; i < options.count; i++) await r.start();
  r.publish(relays);
  return r;
}

function isMember(set: unknown, relay: Relay): boolean {
  const port = relay.connectorApiAddress().port;
  return (set as ReplicaInfo[]).some((m) => typeof m?.url === 'string' && portOf(m.url) === port);
}
