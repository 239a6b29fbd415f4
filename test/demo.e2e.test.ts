// `proxyctl demo` as a new user runs it (the built binary: `npm run build`
// first): it prints a URL, a password and a CA file; an anonymous browser is
// sent to the embedded provider; Ctrl-C stops it cleanly; a second run with the
// same data directory reuses the password, the CA and the registered connector;
// a port already in use is one clear [ERR_USAGE] line and exit 1.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import { BrowserSim } from './helpers/browser-sim.js';
import { Proc, runCli, tempDir } from './helpers/proc.js';

interface Printed {
  url: string;
  port: number;
  password: string;
  caFile: string;
  issuer: string;
}

async function startDemo(t: Test, dataDir: string): Promise<{ demo: Proc; printed: Printed }> {
  const demo = new Proc(['demo', '--port', '0', '--data-dir', dataDir]);
  t.teardown(() => demo.stop('SIGKILL', 2000));
  // A demo that exits or never gets there leaves the output below incomplete: that is reported there.
  await demo.waitForStdout(/Press Ctrl-C/, 30_000).catch(() => undefined);
  const out = demo.stdoutText;
  const url = /^\s+open:\s+(\S+)$/m.exec(out)?.[1];
  const password = /^\s+password (\S+)$/m.exec(out)?.[1];
  const caFile = /^\s+trust CA:\s+(\S+)/m.exec(out)?.[1];
  const issuer = /^\s+identity:\s+(\S+)$/m.exec(out)?.[1];
  if (!url || !password || !caFile || !issuer)
    throw new Error(`demo did not print URL, password, CA and issuer:\n${out}\n${demo.stderrText}`);
  return { demo, printed: { url, port: Number(new URL(url).port), password, caFile, issuer } };
}

/** Trusts the printed CA only, and resolves every host name to 127.0.0.1 (as *.localhost does in browsers). */
function clientFor(t: Test, caFile: string): Agent {
  const agent = new Agent({
    connect: { ca: readFileSync(caFile), lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) },
  });
  t.teardown(() => agent.close());
  return agent;
}

async function connectorsIn(t: Test, dataDir: string): Promise<{ id: string; name: string; status: string }[]> {
  const r = await runCli(['relay', 'connectors', 'list', '--data-dir', dataDir, '--json']);
  t.equal(r.code, 0, `connectors list exits 0 (stderr: ${r.stderr.trim()})`);
  return JSON.parse(r.stdout) as { id: string; name: string; status: string }[];
}

t.test('demo: prints where to go, redirects to sign in, stops on Ctrl-C, reuses its state', async (t) => {
  const dataDir = path.join(tempDir(t, 'proxyctl-demo-e2e-'), 'demo');

  const { demo, printed } = await startDemo(t, dataDir);
  t.match(printed.url, /^https:\/\/demo\.localhost:\d+\/$/, 'the app URL on demo.localhost');
  t.ok(printed.port > 0, 'an ephemeral port was chosen and printed');
  t.equal(printed.caFile, path.join(dataDir, 'ca.pem'), 'the CA file is in the data directory');
  t.equal(
    printed.issuer.replace(/\/$/, ''),
    `https://login.localhost:${printed.port}`,
    'the embedded provider on the same listener',
  );
  t.match(demo.stdoutText, /user demo/);
  const caBytes = readFileSync(printed.caFile);
  t.match(caBytes.toString(), /^-----BEGIN CERTIFICATE-----/);

  const client = clientFor(t, printed.caFile);
  const anon = await request(printed.url, { dispatcher: client });
  await anon.body.dump();
  t.equal(anon.statusCode, 302, 'an anonymous GET is sent to sign in (TLS verified against the printed CA)');
  const location = new URL(String(anon.headers['location']));
  t.equal(location.origin, `https://login.localhost:${printed.port}`, 'to the embedded provider at login.localhost');
  t.equal(location.searchParams.get('client_id') !== null, true, 'an OIDC authorization request');
  t.equal(
    location.searchParams.get('redirect_uri'),
    new URL('/.proxyctl/callback', printed.url).href,
    'coming back to the printed URL',
  );

  // The printed user and password work.
  const sim = new BrowserSim(client);
  const app = await sim.signIn(printed.url, 'demo', { password: printed.password });
  t.equal(app.status, 200, app.body.slice(0, 300));
  t.match(app.body, /<span id="user">demo<\/span>/, 'the sample app sees the demo user');

  t.same(
    (await connectorsIn(t, dataDir)).map((c) => c.name),
    ['demo-connector'],
    'one connector registered',
  );

  const started = Date.now();
  const code = await demo.stop('SIGINT', 10_000);
  const took = Date.now() - started;
  t.equal(code, 0, `Ctrl-C exits 0 (stderr: ${demo.stderrText.slice(-500)})`);
  t.ok(took < 5000, `stopped within ${took} ms`);
  t.match(demo.stdoutText, /stopping/);

  await t.test('a second run with the same data directory', async (t) => {
    const again = await startDemo(t, dataDir);
    t.equal(again.printed.password, printed.password, 'the same password is printed');
    t.equal(again.printed.caFile, printed.caFile);
    t.ok(readFileSync(again.printed.caFile).equals(caBytes), 'the CA file is byte for byte the same');

    const client2 = clientFor(t, again.printed.caFile);
    const sim2 = new BrowserSim(client2);
    const page = await sim2.signIn(again.printed.url, 'demo', { password: again.printed.password });
    t.equal(page.status, 200, `signed in again through the reused connector: ${page.body.slice(0, 300)}`);
    t.match(page.body, /<span id="user">demo<\/span>/);

    const listed = await connectorsIn(t, dataDir);
    t.equal(listed.length, 1, `the connector is not registered twice: ${JSON.stringify(listed)}`);
    t.equal(listed[0]?.name, 'demo-connector');
    t.not(listed[0]?.status, 'revoked');

    const code2 = await again.demo.stop('SIGINT', 10_000);
    t.equal(code2, 0, 'Ctrl-C exits 0 again');
  });
});

t.test('demo: a port already in use is one [ERR_USAGE] line and exit 1', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const port = (blocker.address() as AddressInfo).port;
  const dataDir = path.join(tempDir(t, 'proxyctl-demo-busy-'), 'demo');
  const started = Date.now();
  const r = await runCli(['demo', '--port', String(port), '--data-dir', dataDir], { timeoutMs: 30_000 });
  t.equal(r.code, 1, `exit 1 (stdout: ${r.stdout.trim()})`);
  t.ok(Date.now() - started < 15_000, 'exits promptly, nothing left running');
  const lines = r.stderr.trimEnd().split('\n');
  t.equal(lines.length, 1, `one stderr line: ${r.stderr}`);
  t.match(lines[0], /^proxyctl: .*\[ERR_USAGE\]$/);
  t.match(lines[0], String(port), 'names the port');
  t.notMatch(r.stdout, /Press Ctrl-C/, 'never claimed to be running');
});
