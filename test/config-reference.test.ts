// The configuration reference (docs/configuration.md) names every key the loader knows: the
// loader is asked for each section's keys (an unknown key is refused with the
// list of known ones), so a key added to the code without documentation fails here.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseRelayConfig } from '../src/config/relay-config.js';

const reference = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
const start = reference.indexOf('# Configuration');

const APP = 'name: a, externalUrl: "https://a.test/", internalUrl: "http://127.0.0.1/"';
const sections: [string, string][] = [
  ['top level', 'zzz: 1'],
  ['public', 'public: { zzz: 1 }'],
  ['connectorApi', 'connectorApi: { zzz: 1 }'],
  ['identity', 'identity: { zzz: 1 }'],
  ['identity.embedded', 'identity: { embedded: { zzz: 1 } }'],
  ['connectors', 'connectors: { zzz: 1 }'],
  ['log', 'log: { zzz: 1 }'],
  ['devices', 'devices: { zzz: 1 }'],
  ['limits', 'limits: { zzz: 1 }'],
  ['secrets', 'secrets: { zzz: 1 }'],
  ['admin', 'admin: { zzz: 1 }'],
  ['logs', 'logs: { zzz: 1 }'],
  ['risk', 'risk: { zzz: 1 }'],
  ['geo', 'geo: { zzz: 1 }'],
  ['acme', 'acme: { zzz: 1 }'],
  ['export[].syslog', 'export: [{ syslog: { url: "tcp://127.0.0.1:514", zzz: 1 } }]'],
  ['export[].file', 'export: [{ file: { path: ./x.ndjson, zzz: 1 } }]'],
  ['apps[]', `apps: [{ ${APP}, zzz: 1 }]`],
  ['apps[].cookie', `apps: [{ ${APP}, cookie: { zzz: 1 } }]`],
  ['apps[].tls', `apps: [{ ${APP}, tls: { zzz: 1 } }]`],
  ['namedLocations[]', 'namedLocations: [{ name: x, cidrs: ["10.0.0.0/8"], zzz: 1 }]'],
];

function knownKeys(yaml: string): string[] {
  try {
    parseRelayConfig(yaml, 'relay.yaml');
  } catch (err) {
    const m = /known keys: ([^)]*)\)/.exec((err as Error).message);
    if (m) return m[1]!.split(', ');
  }
  throw new Error(`the loader did not list known keys for: ${yaml}`);
}

t.ok(start >= 0, 'the configuration reference exists');
for (const [name, yaml] of sections) {
  const keys = knownKeys(yaml);
  t.ok(keys.length > 0, `${name}: the loader lists its keys`);
  for (const key of keys) {
    // `key`, `section.key`, `key.sub` or `key[]`, as code.
    const named = new RegExp(`\`([A-Za-z]+(\\[\\])?\\.)*${key}(\`|\\.|\\[)`).test(reference);
    t.ok(named, `${name}: \`${key}\` is in the configuration reference`);
  }
}
