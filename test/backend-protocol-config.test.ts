// apps[].backendProtocol: http1 by default; h2c only with an http:// internal URL and h2
// only with an https:// one; bad values refused naming the key; the value reaches the
// connector's pulled config.
import t from 'tap';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { buildConnectorConfig } from '../src/relay/connectors/connector-config.js';
import { configIssues } from './helpers/config-issues.js';

const app = (internalUrl: string, extra = '') => `apps:
  - name: svc
    externalUrl: "https://svc.example.com/"
    internalUrl: "${internalUrl}"
${extra}`;

const issuesOf = (text: string) => configIssues(text);

t.test('accepted values', async (t) => {
  const cases: [string, string | undefined, string][] = [
    ['http://10.0.0.5:8080/', undefined, 'http1'],
    ['https://10.0.0.5/', undefined, 'http1'],
    ['http://10.0.0.5:8080/', 'http1', 'http1'],
    ['https://10.0.0.5/', 'http1', 'http1'],
    ['http://10.0.0.5:50051/', 'h2c', 'h2c'],
    ['https://grpc.internal:50051/', 'h2', 'h2'],
  ];
  for (const [url, value, expected] of cases) {
    const cfg = parseRelayConfig(app(url, value ? `    backendProtocol: ${value}\n` : ''), 'relay.yaml');
    t.equal(cfg.apps[0]!.backendProtocol, expected, `${url} ${value ?? '(default)'}`);
  }
});

t.test('refused values name the key, what was found and what is expected', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['https://10.0.0.5/', 'h2c', /needs an http:\/\/ internalUrl/],
    ['http://10.0.0.5/', 'h2', /needs an https:\/\/ internalUrl/],
    ['http://10.0.0.5/', 'http2', /one of http1, h2c, h2/],
    ['http://10.0.0.5/', 'H2C', /one of http1, h2c, h2/],
    ['http://10.0.0.5/', '2', /one of http1, h2c, h2/],
    ['http://10.0.0.5/', 'true', /one of http1, h2c, h2/],
    ['http://10.0.0.5/', '[h2c]', /one of http1, h2c, h2/],
  ];
  for (const [url, value, expected] of cases) {
    const issues = issuesOf(app(url, `    backendProtocol: ${value}\n`));
    t.equal(issues.length, 1, `${url} ${value}: one issue`);
    t.equal(issues[0]?.path, 'apps[0].backendProtocol', `${url} ${value}: names the key`);
    t.match(issues[0]?.expected, expected, `${url} ${value}: says what is expected`);
  }
});

t.test('the connector learns it with the app', async (t) => {
  const cfg = parseRelayConfig(
    `${app('http://127.0.0.1:50051/', '    backendProtocol: h2c\n')}  - { name: web, externalUrl: "https://web.example.com/", internalUrl: "http://127.0.0.1:8080/" }\n`,
    'relay.yaml',
  );
  const now = Date.now();
  const pulled = buildConnectorConfig(
    cfg,
    { id: 'c1', name: 'c1', group: 'default' } as never,
    { serial: '01', issuedAt: now, notAfter: now + 1000 } as never,
    [],
  );
  t.same(
    pulled.apps.map((a) => [a.name, a.backendProtocol]),
    [
      ['svc', 'h2c'],
      ['web', 'http1'],
    ],
  );
});
