// Regression (outside reliability run): a registration whose relay issued and recorded
// the identity but whose answer never reached the CLI (relay gone, connection cut after
// the commit). The CLI saves key, CSR and a random idempotency key before sending; run
// again, it sends the same request and gets the same identity back: one connector, no
// orphan. The relay gives it back only for the same key pair and the same token.
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { registerConnector } from '../src/commands/connector-register.js';
import { Connector } from '../src/connector/connector.js';
import { RelayClient } from '../src/connector/relay-client.js';
import { loadPending, loadState } from '../src/connector/state.js';
import type { RegisterRequest } from '../src/protocol/connector-api.js';
import type { ConnectorRepo } from '../src/store/index.js';
import { startBackend } from './helpers/backend.js';
import { ec, ecCsr, rawCsr, OID } from './helpers/csr.js';
import { startHarness, testLogger, type Harness } from './helpers/harness.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

/** A TCP forwarder to the relay's connector API: refuses connections while `accept` is 0; `cut()` drops every one. */
async function forwarder(t: Test, target: URL) {
  const sockets = new Set<Socket>();
  const state = { url: '', accept: Infinity, cut: () => sockets.forEach((s) => s.destroy()) };
  const server: Server = createServer((inbound) => {
    sockets.add(inbound);
    inbound.on('close', () => sockets.delete(inbound));
    if (state.accept <= 0) return void inbound.destroy();
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
    state.cut();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  state.url = `https://127.0.0.1:${(server.address() as { port: number }).port}/`;
  return state;
}

/** The fault: every connection through the forwarder is cut just after the relay committed a registration. */
function cutAfterCommit(h: Harness, fwd: { cut(): void }): { armed: boolean; fired: number } {
  const fault = { armed: true, fired: 0 };
  const repo: ConnectorRepo = h.relay.store.connectors;
  const register = repo.register.bind(repo);
  repo.register = async (input) => {
    const record = await register(input);
    if (fault.armed) {
      fault.fired++;
      fwd.cut();
    }
    return record;
  };
  return fault;
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => err as { code?: string; message?: string; details?: Record<string, unknown> },
  );

async function setup(t: Test) {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const h = await startHarness(t, {
    yaml: () => `apps:
  - { name: files, externalUrl: "https://files.test/", internalUrl: "${backend.origin}/", preauth: passthrough }
`,
  });
  const dir = tempDir(t);
  const caFile = path.join(dir, 'relay-ca.pem');
  writeFileSync(caFile, h.relay.ca.certPem);
  const fwd = await forwarder(t, new URL(h.apiUrl));
  const lines: string[] = [];
  const out = (l: string) => void lines.push(l);
  const quiet = () => undefined;
  const stateDir = path.join(dir, 'state');
  const base = { relay: fwd.url, relayCa: caFile, stateDir, name: 'edge', group: 'default' };
  return { h, fwd, lines, out, quiet, stateDir, base, dir };
}

t.test('the answer is lost after the relay committed: running again gives the same connector', async (t) => {
  const { h, fwd, lines, out, quiet, stateDir, base } = await setup(t);
  const tokenFile = path.join(path.dirname(stateDir), 'token');
  writeFileSync(tokenFile, await h.idp.adminToken(), { mode: 0o600 });
  const fault = cutAfterCommit(h, fwd);

  const first = await failure(registerConnector({ ...base, tokenFile }, out, quiet));
  t.equal(fault.fired, 1, 'the relay committed the registration, then the connection was cut');
  t.equal(first?.code, 'ERR_RELAY_UNREACHABLE', 'the CLI saw no answer');
  t.equal(first?.details?.['pending'], stateDir, 'and says where the attempt was saved');
  t.match(first?.message, /run the same command again to resume it/);
  const recorded = await h.relay.store.connectors.list();
  t.equal(recorded.length, 1, 'the relay holds the connector');
  t.notOk(existsSync(path.join(stateDir, 'cert.pem')), 'the CLI has no certificate');
  const pending = loadPending(stateDir);
  t.ok(pending, 'but has its attempt: key, CSR and idempotency key');
  t.match(
    (() => {
      try {
        return loadState(stateDir);
      } catch (err) {
        return err;
      }
    })(),
    { code: 'ERR_STATE_INVALID', details: { reason: 'no-identity' } },
    '`connector run` says to finish the registration',
  );

  fault.armed = false;
  lines.length = 0;
  await registerConnector({ ...base, tokenFile }, out, quiet);
  t.match(lines[0], /^resuming the registration of edge started at /, 'the re-run says it resumes');
  t.match(lines[1], `registered connector ${recorded[0]!.id} `, 'and gets the connector the relay recorded');
  const listed = await h.relay.store.connectors.list();
  t.equal(listed.length, 1, 'still one connector');
  t.equal(listed[0]!.certificates, 1, 'with one certificate');
  const saved = loadState(stateDir);
  t.equal(saved.connectorId, recorded[0]!.id, 'saved under that id');
  t.equal(saved.keyPem, pending!.keyPem, 'with the key of the first attempt');
  t.ok(saved.confirmedAt, 'confirmed');
  t.equal(loadPending(stateDir), undefined, 'the attempt is cleared');
  t.notOk(existsSync(path.join(stateDir, 'pending-key.pem')), 'its key file too');

  // And it runs: a request through it reaches the backend.
  const connector = new Connector({ stateDir, log: testLogger() });
  t.teardown(() => connector.close(1000));
  await connector.start();
  await waitFor(() => connector.openChannels() > 0, { what: "the connector's channels" });
  const r = await request(h.url('files.test', '/echo?after-retry'), { dispatcher: h.client });
  await r.body.dump();
  t.equal(r.statusCode, 200, 'traffic flows through the connector');
});

t.test('the relay is unreachable: the attempt is saved, and running again registers it once', async (t) => {
  const { h, fwd, lines, out, quiet, stateDir, base } = await setup(t);
  const token = await h.idp.adminToken();
  fwd.accept = 0;
  const first = await failure(registerConnector({ ...base, token }, out, quiet));
  t.equal(first?.code, 'ERR_RELAY_UNREACHABLE');
  t.match(first?.message, /saved in .*pending-key\.pem and pending\.json/, 'says what was saved');
  const saved = loadPending(stateDir);
  t.ok(saved, 'saved before sending');
  t.same(await h.relay.store.connectors.list(), [], 'nothing reached the relay');

  // Another name in the same directory is not this registration.
  const other = await failure(registerConnector({ ...base, name: 'other', token }, out, quiet));
  t.equal(other?.code, 'ERR_USAGE', 'another name is refused while an attempt is unfinished');
  t.ok(loadPending(stateDir), 'and the attempt is kept');

  fwd.accept = Infinity;
  lines.length = 0;
  await registerConnector({ ...base, token }, out, quiet);
  t.match(lines[0], /^resuming/);
  t.equal((await h.relay.store.connectors.list()).length, 1, 'one connector');
  t.equal(
    (await h.relay.store.connectors.registration(saved!.idempotencyKey))?.connectorId,
    loadState(stateDir).connectorId,
    'recorded under the key saved before the first sending',
  );
  t.equal(loadPending(stateDir), undefined, 'the attempt is cleared');
});

t.test('a refused fresh attempt leaves nothing behind; a refused retry keeps its attempt', async (t) => {
  const { h, fwd, out, quiet, stateDir, base } = await setup(t);
  const notAdmin = await h.idp.adminToken({ roles: ['Reader'] });
  const refused = await failure(registerConnector({ ...base, token: notAdmin }, out, quiet));
  t.equal(refused?.code, 'ERR_RELAY_REFUSED');
  t.notOk(existsSync(stateDir), 'a refusal of a fresh attempt removes the directory it made');

  // An attempt whose answer was lost, retried with another token: refused, and kept.
  const fault = cutAfterCommit(h, fwd);
  await failure(registerConnector({ ...base, token: await h.idp.adminToken() }, out, quiet));
  fault.armed = false;
  const another = await failure(registerConnector({ ...base, token: await h.idp.adminToken() }, out, quiet));
  t.equal(another?.code, 'ERR_RELAY_REFUSED', 'a retry with another token is refused');
  t.equal(another?.details?.['remoteCode'], 'ERR_CONFLICT');
  t.match(another?.message, /only with the administrator token it was started with/, 'and says what to do');
  t.ok(loadPending(stateDir), 'the attempt is kept: the relay may hold its connector');
  t.equal((await h.relay.store.connectors.list()).length, 1, 'nothing new issued');

  // The connector it made is revoked: the attempt is over.
  await h.relay.store.connectors.revoke('edge', 'test');
  const revoked = await failure(registerConnector({ ...base, token: await h.idp.adminToken() }, out, quiet));
  t.equal(revoked?.code, 'ERR_CERT_REVOKED');
  t.equal(loadPending(stateDir), undefined, 'a revoked attempt is cleared');
  await registerConnector({ ...base, token: await h.idp.adminToken() }, out, quiet);
  t.equal(
    (await h.relay.store.connectors.list()).filter((c) => c.revokedAt === null).length,
    1,
    'a new registration after that works',
  );
});

t.test('hostile retries of a registration key', async (t) => {
  const h = await startHarness(t);
  const client = new RelayClient(h.apiUrl, { caPem: h.relay.ca.certPem });
  t.teardown(() => client.close());
  const token = await h.idp.adminToken();
  const keys = ec('prime256v1');
  const key = 'K'.repeat(43);
  const req: RegisterRequest = {
    csr: ecCsr(keys),
    name: 'edge',
    group: 'default',
    version: 'test',
    idempotencyKey: key,
  };
  const refusal = (p: Promise<unknown>) =>
    p.then(
      () => ({ code: 'accepted' }),
      (err: unknown) => ({
        code: (err as { details?: { remoteCode?: string } }).details?.remoteCode,
        status: (err as { status?: number }).status,
      }),
    );

  // Two sendings at once (a retry while the first still runs): one connector, one answer.
  const [a, b] = await Promise.all([client.register(token, req), client.register(token, req)]);
  t.equal(a.connectorId, b.connectorId, 'racing sendings get one connector');
  t.equal(a.certificate, b.certificate, 'and one certificate');
  const again = await client.register(token, req);
  t.equal(again.connectorId, a.connectorId, 'a retry gets the same connector');
  t.equal(again.certificate, a.certificate, 'the same certificate');
  t.equal(again.serial, a.serial);
  t.equal(again.caCertificate, h.relay.ca.certPem);
  const fresh = rawCsr({
    subjectKey: keys.publicKey,
    signer: keys.privateKey,
    signatureOid: OID.ecdsaWithSha256,
    hash: 'sha256',
    cn: 'x',
  });
  t.equal(
    (await client.register(token, { ...req, csr: fresh })).connectorId,
    a.connectorId,
    'a new CSR for the same key pair is the same retry',
  );

  t.same(
    await refusal(client.register(token, { ...req, csr: ecCsr(ec('prime256v1')) })),
    {
      code: 'ERR_CONFLICT',
      status: 409,
    },
    'the same key with another key pair is refused',
  );
  const forged = ecCsr(keys, 'sha256', ec('prime256v1').privateKey);
  t.same(
    await refusal(client.register(token, { ...req, csr: forged })),
    { code: 'ERR_CSR_SIGNATURE', status: 400 },
    'a CSR naming the public key but not signed by it proves nothing',
  );
  t.same(
    await refusal(client.register(await h.idp.adminToken(), req)),
    { code: 'ERR_CONFLICT', status: 409 },
    'the same key and CSR with another token is refused',
  );
  t.same(
    await refusal(client.register(token, { ...req, name: 'other' })),
    { code: 'ERR_CONFLICT', status: 409 },
    'the same key for another name is refused',
  );
  t.same(
    await refusal(client.register(await h.idp.adminToken({ roles: ['Reader'] }), req)),
    { code: 'ERR_TOKEN_NOT_ADMIN', status: 403 },
    "a token that is no administrator's is refused before the key is looked at",
  );
  for (const bad of ['short', 'K'.repeat(129), 'K'.repeat(42) + '=', 'K'.repeat(40) + ' ../']) {
    t.same(
      await refusal(client.register(token, { ...req, idempotencyKey: bad })),
      { code: 'ERR_BAD_REQUEST', status: 400 },
      `a malformed key is refused: ${bad.length} characters ending ${JSON.stringify(bad.slice(-4))}`,
    );
  }
  t.same(
    await refusal(client.register(token, { ...req, idempotencyKey: 42 as unknown as string })),
    { code: 'ERR_BAD_REQUEST', status: 400 },
    'a key that is not a string is refused',
  );
  const listed = await h.relay.store.connectors.list();
  t.equal(listed.length, 1, 'one connector through all of it');
  t.equal(listed[0]!.certificates, 1, 'with one certificate');

  // Renewed since: the connector had its answer; the registration's certificate is on its way out.
  const keyPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const authed = new RelayClient(h.apiUrl, { caPem: h.relay.ca.certPem, certPem: a.certificate, keyPem });
  await authed.renew(ecCsr(ec('prime256v1')));
  await authed.close();
  t.same(
    await refusal(client.register(token, req)),
    { code: 'ERR_CONFLICT', status: 409 },
    'a registration renewed since is not given again',
  );

  await h.relay.store.connectors.revoke(a.connectorId, 'test');
  t.same(
    await refusal(client.register(token, req)),
    { code: 'ERR_CERT_REVOKED', status: 403 },
    'a revoked connector is not given again',
  );
});
