// High availability: real relay replicas in one process sharing one data directory,
// a replica set the test publishes where the registry will, and real connectors.
// A connector keeps its channels to every replica in the set, serves each replica's
// requests over that replica's data connections, follows the set as replicas leave
// and return, and refuses a hostile set while keeping the one it had.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { startBackend } from './helpers/backend.js';
import { capturingLogger } from './helpers/harness.js';
import { startReplicas } from './helpers/replicas.js';
import { waitFor, within } from './helpers/wait.js';
import { MAX_REPLICAS, type ReplicaInfo } from '../src/protocol/connector-api.js';
import type { Relay } from '../src/relay/relay.js';

const byId = (a: ReplicaInfo, b: ReplicaInfo) => (a.id < b.id ? -1 : 1);
const origin = (relay: Relay) => `https://127.0.0.1:${relay.connectorApiAddress().port}`;

async function backend(t: Test) {
  const b = await startBackend();
  t.teardown(() => b.close());
  return b;
}

t.test(
  'a connector keeps channels to every replica; each request travels through the replica that queued it',
  async (t) => {
    const { log, lines } = capturingLogger();
    const r = await startReplicas(t, { count: 2, backendOrigin: (await backend(t)).origin, log });
    const [a, b] = r.live() as [Relay, Relay];
    const c = await r.addConnector();

    t.same(c.currentConfig?.replicas, [r.infoOf(a), r.infoOf(b)].sort(byId), 'the config names both replicas');
    t.same(
      Object.fromEntries(c.openChannelsByRelay()),
      { [origin(a)]: 2, [origin(b)]: 2 },
      '`channels` channels to each replica',
    );
    t.equal(r.channelsAt(a, c.connectorId), 2);
    t.equal(r.channelsAt(b, c.connectorId), 2);

    for (const relay of [a, b]) {
      const upload = randomBytes(100_000);
      const posted = await r.call(relay, '/upload', upload);
      t.equal(posted.status, 200, 'a request with a body is answered');
      t.equal((JSON.parse(posted.text) as { length: number }).length, upload.length);
      const big = await r.call(relay, '/bytes?n=200000');
      t.equal(big.status, 200, 'a response too big for one frame is streamed back');
      t.equal(await within(r.echo(relay, 'ping'), 5000, 'the echo'), 'ping', 'a WebSocket is tunnelled');
      t.equal((await r.call(relay, '/small')).status, 200, 'a small response comes back inline');
    }
    // Each replica saw exactly its own requests' data connections: one body pull, one push, one tunnel.
    for (const relay of [a, b]) {
      t.same(
        r.dataCalls(relay.connectorApiAddress().port),
        { body: 1, response: 1, error: 0, upgrade: 1 },
        `data connections to ${origin(relay)}`,
      );
    }
    // Replicas at different URLs announce one version: a hello from either is no reason to pull again.
    t.notOk(
      lines.some((l) => l.msg === 'configuration pulled' && l['reason'] === 'hello'),
      'no pull for the hello of either replica',
    );
  },
);

t.test('a single replica whose own URL differs from the registration URL is dialled as registered', async (t) => {
  const r = await startReplicas(t, { count: 1, backendOrigin: (await backend(t)).origin });
  const [a] = r.live() as [Relay];
  // Its connectorApi.url names a host the connector never used (a load balancer, a mapped port…).
  r.publishRaw([{ id: a.replicaId, url: `https://localhost:${a.connectorApiAddress().port}/` }]);
  const c = await r.addConnector({ at: a });
  t.same([...c.openChannelsByRelay().keys()], [origin(a)], 'the channels go to the registration URL');
  t.equal((await r.call(a, '/x')).status, 200);
});

t.test('a replica that leaves the set loses its channels; one that returns at a new URL gets them', async (t) => {
  const { log, lines } = capturingLogger();
  const r = await startReplicas(t, { count: 3, backendOrigin: (await backend(t)).origin, log });
  const [a, b, c3] = r.live() as [Relay, Relay, Relay];
  const c = await r.addConnector({ at: a });
  t.equal(c.openChannelsByRelay().size, 3, 'channels to all three');
  const aOrigin = origin(a);

  // The replica the connector registered with dies (kill -9 as far as the connector can tell).
  await r.stop(a);
  t.equal((await r.call(b, '/x')).status, 200, 'the others serve at once, before the set changes');
  t.equal((await r.call(c3, '/x')).status, 200);
  r.publish([b, c3]);
  await waitFor(() => !c.openChannelsByRelay().has(aOrigin) && c.currentConfig?.replicas.length === 2, {
    what: 'the connector to follow the set without the dead replica',
  });
  t.ok(
    lines.some((l) => l.msg === 'relay replica left the set; draining its channels'),
    'the leaving is logged',
  );
  t.ok(
    lines.some((l) => l.msg === 'config pull got no answer; asking the next replica'),
    'the pull fell back from the dead registration URL to another replica',
  );
  t.same(Object.fromEntries(c.openChannelsByRelay()), { [origin(b)]: 2, [origin(c3)]: 2 });

  // It returns (a new process: new id, new ports) and the registry names it.
  const back = await r.start();
  r.publish([back, b, c3], [b]); // one replica's announcement is enough
  await waitFor(() => r.channelsAt(back, c.connectorId) === 2, { what: 'channels to the returned replica' });
  t.equal((await r.call(back, '/x')).status, 200, 'the returned replica serves through the same connector');
  t.equal(c.fatalError, undefined, 'no restart, no fatal error');

  // Renewal works with the registration URL gone, and rolls the channels of every replica.
  const old = c.serial;
  await c.renew();
  t.not(c.serial, old);
  await waitFor(
    () =>
      [back, b, c3].every(
        (x) =>
          r.channelsAt(x, c.connectorId) === 2 &&
          x.channels.byConnector(c.connectorId).every((ch) => ch.serial === c.serial),
      ),
    { timeoutMs: 10_000, what: 'every replica to hold two channels on the new certificate' },
  );
  t.pass('channels of every replica rolled to the new certificate');

  // Leaving the set without dying: the connector closes those channels itself.
  r.publish([back, b]);
  await waitFor(() => r.channelsAt(c3, c.connectorId) === 0, { what: 'channels to the replica that left to close' });
  t.equal(c.openChannelsByRelay().has(origin(c3)), false);
  t.equal((await r.call(b, '/x')).status, 200);
});

t.test('a dead replica does not slow reconnection to the others', async (t) => {
  const { log, lines } = capturingLogger();
  const r = await startReplicas(t, { count: 2, backendOrigin: (await backend(t)).origin, log });
  const [a, b] = r.live() as [Relay, Relay];
  // The longest delay each time (250 ms, doubling): a backoff shared with the dead replica would show as seconds.
  const c = await r.addConnector({ at: a, random: () => 1 });
  const dead = origin(b);
  await r.stop(b); // still in the set: the connector keeps trying it, backing off
  const failures = () =>
    lines.filter((l) => l.msg === 'cannot open control channel; retrying' && l['relay'] === dead).length;
  // Five failures per channel: each now waits 4 s before trying the dead replica again.
  await waitFor(() => failures() >= 10, { timeoutMs: 15_000, what: 'several failed attempts at the dead replica' });
  // Now the live replica drops the connector's channels: they come back at once.
  const old = a.channels.byConnector(c.connectorId);
  for (const ch of old) ch.ws.terminate();
  const cut = Date.now();
  const fresh = () => a.channels.byConnector(c.connectorId).filter((ch) => !old.includes(ch)).length;
  await waitFor(() => fresh() === 2, { timeoutMs: 3000, what: 'new channels to the live replica' });
  t.ok(Date.now() - cut < 2000, `reconnected to the live replica in ${Date.now() - cut} ms, not after 4 s`);
});

t.test('revoking a connector on one replica closes its channels to all of them within 1 s', async (t) => {
  const r = await startReplicas(t, { count: 3, backendOrigin: (await backend(t)).origin });
  const relays = r.live();
  const c = await r.addConnector();
  t.ok(relays.every((x) => r.channelsAt(x, c.connectorId) === 2));
  const started = Date.now();
  await relays[1]!.revokeConnector(c.connectorId, 'admin:test');
  await waitFor(() => relays.every((x) => r.channelsAt(x, c.connectorId) === 0), {
    timeoutMs: 1000,
    everyMs: 5,
    what: 'every replica to have no channel of the revoked connector',
  });
  t.ok(Date.now() - started <= 1000, `closed everywhere in ${Date.now() - started} ms`);
  await t.rejects(c.done, { code: 'ERR_CERT_REVOKED' }, 'the connector stops for good');
});

t.test('a hostile replica set is refused with a log line; the connector keeps the set it had', async (t) => {
  const { log, lines } = capturingLogger();
  const r = await startReplicas(t, { count: 2, backendOrigin: (await backend(t)).origin, log });
  const [a, b] = r.live() as [Relay, Relay];
  const c = await r.addConnector({ at: a });
  const good = c.currentConfig?.replicas;
  const channels = Object.fromEntries(c.openChannelsByRelay());
  const many = Array.from({ length: 10_000 }, (_, i) => ({
    id: `r${i}`,
    url: `https://127.0.0.${(i % 250) + 1}:${1000 + i}/`,
  }));
  const cases: [string, unknown][] = [
    ['an http:// URL', [r.infoOf(a), { id: 'plain', url: `http://127.0.0.1:${b.connectorApiAddress().port}/` }]],
    ['10,000 entries', many],
    [`${MAX_REPLICAS + 1} entries`, many.slice(0, MAX_REPLICAS + 1)],
    ['a numeric id', [r.infoOf(a), { id: 7, url: r.infoOf(b).url }]],
    ['duplicate ids', [r.infoOf(a), { id: r.infoOf(a).id, url: r.infoOf(b).url }]],
    ['an id too long', [r.infoOf(a), { id: 'x'.repeat(65), url: r.infoOf(b).url }]],
    ['a URL with credentials', [r.infoOf(a), { id: 'creds', url: 'https://user:pw@127.0.0.1:1/' }]],
  ];
  for (const [what, value] of cases) {
    const before = lines.length;
    r.publishRaw(value);
    const refused = await waitFor(
      () =>
        lines.slice(before).find((l) => l.msg === 'the relay sent an invalid replica set; keeping the previous one'),
      { what: `the refusal of ${what}` },
    );
    t.match(refused, { level: 40, error: String, kept: 2 }, `${what}: refused with a warning naming the problem`);
    t.same(c.currentConfig?.replicas, good, `${what}: the previous set is kept`);
    t.same(Object.fromEntries(c.openChannelsByRelay()), channels, `${what}: the channels are unchanged`);
  }
  t.equal(c.fatalError, undefined);
  t.equal((await r.call(b, '/x')).status, 200, 'both replicas still serve');
  t.equal((await r.call(a, '/x')).status, 200);
});
