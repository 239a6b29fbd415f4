// The sign-in log's own limits on what strangers can make it write: refused attempts
// at the embedded provider are rows, but a throttled one is recorded once per source
// and name a minute, and passwords never reach the store.
import t from 'tap';
import type { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { SignInLog } from '../src/relay/auth/sign-in-log.js';
import { RiskServices } from '../src/relay/auth/risk.js';
import { RISK_CONFIG_DEFAULTS } from '../src/config/risk-config.js';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { silentLogger } from '../src/log.js';
import { ManualClock } from './helpers/clock.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

function fakeRequest(ip: string): IncomingMessage {
  const socket = new Socket();
  Object.defineProperty(socket, 'remoteAddress', { value: ip });
  return { socket, headers: { 'user-agent': 'curl/8.5' } } as unknown as IncomingMessage;
}

t.test('provider attempts: throttled ones once a minute per source and name; no passwords stored', async (t) => {
  const store = openSqliteStore(tempDir(t));
  t.teardown(() => store.close());
  const clock = new ManualClock(Date.parse('2026-12-07T12:00:00Z'));
  const risk = new RiskServices(
    RISK_CONFIG_DEFAULTS,
    { cityDatabases: [], asnDatabases: [] },
    {
      store,
      log: silentLogger,
      clock,
    },
  );
  const log = new SignInLog({ store, log: silentLogger, now: () => clock.now(), risk, embedded: () => true });
  const req = fakeRequest('203.0.113.50');
  const attempt = (reason: 'throttled' | 'wrong password', username = 'alice') =>
    log.providerAttempt({
      req,
      username,
      known: true,
      ip: '203.0.113.50',
      step: 'password',
      reason,
      ...(reason === 'wrong password' ? { password: 'hunter2-secret' } : {}),
    });
  for (let i = 0; i < 100; i++) attempt('throttled');
  attempt('throttled', 'bob');
  attempt('wrong password');
  const count = async () => (await store.signIns.query({ limit: 1000 })).length;
  await waitFor(async () => (await count()) === 3, { what: 'three rows' });
  t.equal(await count(), 3, '100 throttled attempts are one row; another name is another');
  await clock.advance(61_000);
  attempt('throttled');
  await waitFor(async () => (await count()) === 4, { what: 'a row a minute later' });
  const rows = await store.signIns.query({ limit: 1000 });
  t.match(rows[0], {
    kind: 'provider',
    subject: 'alice',
    reason: 'password: throttled',
    clientType: 'script',
    ip: '203.0.113.50',
  });
  t.notOk(JSON.stringify(rows).includes('hunter2'), 'no password in any row');
  risk.close();
});
