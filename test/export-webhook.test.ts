// Webhook export against a receiver that checks signatures as a security team would:
// a burst arrives whole and signed; a wrong secret is refused by the receiver and the
// exporter retries (and says so in its log) until the secrets agree; an outage and a
// receiver that never answers are retried without losing anything.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Exporter } from '../src/export/exporter.js';
import { webhookSignature } from '../src/export/webhook.js';
import type { WebhookSinkConfig } from '../src/config/export-config.js';
import type { Logger } from '../src/log.js';
import type { SecurityEvent } from '../src/store/types.js';
import { silentLogger } from '../src/log.js';
import { MemoryStore, makeTestPki } from './helpers/rsyslog.js';
import { startWebhookReceiver } from './helpers/webhook-receiver.js';
import { waitFor } from './helpers/wait.js';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';

const SECRET = 'an-hmac-key-for-the-webhook-0123';
const pki = await makeTestPki();

function hookSink(url: string, over: Partial<WebhookSinkConfig> = {}): WebhookSinkConfig {
  return {
    kind: 'webhook',
    name: `webhook:${url}`,
    url,
    secret: SECRET,
    caPem: pki.caPem,
    timeoutMs: 2000,
    queueSize: 10_000,
    batchSize: 50,
    from: 'start',
    ...over,
  };
}

async function exporter(
  t: Test,
  mem: MemoryStore,
  cfg: WebhookSinkConfig,
  log: Logger = silentLogger,
): Promise<Exporter> {
  const x = new Exporter({ store: mem.store, sinks: [cfg], log, pollMs: 50, retryBaseMs: 20, retryMaxMs: 200 });
  t.teardown(() => x.close());
  await x.start();
  return x;
}

/** A logger whose lines the test reads. */
function capture(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

t.test('the signature is v1= hex HMAC-SHA256 over timestamp.body (checked against openssl)', async (t) => {
  const body = '{"events":[{"id":"signin-1"}]}';
  const out = execFileSync('openssl', ['dgst', '-sha256', '-hmac', 'key'], { input: `1700000000.${body}` }).toString();
  t.equal(webhookSignature('key', '1700000000', body), `v1=${/([0-9a-f]{64})\s*$/.exec(out)![1]}`);
});

t.test('a burst arrives whole, each POST signed and verified', async (t) => {
  const { receiver, url } = await startWebhookReceiver(t, { ...pki.server, secret: SECRET });
  const mem = new MemoryStore();
  const x = await exporter(t, mem, hookSink(url));
  const sent: SecurityEvent[] = [];
  for (let i = 0; i < 600; i++) {
    const e = mem.add(i % 5 === 4 ? 'riskDetection' : 'signIn');
    sent.push(e);
    x.publish(e);
  }
  await waitFor(() => receiver.ids().size >= 600, { what: '600 ids at the receiver', timeoutMs: 20_000 });
  t.same(receiver.ids(), new Set(sent.map((e) => e.id)), 'every event id arrived');
  t.equal(receiver.rejected, 0, 'every signature verified');
  t.ok(receiver.requests >= 12, `batched: ${receiver.requests} POSTs of at most 50`);
  const first = receiver.events.find((e) => e.id === sent[0]!.id)!;
  t.same(first.data, sent[0]!.data, 'the record as stored');
  t.equal(first.time, new Date(sent[0]!.at).toISOString());
  await waitFor(() => x.stats()[0]!.delivered === 600);
});

t.test('a wrong secret: the receiver refuses, the exporter retries and logs, nothing is lost', async (t) => {
  const { receiver, url } = await startWebhookReceiver(t, { ...pki.server, secret: 'the-receivers-other-secret-000' });
  const mem = new MemoryStore();
  const { log, lines } = capture();
  const x = await exporter(t, mem, hookSink(url), log);
  for (let i = 0; i < 20; i++) x.publish(mem.add());
  await waitFor(() => receiver.rejected >= 3, { what: 'three refusals' });
  t.equal(receiver.events.length, 0, 'nothing accepted with a bad signature');
  // The receiver counts its refusal before the exporter reads the answer.
  await waitFor(() => x.stats()[0]!.failures >= 3, { what: 'failures counted' });
  t.ok(x.stats()[0]!.failures >= 3, 'failures counted');
  const warned = lines.find((l) => l['msg'] === 'export delivery failed');
  t.match(
    warned,
    { level: 40, sink: `webhook:${url}`, reason: 'status', err: /401/ },
    'logged with the sink and the status',
  );
  t.notMatch(JSON.stringify(lines), new RegExp(SECRET), 'the secret is never logged');
  // The operator fixes the receiver's secret: the retries go through.
  receiver.secret = SECRET;
  await waitFor(() => receiver.ids().size === 20, { what: 'all 20 after the fix', timeoutMs: 10_000 });
  await waitFor(() => lines.some((l) => l['msg'] === 'export sink delivering again'));
});

t.test('a stale timestamp is refused by the receiver', async (t) => {
  const { receiver } = await startWebhookReceiver(t, { ...pki.server, secret: SECRET });
  const body = '{"events":[]}';
  const old = String(Math.floor(Date.now() / 1000) - 3600);
  t.notOk(receiver.verify(old, webhookSignature(SECRET, old, body), body), 'an hour old');
  const now = String(Math.floor(Date.now() / 1000));
  t.ok(receiver.verify(now, webhookSignature(SECRET, now, body), body), 'fresh');
  t.notOk(receiver.verify(now, webhookSignature(SECRET, now, body), `${body} `), 'the body changed');
  t.notOk(receiver.verify(now, webhookSignature(SECRET, String(Number(now) + 1), body), body), 'the timestamp changed');
});

t.test('an outage (503) and then recovery: everything arrives', async (t) => {
  let down = true;
  const { receiver, url } = await startWebhookReceiver(t, {
    ...pki.server,
    secret: SECRET,
    fail: () => (down ? 503 : undefined),
  });
  const mem = new MemoryStore();
  const x = await exporter(t, mem, hookSink(url, { batchSize: 7 }));
  for (let i = 0; i < 30; i++) x.publish(mem.add());
  await waitFor(() => receiver.requests >= 3);
  t.equal(x.stats()[0]!.delivered, 0);
  down = false;
  for (let i = 0; i < 30; i++) x.publish(mem.add());
  await waitFor(() => receiver.ids().size === 60, { what: 'all 60', timeoutMs: 10_000 });
  t.equal(receiver.ids().size, 60);
});

t.test('a receiver that never answers: timed out and retried', async (t) => {
  const hung = createServer({ cert: pki.server.certPem, key: pki.server.keyPem }, () => undefined);
  await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    hung.closeAllConnections();
    hung.close();
  });
  const mem = new MemoryStore();
  const { log, lines } = capture();
  const x = await exporter(
    t,
    mem,
    hookSink(`https://127.0.0.1:${(hung.address() as AddressInfo).port}/`, { timeoutMs: 200 }),
    log,
  );
  x.publish(mem.add());
  await waitFor(() => x.stats()[0]!.failures >= 2, { what: 'two timeouts' });
  t.match(
    lines.find((l) => l['msg'] === 'export delivery failed'),
    { reason: 'timeout' },
  );
});
