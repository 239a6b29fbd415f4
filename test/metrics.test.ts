// Relay and connector metrics: the request path's cells read exactly as prom-client's own
// metrics would; RelayMetrics' families, labels and bounds; /metrics on the admin listener;
// and end to end through a real relay, connector and backend.
import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { pino } from 'pino';
import { CellCounter, CellHistogram } from '../src/metric-cells.js';
import { NO_APP, RelayMetrics, notAfterOf, type ExportSinkStats } from '../src/relay/admin/metrics.js';
import { createAdminServer } from '../src/relay/admin/admin-server.js';
import { ConnectorMetrics, startMetricsServer } from '../src/connector/metrics.js';
import { startBackend } from './helpers/backend.js';
import { startHarness } from './helpers/harness.js';
import { closedPort } from './helpers/proc.js';
import { httpGet, parseExposition } from './helpers/prom-text.js';
import { waitFor } from './helpers/wait.js';
import { Agent, request } from 'undici';
import type { AddressInfo } from 'node:net';

const scrape = async (m: RelayMetrics | ConnectorMetrics) => parseExposition(await m.registry.metrics());

t.test("cells read exactly as prom-client's own counter and histogram", async (t) => {
  const buckets = [0, 0.01, 0.1, 1, 10];
  const mine = new Registry();
  const theirs = new Registry();
  const h1 = new CellHistogram({ name: 'x_seconds', help: 'h', labelNames: ['app'], buckets, registers: [mine] });
  const h2 = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['app'], buckets, registers: [theirs] });
  const c1 = new CellCounter({ name: 'x_total', help: 'c', labelNames: ['app', 'class'], registers: [mine] });
  const c2 = new Counter({ name: 'x_total', help: 'c', labelNames: ['app', 'class'], registers: [theirs] });
  const values = [0, 0, 0.005, 0.01, 0.0100001, 0.5, 1, 9.99, 10, 11, 1e6];
  for (const [i, v] of values.entries()) {
    const app = i % 3 === 0 ? 'a' : 'b "quoted"\\';
    h1.cell({ app }).observe(v);
    h2.observe({ app }, v);
    c1.cell({ app, class: `${(i % 5) + 1}xx` }).inc();
    c2.inc({ app, class: `${(i % 5) + 1}xx` });
  }
  t.equal(await mine.metrics(), await theirs.metrics(), 'the same exposition text');
  t.same(await mine.getMetricsAsJSON(), await theirs.getMetricsAsJSON(), 'the same JSON');
  // Scrapes do not change the counts.
  t.equal(await mine.metrics(), await theirs.metrics(), 'twice');

  const cell = h1.cell({ app: 'odd' });
  t.equal(cell, h1.cell({ app: 'odd' }), 'one cell per label set');
  cell.observe(-5);
  cell.observe(Number.NaN);
  cell.observe(Infinity);
  const e = parseExposition(await mine.metrics());
  t.equal(e.value('x_seconds_bucket', { app: 'odd', le: '0' }), 3, 'negative, NaN and infinite count as 0');
  t.equal(e.value('x_seconds_sum', { app: 'odd' }), 0);
});

t.test('RelayMetrics: requests, latency and queue wait by app, with bounded labels', async (t) => {
  const m = new RelayMetrics();
  for (const status of [101, 200, 204, 302, 404, 429, 500, 503, 0, 999]) m.request('app1', status, 0.02);
  m.request(undefined, 404, 0.001);
  m.request('(identity provider)', 200, 0.3);
  m.queued('app1', 0);
  m.queued('app1', 0);
  m.queued('app1', 0.7);
  t.equal(m.app('app1'), m.app('app1'), 'cells are made once per app');
  const e = await scrape(m);
  t.equal(e.types.get('proxyctl_relay_requests_total'), 'counter');
  const req = (app: string, cls: string) => e.value('proxyctl_relay_requests_total', { app, class: cls });
  t.equal(req('app1', '1xx'), 2, '101, and 0 (no status) counts as 1xx');
  t.equal(req('app1', '2xx'), 2);
  t.equal(req('app1', '3xx'), 1);
  t.equal(req('app1', '4xx'), 2);
  t.equal(req('app1', '5xx'), 3, '999 counts as 5xx');
  t.equal(req(NO_APP, '4xx'), 1, 'no app matched: (none), never the Host header');
  t.equal(req('(identity provider)', '2xx'), 1);
  t.equal(e.value('proxyctl_relay_request_duration_seconds_count', { app: 'app1' }), 10);
  t.equal(e.value('proxyctl_relay_request_duration_seconds_bucket', { app: 'app1', le: '0.01' }), 0);
  t.equal(e.value('proxyctl_relay_request_duration_seconds_bucket', { app: 'app1', le: '0.025' }), 10);
  t.equal(e.value('proxyctl_relay_queue_wait_seconds_bucket', { app: 'app1', le: '0' }), 2, 'taken at once');
  t.equal(e.value('proxyctl_relay_queue_wait_seconds_bucket', { app: 'app1', le: '0.5' }), 2);
  t.equal(e.value('proxyctl_relay_queue_wait_seconds_bucket', { app: 'app1', le: '1' }), 3);
  t.ok(e.types.has('proxyctl_relay_process_cpu_seconds_total'), 'process metrics carry the relay prefix');
  t.ok(e.types.has('proxyctl_relay_nodejs_eventloop_lag_seconds'));

  // However many names arrive, the app label stays bounded.
  for (let i = 0; i < 1100; i++) m.request(`a${i}`, 200, 0.001);
  const many = await scrape(m);
  const apps = new Set(many.find('proxyctl_relay_requests_total').map((s) => s.labels['app']));
  t.ok(apps.size <= 1001, `${apps.size} app label values`);
  t.ok(apps.has('(other)'), 'the rest count as (other)');
  t.equal(
    many.value('proxyctl_relay_requests_total', { app: '(other)', class: '2xx' }),
    1100 + 3 - 1000,
    'and are counted',
  );
});

t.test('RelayMetrics: sign-ins, detections and store latency', async (t) => {
  const m = new RelayMetrics();
  m.signIn('success', 'password');
  m.signIn('success', 'totp');
  m.signIn('failure', 'password');
  m.signIn('stepUp', 'mfa');
  m.signIn('failure', 'bearer');
  m.signIn('failure', 'Robert"); DROP TABLE');
  m.signIn('bogus' as 'success', 'password');
  // As the sign-in log reports rows: the strongest method, and the detections they carry.
  const row: Parameters<RelayMetrics['signInRecorded']>[0] = {
    kind: 'interactive',
    result: 'success',
    methods: [],
    detections: [],
  };
  m.signInRecorded({ ...row, methods: ['pwd'] });
  m.signInRecorded({ ...row, methods: ['pwd', 'otp'] });
  m.signInRecorded({ ...row, methods: ['mfa', 'pwd'] });
  m.signInRecorded({ ...row, methods: ['hwk'] });
  m.signInRecorded({ ...row, kind: 'bearer', methods: ['pwd'] });
  m.signInRecorded({
    ...row,
    result: 'failure',
    methods: [],
    detections: [{ type: 'anonymousIp', level: 'high' }],
  });
  for (let i = 0; i < 40; i++) m.detection(`type${i}`, 'medium');
  m.detection('anonymousIp', 'high');
  m.detection('type0', 'bogus');
  m.observeStore('signins.record', 0.003);
  m.observeStore('signins.record', 0.2);
  await m.timeStore('keys.all', Promise.resolve(1));
  await t.rejects(m.timeStore('failing', Promise.reject(new Error('down'))), 'a failure passes through');
  for (let i = 0; i < 40; i++) m.observeStore(`op${i}`, 0.001);
  const e = await scrape(m);
  const s = (result: string, method: string) => e.value('proxyctl_relay_signins_total', { result, method });
  t.equal(s('success', 'password'), 2, 'signIn, and a row with amr pwd');
  t.equal(s('success', 'totp'), 2, 'signIn, and a row with amr pwd+otp');
  t.equal(s('success', 'mfa'), 1, 'a row with amr mfa');
  t.equal(s('success', 'other'), 1, 'a row with another amr');
  t.equal(s('success', 'bearer'), 1, 'a bearer row, whatever its amr');
  t.equal(s('failure', 'none'), 1, 'a failure before any method');
  t.equal(s('failure', 'password'), 1);
  t.equal(s('stepUp', 'mfa'), 1);
  t.equal(s('failure', 'bearer'), 1);
  t.equal(s('failure', 'other'), 1, 'unknown methods are `other`');
  t.equal(s('other', 'password'), 1, 'unknown results are `other`');
  const types = new Set(e.find('proxyctl_relay_risk_detections_total').map((x) => x.labels['type']));
  t.equal(types.size, 33, '32 detection types and other');
  t.equal(e.value('proxyctl_relay_risk_detections_total', { type: 'other', level: 'medium' }), 9);
  t.equal(e.value('proxyctl_relay_risk_detections_total', { type: 'anonymousIp', level: 'high' }), 2, 'from a row too');
  t.equal(e.value('proxyctl_relay_risk_detections_total', { type: 'type0', level: 'other' }), 1);
  t.equal(e.value('proxyctl_relay_store_duration_seconds_count', { op: 'signins.record' }), 2);
  t.equal(e.value('proxyctl_relay_store_duration_seconds_bucket', { op: 'signins.record', le: '0.005' }), 1);
  t.equal(e.value('proxyctl_relay_store_duration_seconds_count', { op: 'keys.all' }), 1);
  t.equal(e.value('proxyctl_relay_store_duration_seconds_count', { op: 'failing' }), 1);
  const ops = new Set(e.find('proxyctl_relay_store_duration_seconds_count').map((x) => x.labels['op']));
  t.equal(ops.size, 33, 'store operations bounded too');
});

t.test('RelayMetrics: channels, queue, export sinks and certificates read when scraped', async (t) => {
  let channels = [
    { group: 'default', connectorId: 'c-1' },
    { group: 'default', connectorId: 'c-1' },
    { group: 'default', connectorId: 'c-2' },
    { group: 'db', connectorId: 'c-3' },
  ];
  let sinks: ExportSinkStats[] = [
    { sink: 'siem', queueDepth: 12, dropped: 3, delivered: 1000, failures: 2, lagSeconds: 1.5 },
    { sink: 'file', queueDepth: 0, dropped: 0, delivered: 50, failures: 0, lagSeconds: 0 },
  ];
  const now = Date.UTC(2030, 0, 1);
  const m = new RelayMetrics({
    channels: () => channels,
    queue: () => ({ waiting: 4, inFlight: 9 }),
    exportSinks: () => sinks,
    certificates: () => [
      { certificate: 'ca', notAfter: now + 3650 * 86_400_000 },
      { certificate: 'listener', notAfter: now + 1.5 * 86_400_000 },
      { certificate: 'app:old.test', notAfter: now - 2 * 86_400_000 },
    ],
    now: () => now,
  });
  let e = await scrape(m);
  t.equal(e.value('proxyctl_relay_channels_open', { group: 'default', connector_id: 'c-1' }), 2);
  t.equal(e.value('proxyctl_relay_channels_open', { group: 'default', connector_id: 'c-2' }), 1);
  t.equal(e.value('proxyctl_relay_channels_open', { group: 'db', connector_id: 'c-3' }), 1);
  t.equal(e.value('proxyctl_relay_queued_requests'), 4);
  t.equal(e.value('proxyctl_relay_requests_in_flight'), 9);
  t.equal(e.value('proxyctl_relay_export_queue_depth', { sink: 'siem' }), 12);
  t.equal(e.value('proxyctl_relay_export_dropped_total', { sink: 'siem' }), 3);
  t.equal(e.value('proxyctl_relay_export_delivered_total', { sink: 'siem' }), 1000);
  t.equal(e.value('proxyctl_relay_export_failures_total', { sink: 'siem' }), 2);
  t.equal(e.value('proxyctl_relay_export_lag_seconds', { sink: 'siem' }), 1.5);
  t.equal(e.types.get('proxyctl_relay_export_dropped_total'), 'counter');
  t.equal(e.value('proxyctl_relay_certificate_expiry_days', { certificate: 'ca' }), 3650);
  t.equal(e.value('proxyctl_relay_certificate_expiry_days', { certificate: 'listener' }), 1.5);
  t.equal(e.value('proxyctl_relay_certificate_expiry_days', { certificate: 'app:old.test' }), -2, 'expired: negative');

  // What went away is no longer reported; counters follow the sink's own totals.
  channels = [{ group: 'db', connectorId: 'c-3' }];
  sinks = [{ sink: 'siem', queueDepth: 0, dropped: 5, delivered: 1200, failures: 2, lagSeconds: 0 }];
  e = await scrape(m);
  t.equal(e.find('proxyctl_relay_channels_open').length, 1, 'closed channels leave');
  t.equal(e.value('proxyctl_relay_export_dropped_total', { sink: 'siem' }), 5);
  t.equal(e.value('proxyctl_relay_export_delivered_total', { sink: 'siem' }), 1200);
  t.equal(e.value('proxyctl_relay_export_queue_depth', { sink: 'file' }), undefined, 'a removed sink leaves');

  const bare = await scrape(new RelayMetrics());
  t.equal(bare.value('proxyctl_relay_queued_requests'), 0, 'without sources: zeros and empty families');
  t.ok(bare.types.has('proxyctl_relay_export_queue_depth'));
});

t.test('/metrics on the admin listener', async (t) => {
  const log = pino({ level: 'silent' });
  let fail = false;
  const metrics = new RelayMetrics({
    exportSinks: () => {
      if (fail) throw new Error('sink stats broke');
      return [];
    },
  });
  metrics.request('x', 200, 0.01);
  const withMetrics = createAdminServer({ checks: () => ({}), log, metrics });
  const without = createAdminServer({ checks: () => ({}), log });
  t.teardown(() => Promise.all([withMetrics.close(), without.close()]));
  await withMetrics.start('127.0.0.1', 0);
  await without.start('127.0.0.1', 0);
  const port = withMetrics.address()!.port;
  const r = await httpGet(port, '/metrics');
  t.equal(r.status, 200);
  t.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8', 'Prometheus text content type');
  t.equal(parseExposition(r.body).value('proxyctl_relay_requests_total', { app: 'x', class: '2xx' }), 1);
  t.equal((await httpGet(port, '/metrics?x=1')).status, 200, 'a query string is ignored');
  const head = await httpGet(port, '/metrics', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '');
  t.equal((await httpGet(port, '/metrics', 'POST')).status, 405);
  t.equal((await httpGet(port, '/metrics/')).status, 404);
  t.equal((await httpGet(without.address()!.port, '/metrics')).status, 404, 'no metrics given: none served');
  fail = true;
  t.equal((await httpGet(port, '/metrics')).status, 500, 'a failing collector fails the scrape');
  fail = false;
  t.equal((await httpGet(port, '/metrics')).status, 200, 'and the next one works');
  t.equal((await httpGet(port, '/healthz')).status, 200, 'beside /healthz');
});

t.test('notAfterOf reads a certificate once', async (t) => {
  const h = await startHarness(t);
  const notAfter = notAfterOf(h.relay.ca.certPem);
  t.ok(notAfter > Date.now() + 300 * 86_400_000, 'the relay CA lasts years');
  t.equal(notAfterOf(h.relay.ca.certPem), notAfter);
  t.throws(() => notAfterOf('not a certificate'));
});

t.test('end to end: relay and connector metrics after real requests', async (t) => {
  const backend = await startBackend();
  t.teardown(() => backend.close());
  const dead = await closedPort();
  const h = await startHarness(t, {
    yaml: () => `admin: { listen: "127.0.0.1:0" }
connectors: { heartbeatInterval: 200ms, queueTimeout: 400ms }
apps:
  - name: shop
    externalUrl: "https://shop.test/"
    internalUrl: "${backend.origin}/shop/"
    preauth: passthrough
  - name: dead
    externalUrl: "https://dead.test/"
    internalUrl: "http://127.0.0.1:${dead}/"
    preauth: passthrough
  - name: lonely
    externalUrl: "https://lonely.test/"
    internalUrl: "${backend.origin}/lonely/"
    preauth: passthrough
    connectorGroup: nobody
`,
  });
  const cm = new ConnectorMetrics();
  const connector = await h.addConnector({ metrics: cm });
  const cserver = await startMetricsServer(cm, { host: '127.0.0.1', port: 0 }, () => true);
  t.teardown(() => new Promise<void>((r) => cserver.close(() => r())));
  const adminPort = h.relay.adminAddress()!.port;
  const relayScrape = async () => {
    const r = await httpGet(adminPort, '/metrics');
    t.equal(r.status, 200, 'relay /metrics answers');
    return parseExposition(r.body);
  };
  // Hosts the relay certificate does not name still reach the relay.
  const anyHost = new Agent({
    connect: {
      ca: h.relay.ca.certPem,
      lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
      checkServerIdentity: () => undefined,
    },
  });
  t.teardown(() => anyHost.close());
  const get = async (host: string, p = '/echo') => {
    const r = await request(h.url(host, p), { dispatcher: anyHost });
    await r.body.dump();
    return r.statusCode;
  };

  for (let i = 0; i < 5; i++) t.equal(await get('shop.test'), 200);
  t.equal(await get('dead.test'), 502, 'backend unreachable');
  t.equal(await get('nowhere.test'), 404, 'unknown host');
  const lonely = get('lonely.test');
  // While it waits for a connector of its group, it is a queued request.
  await waitFor(async () => (await relayScrape()).value('proxyctl_relay_queued_requests') === 1, {
    what: 'a queued request',
  });
  t.equal(await lonely, 503, 'no connector in the group');

  const e = (await waitFor(
    async () => {
      const s = await relayScrape();
      return (s.value('proxyctl_relay_requests_total', { app: 'lonely', class: '5xx' }) ?? 0) >= 1 &&
        (s.value('proxyctl_relay_store_duration_seconds_count', { op: 'connectors.touch' }) ?? 0) >= 1
        ? s
        : undefined;
    },
    { what: 'the requests and a heartbeat counted' },
  ))!;
  t.equal(e.value('proxyctl_relay_requests_total', { app: 'shop', class: '2xx' }), 5);
  t.equal(e.value('proxyctl_relay_requests_total', { app: 'dead', class: '5xx' }), 1);
  t.equal(e.value('proxyctl_relay_requests_total', { app: NO_APP, class: '4xx' }), 1);
  t.equal(e.find('proxyctl_relay_requests_total', { app: 'nowhere.test' }).length, 0, 'no Host as a label');
  t.equal(e.value('proxyctl_relay_request_duration_seconds_count', { app: 'shop' }), 5);
  t.equal(e.value('proxyctl_relay_queue_wait_seconds_bucket', { app: 'shop', le: '0' }), 5, 'shop never waited');
  t.equal(e.value('proxyctl_relay_queue_wait_seconds_count', { app: 'lonely' }), 1);
  t.equal(e.value('proxyctl_relay_queue_wait_seconds_bucket', { app: 'lonely', le: '0.25' }), 0, 'lonely waited');
  t.ok(e.value('proxyctl_relay_queue_wait_seconds_sum', { app: 'lonely' })! >= 0.35, 'about its queue timeout');
  t.equal(e.value('proxyctl_relay_queued_requests'), 0, 'nothing waits any more');
  const channels = e.find('proxyctl_relay_channels_open', { group: 'default' });
  t.equal(channels.length, 1, 'one connector');
  t.equal(channels[0]?.value, connector.openChannels(), "with the connector's open channels");
  t.ok(e.value('proxyctl_relay_certificate_expiry_days', { certificate: 'ca' })! > 300, 'CA days left');
  t.ok(e.value('proxyctl_relay_certificate_expiry_days', { certificate: 'listener' })! > 1, 'listener days left');

  const c = parseExposition((await httpGet((cserver.address() as AddressInfo).port, '/metrics')).body);
  t.equal(c.value('proxyctl_connector_requests_total', { app: 'shop', class: '2xx' }), 5);
  t.equal(c.value('proxyctl_connector_requests_total', { app: 'dead', class: 'error' }), 1, 'no answer: error');
  t.equal(c.value('proxyctl_connector_backend_duration_seconds_count', { app: 'shop' }), 5);
  t.equal(c.value('proxyctl_connector_backend_duration_seconds_count', { app: 'dead' }), 1);
  t.ok(c.value('proxyctl_connector_backend_duration_seconds_sum', { app: 'shop' })! > 0);
});
