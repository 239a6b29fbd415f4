// The ACME manager without a certificate authority: certificates shared through the
// store (sealed by the master key, adopted from another replica without an order),
// renewal timing, and backoff of failed orders on an injected clock.
import t from 'tap';
import { caFromPem, generateCa } from '../src/crypto/ca.js';
import { MasterKey, generateMasterKey, isSealed, parseMasterKey } from '../src/crypto/master-key.js';
import { AcmeManager, ACME_ACCOUNT_SECRET, acmeCertSecret } from '../src/relay/acme/manager.js';
import type { SecretRepo } from '../src/store/types.js';
import { capturingLogger } from './helpers/harness.js';
import { ManualClock, turn } from './helpers/clock.js';
import { waitFor } from './helpers/wait.js';
import type { AcmeConfig } from '../src/config/acme-config.js';

const HOST = 'app.example.com';
const DAY = 86_400_000;

function memorySecrets(): SecretRepo & { map: Map<string, string> } {
  const map = new Map<string, string>();
  return {
    map,
    get: async (name) => map.get(name),
    putIfAbsent: async (name, value) => {
      if (!map.has(name)) map.set(name, value);
      return map.get(name)!;
    },
    put: async (name, value) => void map.set(name, value),
    list: async () => [...map].map(([name, value]) => ({ name, value })),
    remove: async (name) => map.delete(name),
  };
}

// Nothing listens on port 1: an order fails at once (connection refused).
const config: AcmeConfig = {
  directory: new URL('https://127.0.0.1:1/dir'),
  email: 'ops@example.com',
  hosts: 'all',
  caPem: undefined,
  renewBeforeMs: undefined,
};

async function certFor(host: string, lifetimeMs: number) {
  const pem = await generateCa();
  const ca = await caFromPem(pem.certPem, pem.keyPem, 'test');
  return ca.issueServerCertificate([host], lifetimeMs);
}

t.test('a fresh certificate in the store is adopted without an order, and is sealed', async (t) => {
  const key: MasterKey = parseMasterKey(generateMasterKey());
  const secrets = memorySecrets();
  const issued = await certFor(HOST, 90 * DAY);
  const name = acmeCertSecret(HOST);
  secrets.map.set(name, key.wrap(JSON.stringify(issued), `secret:${name}`));
  const clock = new ManualClock();
  const { log } = capturingLogger();
  const m = new AcmeManager({
    config,
    secrets,
    wrap: key,
    http: true,
    log,
    clock,
    timing: { retryMinMs: 1000, retryMaxMs: 8000 },
  });
  t.teardown(() => m.close());
  m.setHosts([HOST]);
  await clock.advance(0);
  await waitFor(() => m.contextFor(HOST), { what: 'the stored certificate' });
  t.ok(m.contextFor('APP.example.com.'), 'SNI is matched case-insensitively, trailing dot ignored');
  t.equal(m.contextFor('other.example.com'), undefined);
  t.equal(m.failures.size, 0, 'no order was placed');
  t.notOk(secrets.map.has(ACME_ACCOUNT_SECRET), 'not even an account');
  t.ok(isSealed(secrets.map.get(name)!), 'the stored certificate and key are sealed');
  // Another replica's value under another name cannot be swapped in (bound to its name).
  secrets.map.set(acmeCertSecret('b.example.com'), secrets.map.get(name)!);
  m.setHosts([HOST, 'b.example.com']);
  await clock.advance(0);
  await waitFor(() => m.failures.get('b.example.com'), { what: 'a refused swapped secret, then a failed order' });
  t.equal(m.contextFor('b.example.com'), undefined);
  m.setHosts([]);
  t.equal(m.contextFor(HOST), undefined, 'a host no longer covered is dropped');
});

t.test('a failed order backs off exponentially; renewal is due at two thirds of the lifetime', async (t) => {
  const secrets = memorySecrets();
  const clock = new ManualClock();
  const { log, lines } = capturingLogger();
  const m = new AcmeManager({
    config,
    secrets,
    wrap: undefined,
    http: true,
    log,
    clock,
    timing: { retryMinMs: 1000, retryMaxMs: 4000 },
  });
  t.teardown(() => m.close());
  m.setHosts([HOST]);
  await clock.advance(0);
  await waitFor(() => m.failures.get(HOST) === 1, { what: 'the first failure' });
  t.ok(secrets.map.has(ACME_ACCOUNT_SECRET), 'the account key is stored (in the clear without a master key)');
  for (const n of [2, 3, 4, 5]) {
    await clock.advance(4000);
    await waitFor(() => m.failures.get(HOST) === n, { what: `failure ${n}` });
  }
  const delays = lines.filter((l) => l.msg?.includes('ACME order failed')).map((l) => l['retry_in_ms']);
  t.same(delays, [1000, 2000, 4000, 4000, 4000], 'doubling up to the cap');
  // A certificate another replica stored meanwhile: adopted, renewal scheduled at 2/3 of its life.
  const issued = await certFor(HOST, 90 * DAY);
  await secrets.put(acmeCertSecret(HOST), JSON.stringify(issued), 'test');
  await m.reloadFromStore();
  t.ok(m.contextFor(HOST));
  const failures = m.failures.get(HOST);
  await clock.advance(59 * DAY);
  await turn();
  t.equal(m.failures.get(HOST), failures, 'nothing is ordered before two thirds of the lifetime');
  await clock.advance(2 * DAY);
  await waitFor(() => (m.failures.get(HOST) ?? 0) > failures!, { what: 'the renewal attempt' });
  t.ok(m.contextFor(HOST), 'a failed renewal keeps the current certificate');
  t.ok(lines.some((l) => l.msg === 'ACME renewal failed; the current certificate stays'));
});

t.test('HTTP-01 tokens are bound to their host', async (t) => {
  const m = new AcmeManager({
    config,
    secrets: memorySecrets(),
    wrap: undefined,
    http: true,
    log: capturingLogger().log,
    clock: new ManualClock(),
  });
  t.equal(m.httpChallenge('x', HOST), undefined);
});
