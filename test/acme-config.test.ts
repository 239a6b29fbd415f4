// `acme:` is validated up front: agreed terms, a real directory URL, hosts that are app
// hosts without certificate files and without wildcards, an HTTP listener for HTTP-01.
import t from 'tap';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { acmeHosts } from '../src/config/acme-config.js';
import { isProxyctlError } from '../src/errors.js';

const APPS = `apps:
  - { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://127.0.0.1/" }
  - { name: b, externalUrl: "https://b.example.com/x/", internalUrl: "http://127.0.0.1/" }
  - { name: w, externalUrl: "https://*.w.example.com/", internalUrl: "http://127.0.0.1/" }
`;
const BASE = `public: { httpListen: "127.0.0.1:0" }\n${APPS}`;
const ACME = 'directory: "https://acme.example/dir", email: ops@example.com, agreeTerms: true';

function issues(yaml: string): string[] {
  try {
    parseRelayConfig(yaml, 'relay.yaml');
    return [];
  } catch (err) {
    if (!isProxyctlError(err) || err.code !== 'ERR_CONFIG_INVALID') throw err;
    return ((err.details?.['issues'] ?? []) as { path: string }[]).map((i) => i.path);
  }
}

t.test('a valid acme: section, and the hosts it covers', async (t) => {
  const cfg = parseRelayConfig(`${BASE}acme: { ${ACME} }\n`, 'relay.yaml');
  t.equal(cfg.acme?.hosts, 'all');
  t.same(acmeHosts(cfg.acme, cfg.apps), ['a.example.com', 'b.example.com'], 'wildcards left out of "all"');
  const some = parseRelayConfig(`${BASE}acme: { ${ACME}, hosts: [B.example.com], renewBefore: 20d }\n`, 'relay.yaml');
  t.same(acmeHosts(some.acme, some.apps), ['b.example.com']);
  t.equal(some.acme?.renewBeforeMs, 20 * 86_400_000);
  t.same(acmeHosts(undefined, some.apps), []);
  t.equal(parseRelayConfig(BASE, 'relay.yaml').acme, undefined, 'no acme: no ACME');
});

t.test('refused acme: sections name the key', async (t) => {
  const cases: [string, string, string][] = [
    ['terms not agreed', 'directory: "https://acme.example/dir", email: ops@example.com', 'acme.agreeTerms'],
    ['terms false', `${ACME.replace('true', 'false')}`, 'acme.agreeTerms'],
    ['terms as text', `${ACME.replace('true', '"yes"')}`, 'acme.agreeTerms'],
    ['http directory', `${ACME.replace('https://acme.example', 'http://acme.example')}`, 'acme.directory'],
    ['not a URL', `${ACME.replace('https://acme.example/dir', 'nope')}`, 'acme.directory'],
    ['file URL', `${ACME.replace('https://acme.example/dir', 'file:///etc/passwd')}`, 'acme.directory'],
    ['bad email', `${ACME.replace('ops@example.com', 'ops')}`, 'acme.email'],
    ['two emails', `${ACME.replace('ops@example.com', '"a@b.c,d@e.f"')}`, 'acme.email'],
    ['wildcard host', `${ACME}, hosts: ["*.w.example.com"]`, 'acme.hosts[0]'],
    ['not an app host', `${ACME}, hosts: [c.example.com]`, 'acme.hosts[0]'],
    ['empty list', `${ACME}, hosts: []`, 'acme.hosts'],
    ['hosts not a list', `${ACME}, hosts: some`, 'acme.hosts'],
    ['unknown key', `${ACME}, dns01: true`, 'acme.dns01'],
    ['missing CA file', `${ACME}, caFile: ./nope.pem`, 'acme.caFile'],
    ['renewBefore too short', `${ACME}, renewBefore: 1s`, 'acme.renewBefore'],
  ];
  for (const [name, body, path] of cases) t.ok(issues(`${BASE}acme: { ${body} }\n`).includes(path), `${name}: ${path}`);
  t.same(issues(`${APPS}acme: { ${ACME} }\n`), [], 'without public.httpListen: TLS-ALPN-01 only');
  const owned = `public: { httpListen: "127.0.0.1:0" }
apps:
  - { name: a, externalUrl: "https://a.example.com/", internalUrl: "http://127.0.0.1/", tls: { certFile: ./none.pem } }
acme: { ${ACME}, hosts: [a.example.com] }
`;
  t.ok(issues(owned).includes('apps[0].tls.certFile'), 'an app with its own certificate file is its own');
});

t.test('public.httpListen is a host:port', async (t) => {
  t.same(parseRelayConfig('public: { httpListen: "0.0.0.0:80" }\n', 'relay.yaml').public.http, {
    host: '0.0.0.0',
    port: 80,
  });
  t.ok(issues('public: { httpListen: "80" }\n').includes('public.httpListen'));
  t.equal(parseRelayConfig('{}', undefined).public.http, undefined, 'none by default');
});
