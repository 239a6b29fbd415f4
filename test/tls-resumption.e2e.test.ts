// TLS session resumption on the public listener across replicas (public.ticketRotation):
// two relays sharing one store (SQLite in one data directory; PostgreSQL) resume each
// other's tickets, on a host with the relay-CA certificate and on an app host with its own
// certificate file; after a rotation (an injected clock) old tickets get a full handshake
// and new ones resume everywhere; a restarted relay resumes tickets issued before; a
// tampered ticket gets a full handshake; `off` resumes nothing. TLS 1.3 and 1.2.
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SecureVersion } from 'node:tls';
import { parseRelayConfig, type RelayConfig } from '../src/config/relay-config.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { generateMasterKey, parseMasterKey } from '../src/crypto/master-key.js';
import { isSealed } from '../src/crypto/secret-wrap.js';
import type { SecretWrap } from '../src/crypto/secret-wrap.js';
import { Relay } from '../src/relay/relay.js';
import { TICKET_SECRET_PREFIX } from '../src/relay/session-tickets.js';
import { ManualClock } from './helpers/clock.js';
import { testLogger } from './helpers/harness.js';
import { PG_URL, freshSchema, pgAdmin } from './helpers/postgres.js';
import { tempDir } from './helpers/proc.js';
import { parseExposition } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait.js';
import { tamperedSession, visit } from './helpers/tls-session.js';

const PERIOD_MS = 5 * 60_000;
const VERSIONS: SecureVersion[] = ['TLSv1.3', 'TLSv1.2'];

interface Setup {
  relay(name: string): Promise<Relay>;
  /** The configuration with one more app (a new host: the listener gets a new certificate), or another rotation. */
  variant(relay: string, change: { app?: string; rotation?: string }): RelayConfig;
  ca: string[];
  clock: ManualClock;
}

/** Relays of one service: the same config (one data directory, or one PostgreSQL schema), one clock. */
async function service(
  t: Test,
  opts: { store?: string; masterKey?: SecretWrap; rotation?: string } = {},
): Promise<Setup> {
  const dir = tempDir(t, 'proxyctl-tickets-');
  // An app with a certificate file of its own, from a CA that is not the relay's.
  const ownCa = await loadOrCreateCa(path.join(dir, 'own-ca'));
  const own = await ownCa.issueServerCertificate(['own.test'], 86_400_000);
  writeFileSync(path.join(dir, 'own-cert.pem'), own.certPem);
  writeFileSync(path.join(dir, 'own-key.pem'), own.keyPem, { mode: 0o600 });
  const yaml = `dataDir: ./data
public: { listen: "127.0.0.1:0", ticketRotation: ${opts.rotation ?? '5m'} }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "https://idp.invalid" }
limits: { perIp: false }
${opts.store ?? ''}
admin: { listen: "127.0.0.1:0" }
apps:
  - { name: app, externalUrl: "https://app.test/", internalUrl: "http://127.0.0.1:1/", preauth: passthrough }
  - name: own
    externalUrl: "https://own.test/"
    internalUrl: "http://127.0.0.1:1/"
    preauth: passthrough
    tls: { certFile: ./own-cert.pem, keyFile: ./own-key.pem }
`;
  // A period starts a second before the test does: the boundary is a known distance away.
  const clock = new ManualClock(Math.floor(Date.now() / PERIOD_MS) * PERIOD_MS + 1000);
  const ca: string[] = [ownCa.certPem];
  const setup: Setup = {
    ca,
    clock,
    variant: (name, { app, rotation }) =>
      parseRelayConfig(
        yaml.replace(/ticketRotation: \S+ /, `ticketRotation: ${rotation ?? opts.rotation ?? '5m'} `) +
          (app
            ? `  - { name: ${app}, externalUrl: "https://${app}.test/", internalUrl: "http://127.0.0.1:1/", preauth: passthrough }\n`
            : ''),
        path.join(dir, `${name}.yaml`),
      ),
    async relay(name) {
      const relay = await Relay.create(parseRelayConfig(yaml, path.join(dir, `${name}.yaml`)), {
        log: testLogger(),
        storeWatchMs: 100,
        clock,
        ...(opts.masterKey ? { masterKey: opts.masterKey } : {}),
      });
      t.teardown(() => relay.close());
      await relay.start();
      if (!ca.includes(relay.ca.certPem)) ca.push(relay.ca.certPem);
      return relay;
    },
  };
  return setup;
}

const port = (r: Relay) => r.publicAddress().port;

async function handshakes(relay: Relay): Promise<{ full: number; resumed: number }> {
  const m = parseExposition(await relay.metrics.text());
  const of = (resumed: string) => m.value('proxyctl_relay_tls_handshakes_total', { resumed }) ?? 0;
  return { full: of('false'), resumed: of('true') };
}

t.test('two replicas on one SQLite file resume each other’s tickets, and rotate together', async (t) => {
  const s = await service(t);
  const a = await s.relay('a');
  const b = await s.relay('b');
  const ca = s.ca;

  for (const maxVersion of VERSIONS) {
    await t.test(`${maxVersion}: same relay, other replica, app host with its own certificate`, async (t) => {
      const first = await visit(port(a), 'app.test', { ca, maxVersion });
      t.equal(first.status, 200, 'robots.txt from the relay');
      t.equal(first.protocol, maxVersion);
      t.notOk(first.reused, 'the first connection is a full handshake');
      t.ok(first.session, 'the relay sent a session ticket');
      const again = await visit(port(a), 'app.test', { ca, maxVersion, session: first.session });
      t.ok(again.reused, 'resumed on the same relay');
      const onB = await visit(port(b), 'app.test', { ca, maxVersion, session: first.session });
      t.ok(onB.reused, 'a ticket from replica a resumes on replica b');
      t.equal(onB.status, 200);

      const ownFirst = await visit(port(b), 'own.test', { ca, maxVersion });
      t.match(ownFirst.peer.subject, { CN: 'own.test' }, "the app's own certificate is presented (SNI context)");
      t.notOk(ownFirst.reused);
      const ownOnA = await visit(port(a), 'own.test', { ca, maxVersion, session: ownFirst.session });
      t.ok(ownOnA.reused, "a ticket issued under the app's own certificate on b resumes on a");
      t.equal(ownOnA.status, 200);
    });
  }

  await t.test('a tampered ticket gets a full handshake, not an error', async (t) => {
    const first = await visit(port(a), 'app.test', { ca });
    const bad = tamperedSession(first.session!, first.ticket!);
    const r = await visit(port(b), 'app.test', { ca, session: bad });
    t.notOk(r.reused, 'not resumed');
    t.equal(r.status, 200, 'the request is served after a full handshake');
    const r12 = await visit(port(b), 'app.test', { ca, maxVersion: 'TLSv1.2', session: bad });
    t.notOk(r12.reused, 'TLS 1.2 the same');
  });

  await t.test('rotation: old tickets are refused, new ones resume on every replica', async (t) => {
    const before = await visit(port(a), 'app.test', { ca });
    const before12 = await visit(port(a), 'app.test', { ca, maxVersion: 'TLSv1.2' });
    t.ok((await visit(port(b), 'app.test', { ca, session: before.session })).reused, 'valid before the boundary');
    const names = async () =>
      (await a.store.secrets.list()).map((x) => x.name).filter((n) => n.startsWith(TICKET_SECRET_PREFIX));
    const period = Math.floor(s.clock.now() / PERIOD_MS);
    t.same(
      (await names()).sort(),
      [`${TICKET_SECRET_PREFIX}${PERIOD_MS}:${period}`, `${TICKET_SECRET_PREFIX}${PERIOD_MS}:${period + 1}`].sort(),
      "the store holds this period's key and the next one (made ahead), nothing else",
    );

    await s.clock.advance(PERIOD_MS - 1000);
    t.equal(Math.floor(s.clock.now() / PERIOD_MS), period + 1, 'the next period began');
    for (const [name, old] of [
      ['TLSv1.3', before],
      ['TLSv1.2', before12],
    ] as const) {
      for (const r of [a, b]) {
        const v = await visit(port(r), 'app.test', { ca, session: old.session, maxVersion: name });
        t.notOk(v.reused, `${name}: a ticket of the past period gets a full handshake`);
        t.equal(v.status, 200, `${name}: and the request is served`);
      }
    }
    const fresh = await visit(port(b), 'app.test', { ca });
    t.ok((await visit(port(a), 'app.test', { ca, session: fresh.session })).reused, 'a new ticket from b resumes on a');
    const fresh2 = await visit(port(a), 'own.test', { ca, maxVersion: 'TLSv1.2' });
    t.ok(
      (await visit(port(b), 'own.test', { ca, maxVersion: 'TLSv1.2', session: fresh2.session })).reused,
      'and from a on b (TLS 1.2, own certificate)',
    );

    // A little after the boundary, the past period's key leaves the store (forward secrecy).
    await s.clock.advance(31_000);
    await waitFor(async () => !(await names()).includes(`${TICKET_SECRET_PREFIX}${PERIOD_MS}:${period}`), {
      what: "the past period's key deleted",
    });
    t.same(
      (await names()).sort(),
      [`${TICKET_SECRET_PREFIX}${PERIOD_MS}:${period + 1}`, `${TICKET_SECRET_PREFIX}${PERIOD_MS}:${period + 2}`].sort(),
      "the past period's key is deleted; the next one is ready",
    );
  });

  await t.test('a reload that replaces the listener certificate keeps the shared key', async (t) => {
    const fromB = await visit(port(b), 'app.test', { ca });
    const certBefore = (await visit(port(a), 'app.test', { ca })).peer.fingerprint256;
    const { restartNeeded } = await a.reload(s.variant('a', { app: 'extra' }));
    t.same(restartNeeded, [], 'applied without a restart');
    const after = await visit(port(a), 'extra.test', { ca });
    t.equal(after.status, 200, 'the new host is served');
    t.not(after.peer.fingerprint256, certBefore, 'by a new listener certificate (a new TLS context)');
    t.ok((await visit(port(a), 'app.test', { ca, session: fromB.session })).reused, "b's ticket resumes on a");
    t.ok((await visit(port(b), 'extra.test', { ca, session: after.session })).reused, "a's new ticket resumes on b");
  });

  await t.test('a restarted relay resumes tickets issued before its restart (key from the store)', async (t) => {
    const ticketFromA = await visit(port(a), 'app.test', { ca });
    const ticketFromB = await visit(port(b), 'app.test', { ca, maxVersion: 'TLSv1.2' });
    await b.close();
    const b2 = await s.relay('b2');
    t.ok((await visit(port(b2), 'app.test', { ca, session: ticketFromA.session })).reused, "a's ticket");
    t.ok(
      (await visit(port(b2), 'app.test', { ca, maxVersion: 'TLSv1.2', session: ticketFromB.session })).reused,
      "the old b's own ticket (TLS 1.2)",
    );
  });

  await t.test('handshakes are counted, resumed and full', async (t) => {
    const c = await handshakes(a);
    t.ok(c.full > 0 && c.resumed > 0, `replica a: ${c.full} full, ${c.resumed} resumed`);
    const before = await handshakes(a);
    const v = await visit(port(a), 'app.test', { ca });
    await visit(port(a), 'app.test', { ca, session: v.session });
    const after = await handshakes(a);
    t.same(after, { full: before.full + 1, resumed: before.resumed + 1 }, 'one of each');
  });
});

t.test('ticketRotation: off resumes nothing', async (t) => {
  const s = await service(t, { rotation: 'off' });
  const a = await s.relay('a');
  const { restartNeeded } = await a.reload(s.variant('a', { rotation: '1h' }));
  t.same(restartNeeded, ['public.ticketRotation'], 'turning tickets on takes a restart');
  for (const maxVersion of VERSIONS) {
    const first = await visit(port(a), 'app.test', { ca: s.ca, maxVersion });
    const again = await visit(port(a), 'app.test', {
      ca: s.ca,
      maxVersion,
      ...(first.session ? { session: first.session } : {}),
    });
    t.notOk(again.reused, `${maxVersion}: a full handshake every time`);
    t.equal(again.status, 200);
  }
  t.same(
    (await a.store.secrets.list()).filter((x) => x.name.startsWith(TICKET_SECRET_PREFIX)),
    [],
    'no ticket key is made',
  );
});

t.test('two replicas on PostgreSQL share wrapped ticket keys', async (t) => {
  const admin = await pgAdmin(t);
  const schema = freshSchema(t, admin, 'pxtick');
  const masterKey = parseMasterKey(generateMasterKey());
  const s = await service(t, { store: `store: { postgres: { url: "${PG_URL}", schema: ${schema} } }`, masterKey });
  const [a, b] = await Promise.all([s.relay('a'), s.relay('b')]);
  const keys = (await a.store.secrets.list()).filter((x) => x.name.startsWith(TICKET_SECRET_PREFIX));
  t.equal(keys.length, 2, 'current and next period, made once though both replicas started together');
  t.ok(
    keys.every((k) => isSealed(k.value)),
    'stored wrapped by the master key',
  );
  for (const maxVersion of VERSIONS) {
    const first = await visit(port(a), 'own.test', { ca: s.ca, maxVersion });
    const onB = await visit(port(b), 'own.test', { ca: s.ca, maxVersion, session: first.session });
    t.ok(onB.reused, `${maxVersion}: a ticket from a resumes on b`);
  }
  await s.clock.advance(PERIOD_MS - 1000);
  const fresh = await visit(port(a), 'app.test', { ca: s.ca });
  t.ok((await visit(port(b), 'app.test', { ca: s.ca, session: fresh.session })).reused, 'after rotation too');
});
