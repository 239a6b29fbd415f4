// Relay config validation: every rule refuses with the key path, found and
// expected, and a valid file (config.example.yaml included) loads frozen.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadRelayConfig, parseRelayConfig } from '../src/config/relay-config.js';
import { parseDuration } from '../src/config/duration.js';
import { isProxyctlError } from '../src/errors.js';
import { ROOT, tempDir } from './helpers/proc.js';
import { configIssues } from './helpers/config-issues.js';

const APP = `apps:
  - name: wiki
    externalUrl: "https://wiki.example.com:8443/"
    internalUrl: "http://10.0.0.5:8080/"
`;

const issuesOf = (text: string) => configIssues(text);

t.test('durations', async (t) => {
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('85s'), 85_000);
  t.equal(parseDuration('5m'), 300_000);
  t.equal(parseDuration('12h'), 43_200_000);
  t.equal(parseDuration('180d'), 180 * 86_400_000);
  for (const bad of ['', '10', 's', '-5s', '5 minutes', '1y', '5S', 'NaNs'])
    t.equal(parseDuration(bad), undefined, bad);
});

t.test('config.example.yaml loads as is', async (t) => {
  const cfg = loadRelayConfig(path.join(ROOT, 'config.example.yaml'));
  t.ok(cfg.apps.length > 0);
  t.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.apps) && Object.isFrozen(cfg.identity));
});

t.test('defaults', async (t) => {
  const cfg = parseRelayConfig(APP, '/etc/proxyctl/relay.yaml');
  t.equal(cfg.dataDir, '/etc/proxyctl/proxyctl-data', 'dataDir is relative to the config file');
  t.equal(cfg.connectors.renewAfterMs, 180 * 86_400_000);
  t.equal(cfg.connectors.channels, 2);
  t.equal(cfg.apps[0]!.backendTimeoutMs, 85_000);
  t.equal(cfg.apps[0]!.preauth, 'oidc');
  t.equal(cfg.apps[0]!.connectorGroup, 'default');
  t.equal(cfg.public.port, 8443);
  t.equal(cfg.connectorApi.url.href, 'https://127.0.0.1:8444/');
  t.equal(parseRelayConfig(`${APP}    backendTimeout: long\n`, 'x.yaml').apps[0]!.backendTimeoutMs, 180_000);
});

const cases: [string, string, string][] = [
  ['unknown top-level key', 'bogus: 1\n', 'bogus'],
  ['unknown nested key', 'connectors: { renewAfterr: 5d }\n', 'connectors.renewAfterr'],
  ['wrong type', 'public: "127.0.0.1:8443"\n', 'public'],
  ['bad listen', 'public: { listen: "localhost" }\n', 'public.listen'],
  ['bad port', 'public: { listen: "127.0.0.1:70000" }\n', 'public.listen'],
  ['bad duration', 'connectors: { renewAfter: 180 }\n', 'connectors.renewAfter'],
  ['bad duration unit', 'connectors: { renewAfter: 6mo }\n', 'connectors.renewAfter'],
  ['renew after lifetime', 'connectors: { renewAfter: 400d }\n', 'connectors.renewAfter'],
  ['bad url', 'connectorApi: { url: "not a url" }\n', 'connectorApi.url'],
  ['http connector url', 'connectorApi: { url: "http://relay.example.com" }\n', 'connectorApi.url'],
  ['insecure issuer', 'identity: { issuer: "http://idp.example.com" }\n', 'identity.issuer'],
  ['empty admin values', 'identity: { adminValues: [] }\n', 'identity.adminValues'],
  ['admin values not strings', 'identity: { adminValues: [1, 2] }\n', 'identity.adminValues'],
  [
    'secret and secret file',
    'identity: { clientSecret: a, clientSecretFile: /nonexistent }\n',
    'identity.clientSecretFile',
  ],
  ['missing secret file', 'identity: { clientSecretFile: /nonexistent/secret }\n', 'identity.clientSecretFile'],
  ['apps not a list', 'apps: { name: wiki }\n', 'apps'],
  [
    'app missing name',
    'apps: [ { externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[0].name',
  ],
  [
    'app bad name',
    'apps: [ { name: "Wiki App", externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[0].name',
  ],
  [
    'app http external',
    'apps: [ { name: a, externalUrl: "http://a.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[0].externalUrl',
  ],
  [
    'app internal ftp',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "ftp://10.0.0.1/" } ]\n',
    'apps[0].internalUrl',
  ],
  [
    'app url with credentials',
    'apps: [ { name: a, externalUrl: "https://u:p@a.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[0].externalUrl',
  ],
  [
    'app bad preauth',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/", preauth: none } ]\n',
    'apps[0].preauth',
  ],
  [
    'app bad timeout',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/", backendTimeout: forever } ]\n',
    'apps[0].backendTimeout',
  ],
  [
    'app unknown key',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/", colour: red } ]\n',
    'apps[0].colour',
  ],
  [
    'duplicate app name',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/" }, { name: a, externalUrl: "https://b.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[1].name',
  ],
  [
    'duplicate route',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/" }, { name: b, externalUrl: "https://A.example.com", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[1].externalUrl',
  ],
  [
    'bad wildcard',
    'apps: [ { name: a, externalUrl: "https://a.*.example.com/", internalUrl: "http://10.0.0.1/" } ]\n',
    'apps[0].externalUrl',
  ],
  [
    'bad group',
    'apps: [ { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://10.0.0.1/", connectorGroup: "Group One" } ]\n',
    'apps[0].connectorGroup',
  ],
  ['channels out of range', 'connectors: { channels: 0 }\n', 'connectors.channels'],
  ['bad log level', 'log: { level: loud }\n', 'log.level'],
  ['top level not a mapping', '- a\n- b\n', '(root)'],
];

t.test('invalid configs are refused with the key path', async (t) => {
  for (const [name, text, keyPath] of cases) {
    const issues = issuesOf(text);
    t.ok(
      issues.some((i) => i.path === keyPath),
      `${name}: reports ${keyPath} (got ${JSON.stringify(issues.map((i) => i.path))})`,
    );
    for (const i of issues) t.ok(i.found && i.expected, `${name}: says what was found and expected`);
  }
});

t.test('YAML syntax errors and duplicate keys name the file and line', async (t) => {
  for (const text of ['apps: [\n', 'dataDir: a\ndataDir: b\n', 'public: { listen: "x" \n']) {
    try {
      parseRelayConfig(text, 'relay.yaml');
      t.fail('should refuse');
    } catch (err) {
      t.ok(isProxyctlError(err, 'ERR_CONFIG_INVALID'), 'ERR_CONFIG_INVALID');
      t.match((err as Error).message, /^relay\.yaml/);
    }
  }
});

t.test('every problem is reported at once', async (t) => {
  const issues = issuesOf('bogus: 1\npublic: { listen: nope }\nconnectors: { renewAfter: soon }\n');
  t.same(issues.map((i) => i.path).sort(), ['bogus', 'connectors.renewAfter', 'public.listen']);
});

t.test('missing file is ERR_CONFIG_READ; secret file read relative to config', async (t) => {
  const dir = tempDir(t);
  t.throws(() => loadRelayConfig(path.join(dir, 'none.yaml')), { code: 'ERR_CONFIG_READ' });
  writeFileSync(path.join(dir, 'secret'), 's3cret\n');
  writeFileSync(path.join(dir, 'relay.yaml'), 'identity: { clientSecretFile: secret }\n');
  t.equal(loadRelayConfig(path.join(dir, 'relay.yaml')).identity.clientSecret, 's3cret');
});
