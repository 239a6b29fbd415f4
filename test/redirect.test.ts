// No open redirects: every return target after sign-in is an absolute https URL
// on the very app that started the sign-in, or the app's root.
import t from 'tap';
import { parseRelayConfig } from '../src/config/relay-config.js';
import { safeReturnTo } from '../src/relay/auth/redirect.js';

const cfg = parseRelayConfig(
  `apps:
  - { name: app, externalUrl: "https://app.host/", internalUrl: "http://10.0.0.1/", assignment: any }
  - { name: docs, externalUrl: "https://app.host/docs/", internalUrl: "http://10.0.0.2/", assignment: any }
  - { name: other, externalUrl: "https://other.host/", internalUrl: "http://10.0.0.3/", assignment: any }
`,
  'relay.yaml',
);
const app = cfg.apps[0]!;
const docs = cfg.apps[1]!;
const ORIGIN = 'https://app.host';

const hostile = [
  '//evil.com',
  '///evil.com',
  '/\\evil.com',
  '\\/\\/evil.com',
  '/\t/evil.com',
  '/%09/evil.com',
  '/%2f%2fevil.com',
  '/%5cevil.com',
  'https:evil.com',
  'https://app.host@evil.com/',
  'https://app.host.evil.com/',
  'https://evil.com\\@app.host',
  'javascript:alert(1)',
  'java%0dscript:alert(1)',
  'data:text/html,x',
  'https://other.host/',
  'http://app.host/',
  'https://app.host:8443/',
  'https://user:pw@app.host/',
  '%2F%2Fevil.com',
  '/\r\nLocation: https://evil.com',
  '',
];

t.test('hostile targets become the app root', async (t) => {
  for (const target of hostile) t.equal(safeReturnTo(app, ORIGIN, target), 'https://app.host/', JSON.stringify(target));
});

t.test('another app on the same host is another app', async (t) => {
  t.equal(safeReturnTo(docs, ORIGIN, '/'), 'https://app.host/docs/');
  t.equal(safeReturnTo(docs, ORIGIN, '/admin'), 'https://app.host/docs/');
  t.equal(safeReturnTo(docs, ORIGIN, 'https://app.host/x'), 'https://app.host/docs/');
  t.equal(safeReturnTo(docs, ORIGIN, '/docs/page?a=1'), 'https://app.host/docs/page?a=1');
});

t.test('genuine targets are kept, always absolute', async (t) => {
  t.equal(safeReturnTo(app, ORIGIN, '/page?x=1#frag'), 'https://app.host/page?x=1#frag');
  t.equal(safeReturnTo(app, ORIGIN, '/a/b/../c'), 'https://app.host/a/c');
  t.equal(safeReturnTo(app, ORIGIN, 'https://app.host/deep/link'), 'https://app.host/deep/link');
  t.equal(safeReturnTo(app, 'https://app.host:8443', '/x'), 'https://app.host:8443/x');
});
