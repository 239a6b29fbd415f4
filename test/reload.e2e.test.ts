// Hot reload through the real binary: config file edits (and SIGHUP) rebuild the
// relay's state under load with zero failed requests; a bad file is refused and
// the running configuration keeps serving; connectors learn new apps.
import t from 'tap';
import { createServer } from 'node:http';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startIdp } from './helpers/idp.js';
import { Proc, runCli, tempDir } from './helpers/proc.js';

t.test('reload under load', async (t) => {
  const backend = createServer((req, res) => {
    req.resume();
    res.end(`hello from ${req.url}`);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => backend.close());
  const bport = (backend.address() as { port: number }).port;
  const idp = await startIdp();
  t.teardown(() => idp.close());
  const dir = tempDir(t);
  const file = path.join(dir, 'relay.yaml');
  const yaml = (apps: string, extra = '') => `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "${idp.issuer}" }
connectors: { heartbeatInterval: 500ms }
limits: { perIp: false }
${extra}apps:
${apps}`;
  const app = (name: string) =>
    `  - { name: ${name}, externalUrl: "https://${name}.test/", internalUrl: "http://127.0.0.1:${bport}/${name}/", preauth: passthrough }\n`;
  const write = (text: string) => {
    // Replace by rename, as editors and config management do.
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  write(yaml(app('one')));
  const relay = new Proc(['relay', 'serve', '--config', file]);
  t.teardown(() => relay.stop());
  const apiUrl = String((await relay.waitMsg('connector API listening'))['url']);
  const pub = ((await relay.waitMsg('public listener ready'))['listen'] as { port: number }).port;
  await relay.waitMsg('relay ready');
  const ca = path.join(dir, 'data', 'ca.pem');
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, await idp.adminToken());
  const reg = await runCli([
    'connector',
    'register',
    '--relay',
    apiUrl,
    '--token-file',
    tokenFile,
    '--relay-ca',
    ca,
    '--state-dir',
    path.join(dir, 'c'),
  ]);
  t.equal(reg.code, 0, reg.stderr);
  const connector = new Proc(['connector', 'run', '--state-dir', path.join(dir, 'c')]);
  t.teardown(() => connector.stop());
  await connector.waitMsg('control channel open');

  const client = new Agent({
    connect: { ca: readFileSync(ca, 'utf8'), lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) },
  });
  t.teardown(() => client.close());
  const get = async (host: string) => {
    const r = await request(`https://${host}:${pub}/x`, { dispatcher: client });
    return { status: r.statusCode, body: await r.body.text() };
  };
  t.equal((await get('one.test')).status, 200);

  // Load: a steady stream of requests while the file changes.
  let failures = 0;
  let done = 0;
  let running = true;
  const loops = Array.from({ length: 8 }, async () => {
    while (running) {
      const r = await get('one.test').catch(() => ({ status: 0, body: '' }));
      if (r.status !== 200 || r.body !== 'hello from /one/x') failures++;
      done++;
    }
  });

  const pulledBefore = connector.lines.length;
  write(yaml(app('one') + app('two')));
  await relay.waitMsg('configuration reloaded', 10_000);
  // The relay announces the new config version on the channels; the connector pulls it.
  await connector.waitFor((l) => l.msg === 'configuration pulled' && l['apps'] === 2, 10_000, pulledBefore);
  t.equal(
    (await get('two.test')).body,
    'hello from /two/x',
    'the new app is reachable; the connector learned it without a restart',
  );

  write('apps: [ { name: broken } ]\n');
  await relay.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('reload refused'), 10_000);
  t.equal((await get('two.test')).status, 200, 'a bad file keeps the running configuration');

  const reloadedBefore = relay.lines.length;
  write(yaml(app('one')));
  relay.child.kill('SIGHUP');
  // The state is swapped before the line is logged (by this signal, or by the file watcher first).
  await relay.waitMsg('configuration reloaded', 10_000, reloadedBefore);
  t.equal((await get('two.test')).status, 404, 'the removed app is gone');

  running = false;
  await Promise.all(loops);
  t.ok(done > 50, `requests during reloads: ${done}`);
  t.equal(failures, 0, 'zero failed requests during reloads');
});
