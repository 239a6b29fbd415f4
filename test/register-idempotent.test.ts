// Regression (outside reliability run): `connector register` whose relay issued and
// recorded the identity, and whose CLI saved it, but which died before the
// verification pull. Running it again must confirm that identity (no second one, no
// token needed), never refuse forever; the first run says exactly what was saved.
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { registerConnector } from '../src/commands/connector-register.js';
import { loadState } from '../src/connector/state.js';
import { startHarness } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';

/** A TCP forwarder to the relay that can be told to refuse new connections (the relay "dies"). */
async function forwarder(
  t: { teardown(fn: () => unknown): void },
  target: URL,
): Promise<{ url: string; accept: number }> {
  const state = { url: '', accept: Infinity };
  const sockets = new Set<Socket>();
  const server: Server = createServer((inbound) => {
    sockets.add(inbound);
    inbound.on('close', () => sockets.delete(inbound));
    if (state.accept <= 0) {
      inbound.destroy();
      return;
    }
    state.accept--;
    const outbound = connect(Number(target.port), target.hostname);
    sockets.add(outbound);
    outbound.on('close', () => sockets.delete(outbound));
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as { port: number }).port;
  state.url = `https://127.0.0.1:${port}/`;
  return state;
}

t.test('a registration cut short before its confirmation completes when run again', async (t) => {
  const h = await startHarness(t);
  const dir = tempDir(t);
  const caFile = path.join(dir, 'relay-ca.pem');
  writeFileSync(caFile, h.relay.ca.certPem);
  const stateDir = path.join(dir, 'state');
  const fwd = await forwarder(t, new URL(h.apiUrl));
  const lines: string[] = [];
  const out = (l: string) => void lines.push(l);
  const warnings: string[] = [];
  const warn = (l: string) => void warnings.push(l);
  const base = { relay: fwd.url, relayCa: caFile, stateDir, name: 'edge', group: 'default' };

  // The registration call gets through; the relay is gone for the verification pull.
  fwd.accept = 1;
  const first = await registerConnector({ ...base, token: await h.idp.adminToken() }, out, warn).then(
    () => undefined,
    (err: unknown) => err as { code?: string; details?: Record<string, unknown> },
  );
  t.equal(first?.code, 'ERR_RELAY_UNREACHABLE', 'the first run fails: the relay did not confirm');
  const saved = loadState(stateDir);
  t.equal(first?.details?.['connectorId'], saved.connectorId, 'the error names the connector that was saved');
  t.equal(first?.details?.['saved'], stateDir, 'and where it was saved');
  const listed = await h.relay.store.connectors.list();
  t.equal(listed.length, 1, 'the relay recorded one connector');

  warnings.length = 0; // the first run warned about --token
  // Still down: the second run says the same, and issues nothing.
  fwd.accept = 0;
  const down = await registerConnector(base, out, warn).then(
    () => undefined,
    (err: unknown) => err as { code?: string; details?: Record<string, unknown> },
  );
  t.equal(down?.code, 'ERR_RELAY_UNREACHABLE', 'relay still down: not confirmed');
  t.equal(down?.details?.['connectorId'], saved.connectorId, 'names the saved connector again');

  // Back up: the same command (no token this time) confirms the saved identity.
  fwd.accept = Infinity;
  lines.length = 0;
  await registerConnector(base, out, warn);
  t.match(lines[0], saved.connectorId, 'confirmed the saved connector');
  t.equal((await h.relay.store.connectors.list()).length, 1, 'no second connector was issued');
  t.equal(loadState(stateDir).serial, saved.serial, 'the saved identity is unchanged');
  t.same(warnings, [], 'no warnings (no token argument on the re-runs)');
  t.ok(loadState(stateDir).confirmedAt, 'the registration is recorded as confirmed');

  // Once confirmed, running it again is the refusal it always was: nothing to do.
  const again = await registerConnector(base, out, warn).then(
    () => undefined,
    (err: unknown) => err as { code?: string; details?: Record<string, unknown> },
  );
  t.equal(again?.code, 'ERR_USAGE', 'a confirmed registration run again is refused');
  t.equal(again?.details?.['confirmed'], true, 'as complete');
  t.equal((await h.relay.store.connectors.list()).length, 1, 'still one connector');
});

t.test('a saved identity for something else is refused, not overwritten', async (t) => {
  const h = await startHarness(t);
  const dir = tempDir(t);
  const caFile = path.join(dir, 'relay-ca.pem');
  writeFileSync(caFile, h.relay.ca.certPem);
  const stateDir = path.join(dir, 'state');
  const quiet = () => undefined;
  const base = { relay: h.apiUrl, relayCa: caFile, stateDir, name: 'edge', group: 'default' };
  await registerConnector({ ...base, token: await h.idp.adminToken() }, quiet, quiet);
  const saved = loadState(stateDir);

  const code = (p: Promise<void>) =>
    p.then(
      () => 'ok',
      (err: unknown) => (err as { code?: string }).code,
    );
  t.equal(await code(registerConnector({ ...base, name: 'other' }, quiet, quiet)), 'ERR_USAGE', 'another name');
  t.equal(await code(registerConnector({ ...base, group: 'eu' }, quiet, quiet)), 'ERR_USAGE', 'another group');
  t.equal(
    await code(registerConnector({ ...base, relay: 'https://relay.invalid:8444/' }, quiet, quiet)),
    'ERR_USAGE',
    'another relay',
  );
  t.ok(saved.confirmedAt, 'a registration the relay confirmed at once is marked so');
  t.equal(await code(registerConnector(base, quiet, quiet)), 'ERR_USAGE', 'the same registration: nothing to do');

  await h.relay.store.connectors.revoke(saved.connectorId, 'test');
  t.equal(await code(registerConnector(base, quiet, quiet)), 'ERR_CERT_REVOKED', 'a revoked identity says so');
  t.equal(loadState(stateDir).connectorId, saved.connectorId, 'and is left in place');
  t.equal((await h.relay.store.connectors.list()).length, 1, 'nothing new issued');
  t.ok(existsSync(path.join(stateDir, 'key.pem')));
});
