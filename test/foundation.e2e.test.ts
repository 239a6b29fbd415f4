// Black-box: the built `proxyctl` binary as an administrator runs it. A real OIDC
// provider issues tokens; a relay starts; connectors register, run, renew,
// survive a relay restart, and stop when revoked.
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { startIdp, type TestIdp } from './helpers/idp.js';
import { Proc, listeningSockets, runCli, tempDir } from './helpers/proc.js';
import { waitFor, within } from './helpers/wait.js';

/** Port 0: the system picks one, and the relay tells connectors (and this test) which. */
function relayYaml(issuer: string, port = 0): string {
  return `dataDir: ./data
connectorApi:
  listen: "127.0.0.1:${port}"
identity:
  issuer: "${issuer}"
  adminAudience: "api://proxyctl"
  adminClaim: roles
  adminValues: [ProxyAdministrator]
connectors:
  renewAfter: 4s
  heartbeatInterval: 300ms
  channels: 2
apps:
  - name: wiki
    externalUrl: "https://wiki.example.com:8443/"
    internalUrl: "http://127.0.0.1:9/"
    preauth: passthrough
`;
}

interface ConnectorRow {
  id: string;
  name: string;
  group: string;
  status: string;
  certificates: number;
}

t.test('relay, registration, channels, renewal, restart and revocation through the CLI', async (t) => {
  const idp: TestIdp = await startIdp();
  t.teardown(() => idp.close());
  const dir = tempDir(t);
  const configFile = path.join(dir, 'relay.yaml');
  writeFileSync(configFile, relayYaml(idp.issuer));
  const caFile = path.join(dir, 'data', 'ca.pem');
  const stateDir = path.join(dir, 'connector');

  const procs: Proc[] = [];
  t.teardown(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  });
  const startRelay = async () => {
    const relay = new Proc(['relay', 'serve', '--config', configFile]);
    procs.push(relay);
    const listening = await relay.waitMsg('connector API listening');
    await relay.waitMsg('relay ready');
    return { relay, url: String(listening['url']) };
  };
  const list = async (): Promise<ConnectorRow[]> => {
    const r = await runCli(['relay', 'connectors', 'list', '--config', configFile, '--json']);
    t.equal(r.code, 0, `list: ${r.stderr}`);
    return JSON.parse(r.stdout) as ConnectorRow[];
  };

  const first = await startRelay();
  let relay = first.relay;
  const relayUrl = first.url;
  /** `proxyctl connector register --relay <the relay> …args`. */
  const register = (args: string[], options?: Parameters<typeof runCli>[1]) =>
    runCli(['connector', 'register', '--relay', relayUrl, ...args], options);
  t.match(relayUrl, /^https:\/\/127\.0\.0\.1:[1-9]\d*\/$/, 'the relay names the port the system chose');
  // A restart keeps the address connectors know: pin the chosen port in the file.
  writeFileSync(configFile, relayYaml(idp.issuer, Number(new URL(relayUrl).port)));
  t.ok(existsSync(caFile), 'relay wrote <dataDir>/ca.pem');
  t.equal(statSync(path.join(dir, 'data', 'ca-key.pem')).mode & 0o777, 0o600, 'CA key is 0600');

  await t.test('a self-signed relay without --relay-ca is refused with a hint', async (t) => {
    const r = await register(['--token', await idp.adminToken(), '--state-dir', stateDir]);
    t.not(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    t.match(lines[0], /\[WARN_TOKEN_ARGUMENT\]$/, '--token is warned about first');
    t.equal(lines.length, 2, 'then one line for the error');
    t.match(lines[1], /\[ERR_RELAY_UNTRUSTED\]/);
    t.match(lines[1], /--relay-ca/);
    t.notOk(existsSync(stateDir), 'nothing stored locally');
  });

  await t.test('a token without the administrator role stores nothing', async (t) => {
    const tokenFile = path.join(dir, 'user-token');
    writeFileSync(tokenFile, await idp.adminToken({ roles: ['Reader'] }), { mode: 0o600 });
    const r = await register(['--token-file', tokenFile, '--relay-ca', caFile, '--state-dir', stateDir]);
    t.equal(r.code, 1);
    t.match(r.stderr, /ERR_TOKEN_NOT_ADMIN/);
    t.notOk(existsSync(path.join(stateDir, 'cert.pem')));
    t.same(await list(), []);
  });

  await t.test('no token at all is a usage error', async (t) => {
    const r = await register(['--relay-ca', caFile, '--state-dir', stateDir]);
    t.equal(r.code, 1);
    t.match(r.stderr, /\[ERR_TOKEN_MISSING\]/);
  });

  let connectorId = '';
  let registeredSerial = '';
  await t.test('register with a token file', async (t) => {
    const tokenFile = path.join(dir, 'admin-token');
    writeFileSync(tokenFile, await idp.adminToken(), { mode: 0o600 });
    const r = await register([
      '--token-file',
      tokenFile,
      '--relay-ca',
      caFile,
      '--state-dir',
      stateDir,
      '--name',
      'edge-1',
    ]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stderr, '', 'a token file draws no warning');
    t.match(r.stdout, /registered connector [0-9a-f-]{36} \(name edge-1, group default, 1 app\(s\)\)/);
    registeredSerial = /certificate serial ([0-9A-F]+)/.exec(r.stdout)?.[1] ?? '';
    t.ok(registeredSerial, 'prints the certificate serial');
    for (const f of ['cert.pem', 'key.pem', 'ca.pem']) t.ok(existsSync(path.join(stateDir, f)), f);
    t.equal(statSync(path.join(stateDir, 'key.pem')).mode & 0o777, 0o600, 'key.pem is 0600');
    t.equal(readFileSync(path.join(stateDir, 'ca.pem'), 'utf8'), readFileSync(caFile, 'utf8'), 'relay CA pinned');
    const rows = await list();
    t.equal(rows.length, 1);
    t.equal(rows[0]!.name, 'edge-1');
    connectorId = rows[0]!.id;
    const again = await register(['--token-file', tokenFile, '--relay-ca', caFile, '--state-dir', stateDir]);
    t.equal(again.code, 1, 'refuses to overwrite an existing identity');
    t.match(again.stderr, /\[ERR_USAGE\]/);
    t.equal((await list()).length, 1, 'and the relay recorded nothing new');
  });

  await t.test('register with PROXYCTL_TOKEN into another group', async (t) => {
    const r = await register(
      ['--relay-ca', caFile, '--state-dir', path.join(dir, 'c2'), '--group', 'branch', '--name', 'edge-2'],
      { env: { PROXYCTL_TOKEN: await idp.adminToken() } },
    );
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /group branch, 0 app\(s\)/);
    t.equal(r.stderr, '', 'PROXYCTL_TOKEN draws no warning');
  });

  await t.test(
    'register with --token still works, with a warning on stderr (regression: token in the process list)',
    async (t) => {
      const r = await register([
        '--token',
        await idp.adminToken(),
        '--relay-ca',
        caFile,
        '--state-dir',
        path.join(dir, 'c3'),
        '--group',
        'branch',
        '--name',
        'edge-3',
      ]);
      t.equal(r.code, 0, r.stderr);
      t.match(r.stdout, /registered connector [0-9a-f-]{36} \(name edge-3/);
      const lines = r.stderr.trim().split('\n');
      t.equal(lines.length, 1, 'one warning line');
      t.match(lines[0], /--token-file/);
      t.match(lines[0], /PROXYCTL_TOKEN/);
      t.match(lines[0], /\[WARN_TOKEN_ARGUMENT\]$/);
    },
  );

  await t.test(
    'a name another live connector has is refused, and nothing is stored (regression: duplicate names)',
    async (t) => {
      const ids = async () => (await list()).map((c) => `${c.id} ${c.name} ${c.certificates}`); // status moves with time
      const before = await ids();
      const other = path.join(dir, 'c4');
      const r = await register(['--relay-ca', caFile, '--state-dir', other, '--name', 'edge-1'], {
        env: { PROXYCTL_TOKEN: await idp.adminToken() },
      });
      t.equal(r.code, 1);
      t.equal(r.stderr.trim().split('\n').length, 1, 'one line on stderr');
      t.match(r.stderr, /ERR_CONNECTOR_NAME_TAKEN/, "names the relay's code");
      t.notOk(existsSync(path.join(other, 'cert.pem')), 'nothing stored locally');
      t.same(await ids(), before, 'the relay recorded nothing');
    },
  );

  const connector = new Proc(['connector', 'run', '--state-dir', stateDir, '--metrics-listen', '127.0.0.1:0']);
  procs.push(connector);
  let metrics = '';
  let metricsPort = 0;

  await t.test('run: two channels, readiness, outbound only', async (t) => {
    const listen = (await connector.waitMsg('metrics listening'))['listen'];
    metrics = `http://${String(listen)}`;
    metricsPort = Number(new URL(metrics).port);
    t.ok(metricsPort > 0, `metrics on the port the system chose (${metricsPort})`);
    await connector.waitFor((l) => l.msg === 'control channel open' && l['slot'] === 0);
    await connector.waitFor((l) => l.msg === 'control channel open' && l['slot'] === 1);
    const ready = await request(`${metrics}/readyz`);
    t.equal(ready.statusCode, 200);
    await ready.body.dump();
    // Renewals (every 4 s here) roll the channels onto the new certificate: the gauge may be read mid-roll.
    let up = '';
    await waitFor(
      async () => {
        const m = await request(`${metrics}/metrics`);
        up = /proxyctl_connector_channels_up (\d+)/.exec(await m.body.text())?.[1] ?? '';
        return up === '2';
      },
      { timeoutMs: 5000, everyMs: 50, what: 'the channels-up gauge to read 2' },
    ).catch(() => undefined); // asserted next, with the last reading
    t.equal(up, '2', 'two channels up');
    const listening = listeningSockets(connector.pid);
    t.same(listening, [{ address: '127.0.0.1', port: metricsPort }], 'the only listening socket is loopback metrics');
    t.equal((await list()).find((c) => c.id === connectorId)?.status, 'online');
  });

  await t.test('renews its certificate without dropping channels', async (t) => {
    const closedBefore = connector.count('control channel closed; reconnecting');
    const first = await connector.waitMsg('certificate renewed', 15_000);
    t.equal(first['old_serial'], registeredSerial, 'the first renewal replaces the registered certificate');
    t.not(first['serial'], registeredSerial);
    const renewals = connector.lines.filter((l) => l.msg === 'certificate renewed');
    const latest = renewals[renewals.length - 1]!;
    const onDisk = JSON.parse(readFileSync(path.join(stateDir, 'connector.json'), 'utf8')) as { serial: string };
    t.ok(
      [latest['serial'], ...renewals.map((l) => l['serial'])].includes(onDisk.serial),
      'the state directory holds a renewed certificate',
    );
    t.equal(connector.count('control channel closed; reconnecting'), closedBefore, 'no channel dropped');
    t.ok((await list()).find((c) => c.id === connectorId)!.certificates >= 2);
  });

  await t.test('reconnects by itself after a relay restart', async (t) => {
    t.equal(await relay.stop('SIGTERM'), 0, 'relay drains and exits 0');
    await connector.waitMsg('control channel closed; reconnecting', 10_000, connector.lines.length - 50);
    const notReady = await request(`${metrics}/readyz`);
    t.equal(notReady.statusCode, 503, 'not ready without a channel');
    await notReady.body.dump();
    // Counted from here, not from before the stop: a renewal (every 4 s) opens channels too.
    const down = connector.lines.length;
    ({ relay } = await startRelay());
    await connector.waitFor(
      () => connector.lines.slice(down).filter((l) => l.msg === 'control channel open').length >= 2,
      20_000,
    );
    const ready = await request(`${metrics}/readyz`);
    t.equal(ready.statusCode, 200);
    await ready.body.dump();
  });

  await t.test('stops with a clear error when revoked', async (t) => {
    const r = await runCli(['relay', 'connectors', 'revoke', 'edge-1', '--config', configFile]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`revoked connector ${connectorId}`));
    const code = await within(connector.exited, 10_000, 'the revoked connector to exit');
    t.equal(code, 1, 'connector exits non-zero');
    t.match(connector.stderrText, /proxyctl: .*\[ERR_CERT_REVOKED\]/);
    t.equal((await list()).find((c) => c.id === connectorId)?.status, 'revoked');
    const rerun = await runCli(['connector', 'run', '--state-dir', stateDir], { timeoutMs: 15_000 });
    t.equal(rerun.code, 1, 'a revoked identity cannot start again');
    t.match(rerun.stderr, /\[ERR_CERT_REVOKED\]/);
  });

  t.equal(await relay.stop(), 0);
});

t.test('relay serve refuses a bad config with one line naming file and key', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'relay.yaml');
  writeFileSync(
    file,
    'connectors: { renewAfter: soon }\napps: [ { name: a, externalUrl: "http://a.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
  );
  const r = await runCli(['relay', 'serve', '--config', file]);
  t.equal(r.code, 1);
  const lines = r.stderr.trim().split('\n');
  t.equal(lines.length, 1);
  t.match(lines[0], file);
  t.match(lines[0], /connectors\.renewAfter: found "soon", expected a duration/);
  t.match(lines[0], /apps\[0\]\.externalUrl/);
  t.match(lines[0], /\[ERR_CONFIG_INVALID\]/);
  t.notOk(existsSync(path.join(dir, 'proxyctl-data')), 'nothing created');
});

t.test('connector run without registration explains what to do', async (t) => {
  const dir = tempDir(t);
  const r = await runCli(['connector', 'run', '--state-dir', dir]);
  t.equal(r.code, 1);
  t.match(r.stderr, /\[ERR_STATE_INVALID\]/);
  t.match(r.stderr, /proxyctl connector register/);
});

t.test('metrics refuse a non-loopback address', async (t) => {
  const r = await runCli(['connector', 'run', '--state-dir', '/nonexistent', '--metrics-listen', '0.0.0.0:9464']);
  t.equal(r.code, 1);
  t.match(r.stderr, /\[ERR_USAGE\]/);
});
