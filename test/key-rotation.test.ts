// Key rotation while the relay runs: a new session key (old cookies still open
// with the retired key, new cookies carry the new kid) and a new assertion key
// (the JWKS publishes old and new, new assertions use the new kid), both made
// on a separate store connection as the admin CLI would; and the CLI itself
// (`proxyctl relay keys rotate`, the built binary: `npm run build` first).
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import path from 'node:path';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { request } from 'undici';
import { rotateKey } from '../src/crypto/keyring.js';
import { cookieName } from '../src/relay/auth/session.js';
import { openSqliteStore } from '../src/store/index.js';
import { BrowserSim } from './helpers/browser-sim.js';
import { startHarness, type Harness } from './helpers/harness.js';
import { runCli, tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

async function echoBackend(t: Test): Promise<{ port: number; seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as { port: number }).port, seen };
}

/** Waits until cond() holds (failing after 5 s); returns how long it took. */
async function timeUntil(what: string, cond: () => boolean | Promise<boolean>): Promise<number> {
  const start = Date.now();
  await waitFor(cond, { timeoutMs: 5000, everyMs: 25, what });
  return Date.now() - start;
}

t.test('key rotation while the relay runs', async (t) => {
  const backend = await echoBackend(t);
  const h: Harness = await startHarness(t, {
    yaml: () => `apps:
  - name: keys
    externalUrl: "https://keys.test/"
    internalUrl: "http://127.0.0.1:${backend.port}/"
    clientId: "urn:proxyctl:keys"
    clientSecret: keys-secret
    assignment: any
`,
  });
  const port = h.publicPort;
  h.idp.registerClient({
    clientId: 'urn:proxyctl:keys',
    clientSecret: 'keys-secret',
    redirectUris: [`https://keys.test:${port}/.proxyctl/callback`],
    postLogoutRedirectUris: [`https://keys.test:${port}/.proxyctl/signed-out`],
  });
  h.idp.setUser('alice', { email: 'alice@example.com', name: 'Alice', groups: [] });
  h.idp.setUser('bob', { email: 'bob@example.com', name: 'Bob', groups: [] });
  await h.addConnector();
  const app = h.config.apps[0]!;
  const host = `keys.test:${port}`;

  // The admin CLI's view of the same data directory: its own SQLite connection.
  const cli = openSqliteStore(h.config.dataDir);
  t.teardown(() => cli.close());

  const withCookie = async (cookie: string, p = '/x') => {
    const r = await request(h.url('keys.test', p), {
      dispatcher: h.client,
      headers: { cookie: `${cookieName(app)}=${cookie}`, accept: 'application/json' },
    });
    const text = await r.body.text();
    return { status: r.statusCode, body: text };
  };
  const fetchJwks = async (): Promise<JSONWebKeySet> => {
    const r = await request(h.url('keys.test', '/.well-known/proxyctl/jwks.json'), { dispatcher: h.client });
    if (r.statusCode !== 200) throw new Error(`JWKS answered ${r.statusCode}: ${await r.body.text()}`);
    return (await r.body.json()) as JSONWebKeySet;
  };
  const kidsOf = (set: JSONWebKeySet) => set.keys.map((k) => k.kid);

  const alice = new BrowserSim(h.client);
  const signedIn = await alice.signIn(h.url('keys.test', '/before'), 'alice');
  t.equal(signedIn.status, 200, signedIn.body.slice(0, 200));
  const oldCookie = alice.jar.get(host, cookieName(app))!;
  t.ok(oldCookie, 'session cookie set');
  const oldSessionKid = decodeProtectedHeader(oldCookie).kid;
  t.equal(oldSessionKid, h.relay.keyRing.currentSessionKey().kid, 'the cookie names the current session key');
  const firstAssertion = String(
    (JSON.parse(signedIn.body) as { headers: IncomingHttpHeaders }).headers['x-proxyctl-jwt-assertion'],
  );
  const oldAssertionKid = decodeProtectedHeader(firstAssertion).kid;
  t.same(kidsOf(await fetchJwks()), [oldAssertionKid], 'one assertion key published before rotation');

  await t.test('session key: the old cookie still opens, a new sign-in gets the new kid', async (t) => {
    const newKid = await rotateKey(cli.keys, 'session', 'test');
    t.not(newKid, oldSessionKid);
    const took = await timeUntil(
      'the relay to load the new session key',
      () => h.relay.keyRing.currentSessionKey().kid === newKid,
    );
    t.ok(took <= 2000, `picked up within ${took} ms (watch every 100 ms in the harness)`);
    t.ok(h.relay.keyRing.sessionKey(oldSessionKid!), 'the retired key is still in the ring');

    const old = await withCookie(oldCookie);
    t.equal(old.status, 200, 'the cookie sealed with the retired key still works');
    t.equal((JSON.parse(old.body) as { url: string }).url, '/x');

    const bob = new BrowserSim(h.client);
    const done = await bob.signIn(h.url('keys.test', '/after'), 'bob');
    t.equal(done.status, 200, done.body.slice(0, 200));
    const fresh = bob.jar.get(host, cookieName(app))!;
    t.equal(decodeProtectedHeader(fresh).kid, newKid, 'a new sign-in is sealed with the new key');
    t.equal(decodeProtectedHeader(fresh).alg, 'dir');
    t.equal(decodeProtectedHeader(fresh).enc, 'A256GCM');
    t.equal((await withCookie(fresh)).status, 200, 'and it works');

    const audit = await cli.keys.list('session');
    t.same(
      audit.map((k) => k.kid),
      [newKid, oldSessionKid],
      'newest first, retired one kept',
    );
    t.ok(audit[1]!.retiredAt !== null && audit[0]!.retiredAt === null, 'old key retired, new key current');
  });

  await t.test('assertion key: JWKS publishes both, new assertions use the new kid', async (t) => {
    const newKid = await rotateKey(cli.keys, 'assertion', 'test');
    t.not(newKid, oldAssertionKid);
    let jwks: JSONWebKeySet = { keys: [] };
    const took = await timeUntil('the JWKS to publish the new key', async () => {
      jwks = await fetchJwks();
      return kidsOf(jwks).includes(newKid);
    });
    t.ok(took <= 2000, `published within ${took} ms`);
    t.same(kidsOf(jwks).sort(), [oldAssertionKid, newKid].sort(), 'old and new kid published');
    for (const k of jwks.keys) {
      t.equal(k.kty, 'EC');
      t.equal(k.crv, 'P-256');
      t.notOk('d' in k, `no private part published for ${k.kid}`);
    }
    const keySet = createLocalJWKSet(jwks);

    const before = backend.seen.length;
    const r = await withCookie(oldCookie, '/assert');
    t.equal(r.status, 200);
    t.equal(backend.seen.length, before + 1, 'the backend saw the request');
    const jwt = String(backend.seen.at(-1)!['x-proxyctl-jwt-assertion']);
    t.equal(decodeProtectedHeader(jwt).kid, newKid, 'the assertion is signed with the new key');
    const { payload, protectedHeader } = await jwtVerify(jwt, keySet, {
      issuer: 'https://keys.test',
      audience: 'https://keys.test/',
    });
    t.equal(protectedHeader.alg, 'ES256');
    t.equal(payload.sub, 'alice');

    // An assertion issued before the rotation is still valid for its few minutes.
    const old = await jwtVerify(firstAssertion, keySet, {
      issuer: 'https://keys.test',
      audience: 'https://keys.test/',
    });
    t.equal(old.protectedHeader.kid, oldAssertionKid, 'the pre-rotation assertion verifies against the published JWKS');

    const listed = await cli.keys.list('assertion');
    t.same(
      listed.map((k) => k.kid),
      [newKid, oldAssertionKid],
    );
  });

  await t.test("the CLI rotating the running relay's data directory (another process)", async (t) => {
    const r = await runCli(['relay', 'keys', 'rotate', '--data-dir', h.config.dataDir, '--purpose', 'assertion']);
    t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim()})`);
    const kid = /^new assertion key (\S+)$/m.exec(r.stdout)?.[1];
    t.ok(kid, `printed the new kid: ${r.stdout}`);
    let kids: (string | undefined)[] = [];
    const took = await timeUntil("the JWKS to publish the CLI's key", async () => {
      kids = kidsOf(await fetchJwks());
      return kids.includes(kid);
    });
    t.ok(took <= 2000, `published within ${took} ms`);
    t.equal(kids.length, 3, 'all three assertion keys (none older than 10 min) published');
    const before = backend.seen.length;
    t.equal((await withCookie(oldCookie, '/cli')).status, 200);
    const jwt = String(backend.seen.at(before)!['x-proxyctl-jwt-assertion']);
    t.equal(decodeProtectedHeader(jwt).kid, kid, 'new assertions use the key the CLI made');
    await jwtVerify(jwt, createLocalJWKSet(await fetchJwks()), {
      issuer: 'https://keys.test',
      audience: 'https://keys.test/',
    });
  });
});

t.test('proxyctl relay keys rotate (built binary)', async (t) => {
  const dir = tempDir(t, 'proxyctl-keys-');
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(
    config,
    `dataDir: ./data
apps:
  - { name: wiki, externalUrl: "https://wiki.example.com/", internalUrl: "http://10.0.0.5/", assignment: any }
`,
  );
  const printed = (stdout: string) =>
    Object.fromEntries([...stdout.matchAll(/^new (session|assertion) key (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));

  let r = await runCli(['relay', 'keys', 'rotate', '--config', config]);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.trim()})`);
  t.equal(r.stderr, '', 'nothing on stderr');
  const first = printed(r.stdout);
  t.ok(first['session'] && first['assertion'], `both new kids printed: ${r.stdout}`);
  t.equal(r.stdout.trim().split('\n').length, 2, 'one line per key');

  r = await runCli(['relay', 'keys', 'rotate', '--config', config]);
  t.equal(r.code, 0, `second rotation exits 0 (stderr: ${r.stderr.trim()})`);
  const second = printed(r.stdout);
  t.ok(second['session'] && second['assertion']);
  t.not(second['session'], first['session'], 'a new session kid');
  t.not(second['assertion'], first['assertion'], 'a new assertion kid');

  r = await runCli(['relay', 'keys', 'rotate', '--config', config, '--purpose', 'session']);
  t.equal(r.code, 0);
  const third = printed(r.stdout);
  t.same(Object.keys(third), ['session'], '--purpose session rotates only the session key');

  const store = openSqliteStore(path.join(dir, 'data'));
  try {
    t.same(
      (await store.keys.list('session')).map((k) => k.kid),
      [third['session'], second['session'], first['session']],
      'the store holds the printed kids, newest current',
    );
    t.same(
      (await store.keys.list('assertion')).map((k) => k.kid),
      [second['assertion'], first['assertion']],
    );
    const rotations = (await store.audit.list(100)).filter((a) => a.action === 'key.rotate');
    t.equal(rotations.length, 5, 'each rotation is in the audit trail');
    t.ok(
      rotations.every((a) => a.actor === 'cli'),
      'recorded as the CLI',
    );
  } finally {
    await store.close();
  }

  r = await runCli(['relay', 'keys', 'rotate', '--config', config, '--purpose', 'cookies']);
  t.equal(r.code, 1, 'an unknown purpose is refused');
  t.equal(r.stdout, '');
  t.equal(r.stderr.trim().split('\n').length, 1, 'one stderr line');
  t.match(r.stderr, /\[ERR_USAGE\]\n$/);
});
