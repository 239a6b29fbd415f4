// `export:` validation: defaults, each kind's keys, and refusals that name the key
// path (unknown keys, bad URLs, missing files, duplicate names, weak secrets).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { buildExport, type ExportSinkConfig } from '../src/config/export-config.js';
import { Validation, parseYaml } from '../src/config/schema.js';
import { makeTestPki } from './helpers/rsyslog.js';
import { tempDir } from './helpers/proc.js';

const SECRET = 'a-webhook-secret-of-32-characters';

async function files(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t, 'proxyctl-export-config-');
  const pki = await makeTestPki();
  const server = pki.server;
  writeFileSync(path.join(dir, 'ca.pem'), pki.caPem);
  writeFileSync(path.join(dir, 'cert.pem'), server.certPem);
  writeFileSync(path.join(dir, 'key.pem'), server.keyPem);
  writeFileSync(
    path.join(dir, 'other-key.pem'),
    generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
  );
  writeFileSync(path.join(dir, 'hook.key'), `${SECRET}\n`);
  writeFileSync(path.join(dir, 'short.key'), 'short\n');
  writeFileSync(path.join(dir, 'not-pem.pem'), 'hello');
  return dir;
}

function build(yaml: string, dir: string, env: NodeJS.ProcessEnv = {}) {
  const v = new Validation();
  const raw = (parseYaml(`export: ${yaml}`, 'relay.yaml') as { export: unknown }).export;
  const sinks = buildExport(v, raw, dir, env);
  return { sinks, issues: v.issues };
}

t.test('absent or empty: no sinks', async (t) => {
  const v = new Validation();
  t.same(buildExport(v, undefined, '/'), []);
  t.same(buildExport(v, [], '/'), []);
  t.same(v.issues, []);
});

t.test('defaults of each kind', async (t) => {
  const dir = await files(t);
  const { sinks, issues } = build(
    `
  - syslog: { url: "tls://siem.example:6514", caFile: ca.pem }
  - syslog: { url: "tcp://127.0.0.1:514" }
  - webhook: { url: "https://hooks.example/proxyctl", secretFile: hook.key }
  - webhook: { url: "http://127.0.0.1:8080/hook", secretEnv: HOOK_SECRET }
  - file: { path: events.ndjson }`,
    dir,
    { HOOK_SECRET: SECRET },
  );
  t.same(issues, []);
  const [tls, tcp, hook, local, file] = sinks as [
    ExportSinkConfig,
    ExportSinkConfig,
    ExportSinkConfig,
    ExportSinkConfig,
    ExportSinkConfig,
  ];
  t.match(tls, {
    kind: 'syslog',
    name: 'syslog:tls://siem.example:6514',
    protocol: 'tls',
    host: 'siem.example',
    port: 6514,
    format: 'json',
    facility: 10,
    facilityName: 'authpriv',
    appName: 'proxyctl',
    confirmMs: 1500,
    queueSize: 10_000,
    batchSize: 500,
    from: 'head',
    serverName: undefined,
    certPem: undefined,
  });
  t.match((tls as { caPem: string }).caPem, /BEGIN CERTIFICATE/);
  t.match(tcp, { name: 'syslog:tcp://127.0.0.1:514', protocol: 'tcp', port: 514 });
  t.match(hook, {
    kind: 'webhook',
    name: 'webhook:https://hooks.example/proxyctl',
    secret: SECRET,
    timeoutMs: 10_000,
    batchSize: 100,
  });
  t.match(local, { kind: 'webhook', url: 'http://127.0.0.1:8080/hook', secret: SECRET });
  t.match(file, {
    kind: 'file',
    path: path.join(dir, 'events.ndjson'),
    name: `file:${path.join(dir, 'events.ndjson')}`,
    maxSize: 100_000_000,
    keep: 5,
    batchSize: 1000,
  });
});

t.test('every key set', async (t) => {
  const dir = await files(t);
  const { sinks, issues } = build(
    `
  - syslog: { url: "tls://[::1]:6514", format: cef, caFile: ca.pem, certFile: cert.pem, keyFile: key.pem,
              serverName: siem.internal, facility: local3, appName: relay-eu, confirmTime: 2s,
              name: siem, queueSize: 50, batchSize: 20, from: start }
  - webhook: { url: "https://hooks.example/x", secretFile: hook.key, caFile: ca.pem, timeout: 3s, name: hook }
  - file: { path: out.ndjson, maxSize: 10MiB, keep: 0 }`,
    dir,
  );
  t.same(issues, []);
  t.match(sinks[0], {
    name: 'siem',
    host: '::1',
    port: 6514,
    format: 'cef',
    serverName: 'siem.internal',
    facility: 19,
    appName: 'relay-eu',
    confirmMs: 2000,
    queueSize: 50,
    batchSize: 20,
    from: 'start',
  });
  t.match((sinks[0] as { keyPem: string }).keyPem, /PRIVATE KEY/);
  t.match(sinks[1], { name: 'hook', timeoutMs: 3000 });
  t.match(sinks[2], { maxSize: 10 * 1024 * 1024, keep: 0 });
});

t.test('refusals name the key path', async (t) => {
  const dir = await files(t);
  const cases: [string, string, RegExp?][] = [
    ['{ syslog: { url: "tcp://a:1" } }', 'export', /list/],
    ['[ { syslog: { url: "tcp://a:1" }, file: { path: x } } ]', 'export[0]', /exactly one/],
    ['[ {} ]', 'export[0]', /exactly one/],
    ['[ { kafka: {} } ]', 'export[0].kafka', /no such key/],
    ['[ { syslog: null } ]', 'export[0].syslog', /mapping/],
    ['[ { syslog: { url: "tcp://a:1", colour: red } } ]', 'export[0].syslog.colour', /no such key/],
    ['[ { syslog: { url: "udp://a:514" } } ]', 'export[0].syslog.url'],
    ['[ { syslog: { url: "tcp://a" } } ]', 'export[0].syslog.url', /port/],
    ['[ { syslog: { url: "tcp://a:1/path" } } ]', 'export[0].syslog.url', /port/],
    ['[ { syslog: { url: "tcp://user:pw@a:1" } } ]', 'export[0].syslog.url'],
    ['[ { syslog: { url: "tcp://a:1", format: xml } } ]', 'export[0].syslog.format'],
    ['[ { syslog: { url: "tcp://a:1", facility: mars } } ]', 'export[0].syslog.facility'],
    ['[ { syslog: { url: "tcp://a:1", appName: "has space" } } ]', 'export[0].syslog.appName'],
    ['[ { syslog: { url: "tcp://a:1", caFile: ca.pem } } ]', 'export[0].syslog.caFile', /tls/],
    ['[ { syslog: { url: "tls://a:1", caFile: missing.pem } } ]', 'export[0].syslog.caFile', /ENOENT/],
    ['[ { syslog: { url: "tls://a:1", caFile: not-pem.pem } } ]', 'export[0].syslog.caFile', /certificate/],
    ['[ { syslog: { url: "tls://a:1", certFile: cert.pem } } ]', 'export[0].syslog.keyFile', /together/],
    [
      '[ { syslog: { url: "tls://a:1", certFile: cert.pem, keyFile: other-key.pem } } ]',
      'export[0].syslog.keyFile',
      /private key of the certificate/,
    ],
    ['[ { syslog: { url: "tcp://a:1", confirmTime: soon } } ]', 'export[0].syslog.confirmTime'],
    ['[ { syslog: { url: "tcp://a:1", queueSize: 0 } } ]', 'export[0].syslog.queueSize'],
    ['[ { syslog: { url: "tcp://a:1", batchSize: 1.5 } } ]', 'export[0].syslog.batchSize'],
    ['[ { syslog: { url: "tcp://a:1", from: yesterday } } ]', 'export[0].syslog.from'],
    ['[ { syslog: { url: "tcp://a:1", name: "" } } ]', 'export[0].syslog.name'],
    ['[ { webhook: { url: "http://hooks.example/x", secretFile: hook.key } } ]', 'export[0].webhook.url', /loopback/],
    ['[ { webhook: { url: "ftp://hooks.example/x", secretFile: hook.key } } ]', 'export[0].webhook.url'],
    ['[ { webhook: { url: "https://hooks.example/x?token=1", secretFile: hook.key } } ]', 'export[0].webhook.url'],
    ['[ { webhook: { url: "https://hooks.example/x" } } ]', 'export[0].webhook.secretFile', /secretFile or secretEnv/],
    [
      '[ { webhook: { url: "https://hooks.example/x", secretFile: nope.key } } ]',
      'export[0].webhook.secretFile',
      /ENOENT/,
    ],
    [
      '[ { webhook: { url: "https://hooks.example/x", secretFile: short.key } } ]',
      'export[0].webhook.secretFile',
      /16 bytes/,
    ],
    ['[ { webhook: { url: "https://hooks.example/x", secretEnv: UNSET_VAR } } ]', 'export[0].webhook.secretEnv', /set/],
    [
      '[ { webhook: { url: "https://hooks.example/x", secretFile: hook.key, secretEnv: X } } ]',
      'export[0].webhook.secretEnv',
      /not both/,
    ],
    [
      '[ { webhook: { url: "https://hooks.example/x", secretFile: hook.key, timeout: 1ms } } ]',
      'export[0].webhook.timeout',
    ],
    [
      '[ { webhook: { url: "https://hooks.example/x", secretFile: hook.key, secret: inline } } ]',
      'export[0].webhook.secret',
      /no such key/,
    ],
    ['[ { file: { path: /nonexistent-dir/x.ndjson } } ]', 'export[0].file.path', /existing directory/],
    ['[ { file: { path: "." } } ]', 'export[0].file.path', /not a directory/],
    ['[ { file: { path: x.ndjson, maxSize: 10 } } ]', 'export[0].file.maxSize'],
    ['[ { file: { path: x.ndjson, maxSize: lots } } ]', 'export[0].file.maxSize'],
    ['[ { file: { path: x.ndjson, keep: -1 } } ]', 'export[0].file.keep'],
    ['[ { file: {} } ]', 'export[0].file.path', /required/],
  ];
  for (const [yaml, key, expected] of cases) {
    const { issues } = build(yaml, dir);
    const hit = issues.find((i) => i.path === key);
    t.ok(hit, `${yaml} → ${key} (got ${JSON.stringify(issues)})`);
    if (hit && expected) t.match(hit.expected, expected, `${yaml}: says what was expected`);
  }
  const secret = build('[ { webhook: { url: "https://hooks.example/x", secretEnv: S } } ]', dir, { S: 'tooshort' });
  t.notMatch(JSON.stringify(secret.issues), /tooshort/, 'a refused secret is never shown');
});

t.test('names are unique: they key the stored cursor', async (t) => {
  const dir = await files(t);
  const dup = build('[ { syslog: { url: "tcp://a:1" } }, { syslog: { url: "tcp://a:1" } } ]', dir);
  t.equal(dup.issues[0]?.path, 'export[1].syslog.name');
  t.match(dup.issues[0]?.expected, /export\[0\]\.syslog/);
  const named = build('[ { syslog: { url: "tcp://a:1", name: x } }, { file: { path: f, name: x } } ]', dir);
  t.equal(named.issues[0]?.path, 'export[1].file.name');
  const distinct = build('[ { syslog: { url: "tcp://a:1" } }, { syslog: { url: "tcp://a:1", name: second } } ]', dir);
  t.same(distinct.issues, [], 'the same destination twice under two names');
  t.same(
    build('[ { syslog: { url: "tcp://a:1" } } ]', dir).sinks[0]?.name,
    build('[ { syslog: { url: "tcp://a:1/" } } ]', dir).sinks[0]?.name,
    'the default name is stable under a trailing slash',
  );
});
