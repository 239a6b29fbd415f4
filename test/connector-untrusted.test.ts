// Regression (outside reliability run): a running connector that once failed to verify
// the relay's certificate (a load balancer briefly pointing at the wrong host, a relay
// started with another data directory) exited for good. Now it retries with backoff,
// logs an error on every attempt naming the real remedy (the pinned ca.pem, not a
// --relay-ca option `connector run` does not have), and recovers once the right relay answers.
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { WebSocketServer, type WebSocket } from 'ws';
import { Connector } from '../src/connector/connector.js';
import { writeNewState } from '../src/connector/state.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { ManualClock } from './helpers/clock.js';
import { capturingLogger } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

t.test('an untrusted relay is retried loudly, never a reason to exit', async (t) => {
  const [right, wrong] = await Promise.all([loadOrCreateCa(tempDir(t)), loadOrCreateCa(tempDir(t))]);
  const [good, bad] = await Promise.all([
    right.issueServerCertificate(['127.0.0.1'], 3_600_000),
    wrong.issueServerCertificate(['127.0.0.1'], 3_600_000),
  ]);
  const config = {
    connectorId: 'x',
    group: 'default',
    version: 'v1',
    apps: [],
    replicas: [],
    channels: 1,
    heartbeatIntervalMs: 600_000, // no heartbeat loss while the test moves the clock
    configRefreshMs: 300_000,
    renewAfterMs: 3_600_000,
  };
  // The relay's address answered first by a host with another CA's certificate.
  const server: Server = createServer({ cert: bad.certPem, key: bad.keyPem }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(config));
  });
  const wss = new WebSocketServer({ server });
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => sockets.push(ws));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const ws of sockets) ws.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;

  const stateDir = path.join(tempDir(t), 'state');
  const { keyPem, csrPem } = await createKeyAndCsr('c');
  const id = '6f1c2a4e-0000-4000-8000-0000000000cc';
  const issued = await right.signConnectorCsr(csrPem, { connectorId: id, lifetimeMs: 3_600_000 });
  const now = new Date().toISOString();
  writeNewState(stateDir, {
    relayUrl: url,
    connectorId: id,
    name: 'edge',
    group: 'default',
    registeredAt: now,
    certificateIssuedAt: now,
    serial: issued.serial,
    keyPem,
    certPem: issued.certPem,
    caPem: right.certPem,
  });

  const clock = new ManualClock();
  const { log, lines } = capturingLogger();
  const untrusted = () => lines.filter((l) => l['code'] === 'ERR_RELAY_UNTRUSTED' && Number(l['level']) === 50);
  const c = new Connector({ stateDir, log, clock, random: () => 1 });
  t.teardown(() => c.close(0));
  /** Moves the clock past each backoff until cond holds (an attempt may be in flight at any moment). */
  const advanceUntil = (cond: () => boolean, what: string) =>
    waitFor(
      async () => {
        if (cond()) return true;
        await clock.advance(30_000);
        return cond();
      },
      { what, timeoutMs: 20_000, everyMs: 20 },
    );
  let started = false;
  const starting = c.start().then(() => (started = true));

  // Start: the config pull is retried with backoff, an error line each time.
  await advanceUntil(() => untrusted().length >= 3, 'three untrusted attempts');
  t.equal(started, false, 'still trying');
  t.equal(c.fatalError, undefined, 'not stopped');
  const msg = String(untrusted()[0]?.['msg']);
  t.notMatch(msg, /--relay-ca/, 'no --relay-ca (connector run has none)');
  t.match(msg, path.join(stateDir, 'ca.pem'), 'names the pinned ca.pem');

  // The right relay answers again: the connector comes up.
  server.setSecureContext({ cert: good.certPem, key: good.keyPem });
  await advanceUntil(() => started && c.openChannels() === 1, 'start and the channel');
  await starting;

  // While running, the address answers with the wrong certificate again: channels retry, the connector stays.
  server.setSecureContext({ cert: bad.certPem, key: bad.keyPem });
  server.closeAllConnections();
  for (const ws of sockets) ws.terminate();
  const before = untrusted().length;
  await advanceUntil(() => untrusted().length >= before + 3, 'three untrusted channel attempts');
  t.equal(c.fatalError, undefined, 'a running connector is not stopped by an untrusted relay');
  server.setSecureContext({ cert: good.certPem, key: good.keyPem });
  await advanceUntil(() => c.openChannels() === 1, 'the channel again');
  t.pass('channels reopen once the right relay answers');
});
