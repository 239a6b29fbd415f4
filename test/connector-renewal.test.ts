// Certificate renewal over real mutual TLS (regression: renewal left the previous
// certificate valid until it expired, a year by default). The replaced certificate
// works until the connector first uses the new one, or until a grace period ends,
// whichever comes first; then it is refused on new and kept-alive connections and
// for channels. A real Connector renews under load without dropping a request.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { loadOrCreateCa, type RelayCa } from '../src/crypto/ca.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { silentLogger } from '../src/log.js';
import { API, CLOSE } from '../src/protocol/connector-api.js';
import { ChannelRegistry } from '../src/relay/connectors/channels.js';
import { RENEWAL_GRACE_MS, createConnectorApi } from '../src/relay/connectors/connector-api.js';
import { DataPlane } from '../src/relay/connectors/data-plane.js';
import { RequestQueue } from '../src/relay/connectors/queue.js';
import { Relay } from '../src/relay/relay.js';
import { ensureServerCertificate } from '../src/relay/edge/server-cert.js';
import { openSqliteStore } from '../src/store/index.js';
import { startHarness } from './helpers/harness.js';
import { startIdp } from './helpers/idp.js';
import { tempDir } from './helpers/proc.js';
import { waitFor, within } from './helpers/wait.js';

interface Creds {
  keyPem: string;
  certPem: string;
}
interface Identity extends Creds {
  connectorId: string;
  serial: string;
}

const MINUTE = 60_000;

/**
 * Resolves once the relay has pinged this client n more times: each ping is a heartbeat
 * tick that checked the channel (its certificate's end, and the previous ping answered)
 * and left it open.
 */
function heartbeats(ws: WebSocket, n: number): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      let seen = 0;
      const onPing = () => {
        if (++seen < n) return;
        ws.off('ping', onPing);
        resolve();
      };
      ws.on('ping', onPing);
    }),
    5000,
    `${n} heartbeats`,
  );
}

/** Calls over mutual TLS to one connector API; agents are closed at teardown. */
class Api {
  private readonly agents: Agent[] = [];
  private readonly sockets: WebSocket[] = [];
  constructor(
    readonly origin: string,
    readonly ca: RelayCa,
  ) {}

  agent(creds: Creds): Agent {
    const a = new Agent({ connect: { ca: this.ca.certPem, cert: creds.certPem, key: creds.keyPem } });
    this.agents.push(a);
    return a;
  }

  /** Status and error code of a config pull (or of any GET/POST). */
  async call(
    agent: Agent,
    method: 'GET' | 'POST' = 'GET',
    pathname: string = API.config,
    body?: unknown,
  ): Promise<{ status: number; code: string | undefined; json: Record<string, unknown> }> {
    const res = await request(`${this.origin}${pathname}`, {
      dispatcher: agent,
      method,
      ...(body ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    });
    const json = (await res.body.json()) as Record<string, unknown>;
    return { status: res.statusCode, code: (json['error'] as { code?: string } | undefined)?.code, json };
  }

  async renew(agent: Agent, connectorId: string): Promise<Identity> {
    const next = await createKeyAndCsr('renewed');
    const reply = await this.call(agent, 'POST', API.renew, { csr: next.csrPem });
    if (reply.status !== 200) throw new Error(`renewal failed: ${JSON.stringify(reply.json)}`);
    return {
      connectorId,
      keyPem: next.keyPem,
      certPem: reply.json['certificate'] as string,
      serial: reply.json['serial'] as string,
    };
  }

  /** Opens a control channel; resolves once the relay said hello, or with the refusal status. */
  channel(creds: Creds): Promise<{ ws: WebSocket; status: number; closed: Promise<number> }> {
    return new Promise((resolve, reject) => {
      const url = `${this.origin.replace(/^https/, 'wss')}${API.channel}`;
      const ws = new WebSocket(url, { ca: this.ca.certPem, cert: creds.certPem, key: creds.keyPem });
      this.sockets.push(ws);
      const closed = new Promise<number>((r) => ws.on('close', (code: number) => r(code)));
      ws.on('error', () => undefined);
      ws.once('message', () => resolve({ ws, status: 101, closed }));
      ws.on('unexpected-response', (_req, res) => {
        res.resume();
        resolve({ ws, status: res.statusCode ?? 0, closed });
        ws.terminate();
      });
      setTimeout(() => reject(new Error('no hello and no refusal')), 5000).unref();
    });
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await Promise.all(this.agents.map((a) => a.destroy()));
  }
}

/** A relay whose clock the test moves (Relay options `now`), and one registered connector. */
async function relayWithClock(
  t: Test,
): Promise<{ relay: Relay; api: Api; clock: { offset: number }; first: Identity; dataDir: string }> {
  const idp = await startIdp();
  t.teardown(() => idp.close());
  const clock = { offset: 0 };
  const dataDir = path.join(tempDir(t), 'data');
  const config = parseRelayConfig(
    `
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "${idp.issuer}" }
connectors: { heartbeatInterval: 200ms }
`,
    undefined,
    { dataDir },
  );
  const relay = await Relay.create(config, {
    log: silentLogger,
    now: () => Date.now() + clock.offset,
    storeWatchMs: 100,
  });
  const api = new Api('', relay.ca);
  t.teardown(async () => {
    await api.close();
    await relay.close();
  });
  await relay.start();
  Object.assign(api, { origin: `https://127.0.0.1:${relay.connectorApiAddress().port}` });
  const { keyPem, csrPem } = await createKeyAndCsr('edge-1');
  const issued = await relay.registerLocal({ csr: csrPem, name: 'edge-1', group: 'default', version: 'test' }, 'test');
  return {
    relay,
    api,
    clock,
    first: { connectorId: issued.connectorId, serial: issued.serial, keyPem, certPem: issued.certificate },
    dataDir,
  };
}

t.test('the replaced certificate works within the grace period while the new one is unused', async (t) => {
  const { relay, api, first } = await relayWithClock(t);
  const kept = api.agent(first);
  t.equal((await api.call(kept)).status, 200, 'kept-alive connection made before the renewal');
  const renewedAt = Date.now();
  await api.renew(kept, first.connectorId);

  t.equal((await api.call(kept)).status, 200, 'old certificate, kept-alive connection');
  t.equal((await api.call(api.agent(first))).status, 200, 'old certificate, new connection');
  const ch = await api.channel(first);
  t.equal(ch.status, 101, 'old certificate opens a channel');
  const old = await relay.store.connectors.getCertificate(first.serial);
  t.ok(
    old?.revokedAt !== null &&
      old!.revokedAt >= renewedAt + RENEWAL_GRACE_MS &&
      old!.revokedAt <= Date.now() + RENEWAL_GRACE_MS,
    'its revocation is scheduled one grace period after the renewal',
  );
  t.equal(RENEWAL_GRACE_MS, 10 * MINUTE, 'the grace period is 10 minutes');
  const channel = relay.channels.byConnector(first.connectorId)[0];
  t.ok(channel && channel.certNotAfter <= old!.revokedAt!, 'a channel opened with it lives no longer than the grace');
});

t.test('the replaced certificate is refused once the new one has been used', async (t) => {
  const { relay, api, first, dataDir } = await relayWithClock(t);
  const kept = api.agent(first);
  const renewed = await api.renew(kept, first.connectorId);
  const before = await api.channel(first);
  t.equal(before.status, 101, 'a channel opened with the old certificate during the grace');

  const fresh = api.agent(renewed);
  t.equal((await api.call(fresh)).status, 200, 'the new certificate works');
  for (const [what, reply] of [
    ['kept-alive connection', await api.call(kept)],
    ['new connection', await api.call(api.agent(first))],
    [
      'renewal with it',
      await api.call(api.agent(first), 'POST', API.renew, { csr: (await createKeyAndCsr('x')).csrPem }),
    ],
  ] as const) {
    t.equal(reply.status, 403, `${what}: 403`);
    t.equal(reply.code, 'ERR_CERT_REVOKED', `${what}: ERR_CERT_REVOKED`);
  }
  t.equal((await api.channel(first)).status, 403, 'a new channel with it is refused');
  t.match(
    (await relay.store.audit.list()).find((a) => a.action === 'connector.retire'),
    { connectorId: first.connectorId, details: { serials: [first.serial] } },
  );
  t.equal(
    (await relay.store.connectors.get(first.connectorId))?.revokedAt,
    null,
    'the connector itself is not revoked',
  );

  // A store watch tick that sees a change (another connection writes, as the admin CLI
  // would: the relay then enforces revocations from the store) and two heartbeats.
  const generation = relay.store.generation;
  const other = openSqliteStore(dataDir);
  try {
    await other.connectors.touch(first.connectorId, null);
  } finally {
    await other.close();
  }
  await waitFor(() => relay.store.generation > generation, { what: 'a store watch tick that sees the change' });
  await heartbeats(before.ws, 2);
  t.equal(
    before.ws.readyState,
    WebSocket.OPEN,
    'the old channel is not cut at once (requests on it may still be answered)',
  );
  const relayChannel = relay.channels.byConnector(first.connectorId).find((c) => c.serial === first.serial);
  t.equal(
    relayChannel?.draining,
    false,
    'nothing marked it draining: the connector has no channel with the new certificate yet',
  );
  const next = await api.channel(renewed);
  t.equal(next.status, 101, 'a channel with the new certificate');
  t.equal(
    relayChannel?.draining,
    true,
    'once it reconnects with the new certificate, the old channel gets nothing new',
  );

  // A second renewal does not bring the first certificate back.
  const third = await api.renew(fresh, first.connectorId);
  t.equal((await api.call(api.agent(third))).status, 200);
  t.equal((await api.call(api.agent(first))).code, 'ERR_CERT_REVOKED', 'the first certificate stays refused');
  t.equal(
    (await api.call(api.agent(renewed))).code,
    'ERR_CERT_REVOKED',
    'and so does the second, once the third is used',
  );
});

t.test('the replaced certificate is refused after the grace period, even if the new one is never used', async (t) => {
  const { api, clock, first } = await relayWithClock(t);
  const kept = api.agent(first);
  const renewed = await api.renew(kept, first.connectorId);

  clock.offset = RENEWAL_GRACE_MS - 5_000;
  t.equal((await api.call(kept)).status, 200, 'five seconds before the end: still accepted');
  clock.offset = RENEWAL_GRACE_MS + 1_000;
  for (const [what, agent] of [
    ['kept-alive connection', kept],
    ['new connection', api.agent(first)],
  ] as const) {
    const reply = await api.call(agent);
    t.equal(reply.status, 403, `${what}: 403 after the grace`);
    t.equal(reply.code, 'ERR_CERT_REVOKED', `${what}: ERR_CERT_REVOKED`);
  }
  t.equal((await api.channel(first)).status, 403, 'channel refused after the grace');
  t.equal((await api.call(api.agent(renewed))).status, 200, 'the new certificate works');
});

t.test('revoking the connector during the grace revokes both certificates at once', async (t) => {
  const { relay, api, first } = await relayWithClock(t);
  const renewed = await api.renew(api.agent(first), first.connectorId);
  await relay.revokeConnector('edge-1', 'admin:test');
  t.equal((await api.call(api.agent(first))).code, 'ERR_CERT_REVOKED', 'old certificate');
  t.equal((await api.call(api.agent(renewed))).code, 'ERR_CERT_REVOKED', 'new certificate');
  t.match((await relay.store.audit.list())[0], { action: 'connector.revoke', details: { certificates: 2 } });
});

t.test(
  'at the end of the grace, channels of the replaced certificate are closed without disowning the connector',
  async (t) => {
    // The connector API alone, with a grace of 1.5 s and the real clock.
    const dir = tempDir(t);
    const ca = await loadOrCreateCa(dir);
    const store = openSqliteStore(dir);
    const config = parseRelayConfig('connectors: { heartbeatInterval: 200ms }\n', undefined, { dataDir: dir });
    const channels = new ChannelRegistry(silentLogger, { onSeen: () => undefined });
    channels.startHeartbeat(200);
    const queue = new RequestQueue(channels, silentLogger);
    const server = createConnectorApi(
      {
        config: () => config,
        store,
        ca,
        channels,
        log: silentLogger,
        renewalGraceMs: 1500,
        verifier: { verify: () => Promise.reject(new Error('not used')) },
        dataPlane: new DataPlane(queue, silentLogger),
        identityInfo: () => ({
          issuer: 'https://idp.invalid',
          cliClientId: undefined,
          adminAudience: 'api://proxyctl',
        }),
        replicas: () => [],
      },
      await ensureServerCertificate(dir, ca, 'connector-api', ['127.0.0.1']),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const api = new Api(`https://127.0.0.1:${(server.address() as AddressInfo).port}`, ca);
    t.teardown(async () => {
      await api.close();
      channels.terminateAll();
      channels.stopHeartbeat();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await store.close();
    });

    const { keyPem, csrPem } = await createKeyAndCsr('edge');
    const id = '2d3c1c5e-0000-4000-8000-00000000abcd';
    const issued = await ca.signConnectorCsr(csrPem, { connectorId: id, lifetimeMs: 3_600_000 });
    await store.connectors.register({
      id,
      name: 'edge',
      group: 'default',
      actor: 'test',
      serial: issued.serial,
      issuedAt: Date.now(),
      notAfter: issued.notAfter.getTime(),
    });
    const first = { connectorId: id, serial: issued.serial, keyPem, certPem: issued.certPem };

    const before = await api.channel(first); // opened before the renewal: lives past the grace only without this fix
    const renewed = await api.renew(api.agent(first), id);
    const during = await api.channel(first); // opened within the grace with the old certificate
    const current = await api.channel(renewed);
    t.equal(before.status, 101);
    t.equal(during.status, 101);
    t.equal(current.status, 101);

    const [a, b] = await Promise.all([before.closed, during.closed]);
    t.equal(a, CLOSE.replaced, 'channel from before the renewal: closed with "replaced" (reconnect), not "revoked"');
    t.ok(b === CLOSE.replaced || b === CLOSE.unknown, `channel opened during the grace: closed when it ends (${b})`);
    await heartbeats(current.ws, 2); // ticks after the grace ended
    t.equal(current.ws.readyState, WebSocket.OPEN, 'the channel with the new certificate stays open');
    t.same(
      channels.byConnector(id).map((c) => c.serial),
      [renewed.serial],
      'only the new certificate holds a channel',
    );
  },
);

t.test(
  'a running connector renews under load without dropping a request, and retires its old certificate',
  async (t) => {
    let slowArrived!: () => void;
    const slowAtBackend = new Promise<void>((resolve) => (slowArrived = resolve));
    const backend: HttpServer = createHttpServer((req, res) => {
      const slow = req.url?.startsWith('/slow') ?? false;
      if (slow) slowArrived();
      setTimeout(() => res.end(`ok ${req.url}`), slow ? 1500 : 0);
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    t.teardown(() => new Promise((resolve) => backend.close(resolve)));
    const origin = `http://127.0.0.1:${(backend.address() as AddressInfo).port}/`;
    const h = await startHarness(t, {
      yaml: () =>
        `apps:\n  - name: app\n    externalUrl: "https://app.test/"\n    internalUrl: "${origin}"\n    preauth: passthrough\n`,
    });
    const c = await h.addConnector();
    const oldSerial = c.serial;
    const get = async (p: string) => {
      const res = await request(h.url('app.test', p), { dispatcher: h.client });
      const text = await res.body.text();
      return { status: res.statusCode, text };
    };
    t.equal((await get('/warm')).status, 200);

    const slow = get('/slow-across-the-renewal'); // in flight on an old channel while the channels roll
    await within(slowAtBackend, 5000, 'the slow request at the backend');
    let stop = false;
    const statuses: number[] = [];
    const load = (async () => {
      for (let i = 0; !stop; i++) statuses.push((await get(`/n${i}`)).status);
    })();
    await c.renew();
    t.not(c.serial, oldSerial, 'a new certificate');

    const onNewSerial = () => h.relay.channels.byConnector(c.connectorId).every((ch) => ch.serial === c.serial);
    await waitFor(() => onNewSerial() && h.relay.channels.byConnector(c.connectorId).length === 2, {
      timeoutMs: 10_000,
      what: 'both channels on the new certificate',
    }).catch(() => undefined); // asserted below
    // A few more requests once the channels have rolled: they travel on the new certificate.
    const rolled = statuses.length;
    await waitFor(() => statuses.length >= rolled + 5, { what: '5 requests after the roll' });
    stop = true;
    await load;
    t.same(
      await slow,
      { status: 200, text: 'ok /slow-across-the-renewal' },
      'the request in flight on an old channel is answered',
    );
    t.ok(statuses.length > 5, `${statuses.length} requests during the renewal`);
    t.same([...new Set(statuses)], [200], 'every request during the renewal succeeded');
    t.ok(onNewSerial(), 'every channel now uses the new certificate');
    t.equal(h.relay.channels.byConnector(c.connectorId).length, 2, 'as many channels as before');
    const old = await h.relay.store.connectors.getCertificate(oldSerial);
    t.ok(
      old?.revokedAt !== null && old!.revokedAt <= Date.now(),
      'the old certificate was retired by the first use of the new one',
    );
    t.equal(c.openChannels(), 2);
    t.equal(c.fatalError, undefined, 'the connector did not take any refusal of its old certificate as fatal');
    t.equal((await get('/after')).status, 200);
  },
);
