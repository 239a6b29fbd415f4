// Micro-benchmark of the authorize step (issue 17): every request is authorized
// against the configuration in force; the decision is cached per session (or
// token) and configuration generation. Prints ns per decision with and without
// the cache, for a config with a few Conditional Access policies. Uses dist/.
import { parseRelayConfig } from '../dist/config/relay-config.js';
import { Authorizer } from '../dist/relay/auth/authorize.js';
import { silentLogger } from '../dist/log.js';

const config = parseRelayConfig(
  `dataDir: ./bench-data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
identity: { issuer: "https://idp.example" }
apps:
  - { name: web, externalUrl: "https://web.example/", internalUrl: "http://127.0.0.1:1/", assignedGroups: [staff, admins] }
namedLocations:
  - { name: office, cidrs: ["10.0.0.0/8", "192.168.0.0/16"] }
policies:
  - name: block-outside
    assignments: { users: { include: [all] }, apps: { include: [web] } }
    conditions: { locations: { include: [all], exclude: [office] }, platforms: { include: [android] } }
    grant: { block: true }
  - name: mfa-for-admins
    assignments: { groups: { include: [admins] }, apps: { include: [web] } }
    grant: { requireMfa: true }
  - name: watch
    state: reportOnly
    assignments: { users: { include: [all] }, apps: { include: [web] } }
    grant: { block: true }
`,
  '/tmp/bench-relay.yaml',
);
const app = config.apps[0];
const signIns = { record() {}, failure() {}, userRiskNow: () => 'none' };
const authorizer = new Authorizer(config.access, false, { log: silentLogger, now: Date.now, signIns });
const identity = {
  sub: 'alice',
  email: 'alice@example.com',
  name: 'Alice',
  groups: ['staff'],
  amr: ['pwd'],
  acr: 'pwd',
  authTime: Date.now(),
};
const who = { identity, sid: 's-1', via: 'cookie', key: 'c|3f0c6a0e-6a8e-4f9b-9d7e-3c1b2a4d5e6f' };
const req = {
  headers: {
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  },
  socket: { remoteAddress: '203.0.113.7' },
};

function measure(label, fn, n) {
  for (let i = 0; i < 2000; i++) fn(); // warm-up (loads GeoIP on the first uncached call)
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  const ns = Number(process.hrtime.bigint() - start) / n;
  console.log(`  ${label.padEnd(44)} ${ns.toFixed(0).padStart(7)} ns/request`);
  return ns;
}

const result = authorizer.authorize(req, app, who, 'r');
if (result.result !== 'allow') throw new Error(`unexpected verdict ${result.result}`);
console.log('authorize step (assignment + 3 Conditional Access policies):');
const cached = measure(
  'cached (same session, generation, address)',
  () => authorizer.authorize(req, app, who, 'r'),
  200_000,
);
const uncached = measure(
  'uncached (assignment + evaluate, every time)',
  () => authorizer.evaluateFor(req, app, identity),
  50_000,
);
console.log(`  cache saves ${((1 - cached / uncached) * 100).toFixed(0)}% of the step's cost\n`);
