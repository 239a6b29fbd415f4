// Black-box: an administrator manages embedded-provider users with the CLI, gets
// a token with `proxyctl login` (device flow, approved in a browser), and
// registers a connector without passing any token.
import t from 'tap';
import { existsSync, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Agent } from 'undici';
import { BrowserSim } from './helpers/browser-sim.js';
import { Proc, runCli, tempDir } from './helpers/proc.js';

t.test('users CLI, proxyctl login, register with the stored token', async (t) => {
  const dir = tempDir(t);
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(
    config,
    `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0" }
apps: [ { name: wiki, externalUrl: "https://wiki.localhost/", internalUrl: "http://127.0.0.1:9/", assignment: any } ]
`,
  );
  const env = { PROXYCTL_CONFIG_DIR: path.join(dir, 'cli-config') };
  const passwordFile = path.join(dir, 'pw');
  writeFileSync(passwordFile, 'admin password 1\n');
  let r = await runCli([
    'users',
    'add',
    'Admin',
    '--config',
    config,
    '--roles',
    'ProxyAdministrator',
    '--email',
    'admin@example.com',
    '--password-file',
    passwordFile,
  ]);
  t.equal(r.code, 0, r.stderr);
  r = await runCli(['users', 'add', 'admin', '--config', config, '--password-file', passwordFile]);
  t.equal(r.code, 1, 'duplicate (case-insensitive) refused');
  t.match(r.stderr, /\[ERR_USAGE\]/);
  r = await runCli(['users', 'list', '--config', config, '--json']);
  t.match(JSON.parse(r.stdout), [{ username: 'admin', roles: ['ProxyAdministrator'], totp: false }]);
  t.notMatch(r.stdout, /scrypt/, 'no hashes printed');

  const relay = new Proc(['relay', 'serve', '--config', config]);
  t.teardown(() => relay.stop());
  const adminReady = await relay.waitMsg('admin listener ready');
  const adminUrl = `http://127.0.0.1:${(adminReady['listen'] as string).split(':').pop()}`;
  const api = await relay.waitMsg('connector API listening');
  const ready = await relay.waitMsg('public listener ready');
  const publicPort = (ready['listen'] as { port: number }).port;
  const caFile = path.join(dir, 'data', 'ca.pem');
  const relayUrl = String(api['url']);

  const login = new Proc(['login', '--relay', relayUrl, '--relay-ca', caFile], { env });
  t.teardown(() => login.stop());
  await login.waitForStdout(/confirm the code/, 20_000).catch(() => undefined); // asserted next
  const url = /open (\S+)/.exec(login.stdoutText)?.[1];
  t.ok(url, `login printed a URL: ${login.stdoutText} ${login.stderrText}`);
  t.match(url!, new RegExp(`^https://login\\.localhost:${publicPort}/device`));

  // The administrator approves in a browser.
  const client = new Agent({
    connect: {
      ca: (await import('node:fs')).readFileSync(caFile, 'utf8'),
      lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
    },
  });
  t.teardown(() => client.close());
  const sim = new BrowserSim(client);
  let page = await sim.follow(url!);
  for (let i = 0; i < 6 && !/<h1>Signed in/.test(page.body); i++) {
    page = /name="username"/.test(page.body)
      ? await sim.submit(page, { username: 'admin', password: 'admin password 1' })
      : await sim.submit(page, {});
  }
  t.match(page.body, /<h1>Signed in/);
  t.equal(await login.exited, 0, login.stderrText);
  const tokenFile = path.join(dir, 'cli-config', 'tokens.json');
  t.ok(existsSync(tokenFile));
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'token store is 0600');

  r = await runCli(
    [
      'connector',
      'register',
      '--relay',
      relayUrl,
      '--relay-ca',
      caFile,
      '--state-dir',
      path.join(dir, 'c1'),
      '--name',
      'edge-1',
    ],
    { env },
  );
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /registered connector/);
  r = await runCli(['relay', 'connectors', 'list', '--config', config, '--json']);
  t.match(JSON.parse(r.stdout), [{ name: 'edge-1', registeredBy: 'admin:admin' }]);

  // The same login against the administration API, then the CLI manages the relay remotely.
  const refused = await runCli(['login', '--relay', adminUrl], { env });
  t.equal(refused.code, 1, 'without the CA, the embedded provider cannot be trusted');
  t.match(
    refused.stderr,
    /^proxyctl: cannot use the identity provider https:\/\/login\.localhost.*--relay-ca.*\[ERR_RELAY_UNTRUSTED\]\n$/,
  );
  const adminLogin = new Proc(['login', '--relay', adminUrl, '--relay-ca', caFile], { env });
  t.teardown(() => adminLogin.stop());
  await adminLogin.waitForStdout(/confirm the code/, 20_000).catch(() => undefined); // asserted next
  const adminDeviceUrl = /open (\S+)/.exec(adminLogin.stdoutText)?.[1];
  t.ok(adminDeviceUrl, `login printed a URL: ${adminLogin.stdoutText} ${adminLogin.stderrText}`);
  page = await sim.follow(adminDeviceUrl!);
  for (let i = 0; i < 6 && !/<h1>Signed in/.test(page.body); i++) page = await sim.submit(page, {});
  t.match(page.body, /<h1>Signed in/, 'approved in the browser already signed in');
  t.equal(await adminLogin.exited, 0, adminLogin.stderrText);
  r = await runCli(
    [
      'app',
      'publish',
      '--relay',
      adminUrl,
      '--name',
      'docs',
      '--external-url',
      'https://docs.localhost/',
      '--internal-url',
      'http://127.0.0.1:9/',
    ],
    { env },
  );
  t.equal(r.code, 0, r.stderr);
  r = await runCli(['app', 'list', '--relay', adminUrl, '--json'], { env });
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), [
    { name: 'wiki', source: 'file' },
    { name: 'docs', source: 'api', updatedBy: 'api:admin' },
  ]);
  r = await runCli(['app', 'update', 'wiki', '--relay', adminUrl, '--set', 'backendTimeout=30s'], { env });
  t.equal(r.code, 1, 'a file app is read-only');
  t.match(r.stderr, /^proxyctl: .*configuration file.*\[ERR_READ_ONLY\]\n$/);
  r = await runCli(['audit', 'list', '--relay', adminUrl, '--action', 'app.', '--json'], { env });
  t.match(JSON.parse(r.stdout), [{ action: 'app.publish', actor: 'api:admin' }]);

  r = await runCli(['users', 'remove', 'admin', '--config', config]);
  t.equal(r.code, 0);
  t.equal(await relay.stop(), 0);
});
