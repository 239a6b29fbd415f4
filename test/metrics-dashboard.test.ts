// The Grafana dashboard in docs/grafana/proxyctl.json queries only metrics that exist:
// every metric name in its PromQL (panel targets and template variables) must be exported
// by a running relay's /metrics (admin listener) or a running connector's metrics listener.
import t from 'tap';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { ConnectorMetrics, startMetricsServer } from '../src/connector/metrics.js';
import { startHarness } from './helpers/harness.js';
import { httpGet, parseExposition, queryableNames } from './helpers/prom-text.js';

const DASHBOARD = new URL('../docs/grafana/proxyctl.json', import.meta.url);

/** PromQL words that are not metric names. */
const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'and',
  'or',
  'unless',
  'inf',
  'nan',
]);

/**
 * The metric names a PromQL expression reads: strings, label matchers, ranges, grouping
 * label lists and Grafana variables removed; an identifier followed by "(" is a function
 * or aggregation; what is left is a metric name.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ' ')
    // Numbers (0.95, 1e9) and durations (5m, 30s).
    .replace(/\b\d[\d.]*(?:e[+-]?\d+)?(?:ms|[smhdwy])?\b/gi, ' ');
  const out: string[] = [];
  for (const m of bare.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    const word = m[1]!;
    if (m[2] || KEYWORDS.has(word.toLowerCase())) continue;
    out.push(word);
  }
  return out;
}

interface Panel {
  title?: string;
  type?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

/** Every PromQL text in the dashboard: panel targets (rows included) and query variables. */
function queries(dashboard: {
  panels: Panel[];
  templating?: { list: { name: string; query?: string | { query?: string } }[] };
}): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (panels: Panel[]) => {
    for (const p of panels) {
      for (const target of p.targets ?? [])
        if (target.expr) out.push({ where: `panel "${p.title}"`, expr: target.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    // label_values(metric, label): the metric is the first argument.
    const m = q ? /^label_values\(\s*([^,)]+)/.exec(q) : null;
    if (m) out.push({ where: `variable $${v.name}`, expr: m[1]! });
  }
  return out;
}

t.test('the extractor finds metric names, and only those', async (t) => {
  t.same(
    metricNames(
      'histogram_quantile(0.95, sum by (le, app) (rate(proxyctl_relay_request_duration_seconds_bucket{app=~"$app", x="a(b)"}[$__rate_interval])))',
    ),
    ['proxyctl_relay_request_duration_seconds_bucket'],
  );
  t.same(metricNames('sum(a_total) / on (app) group_left(x) b_total > bool 1e3 or c offset 5m'), [
    'a_total',
    'b_total',
    'c',
  ]);
  t.same(metricNames('max(proxyctl_relay_process_resident_memory_bytes{instance=~"$instance"}) / 1e9'), [
    'proxyctl_relay_process_resident_memory_bytes',
  ]);
});

t.test('every metric the dashboard queries is exported by a relay or a connector', async (t) => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Parameters<typeof queries>[0] & {
    uid: string;
    __inputs: { name: string }[];
  };
  t.equal(dashboard.uid, 'proxyctl');
  t.same(
    dashboard.__inputs.map((i) => i.name),
    ['DS_PROMETHEUS'],
    'the data source is chosen at import',
  );

  const h = await startHarness(t, { yaml: () => 'admin: { listen: "127.0.0.1:0" }\n' });
  const relay = await httpGet(h.relay.adminAddress()!.port, '/metrics');
  t.equal(relay.status, 200);
  const cm = new ConnectorMetrics();
  const server = await startMetricsServer(cm, { host: '127.0.0.1', port: 0 }, () => true);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const connector = await httpGet((server.address() as AddressInfo).port, '/metrics');
  t.equal(connector.status, 200);
  const exported = new Set([
    ...queryableNames(parseExposition(relay.body)),
    ...queryableNames(parseExposition(connector.body)),
  ]);

  const all = queries(dashboard);
  t.ok(all.length >= 20, `${all.length} queries`);
  const used = new Set<string>();
  for (const { where, expr } of all) {
    const names = metricNames(expr);
    t.ok(names.length > 0, `${where} queries a metric`);
    for (const name of names) {
      used.add(name);
      t.ok(exported.has(name), `${where}: ${name} is exported`);
    }
  }
  // The dashboard covers what the issue asks of it.
  for (const family of [
    'proxyctl_relay_requests_total',
    'proxyctl_relay_request_duration_seconds_bucket',
    'proxyctl_relay_queue_wait_seconds_bucket',
    'proxyctl_relay_channels_open',
    'proxyctl_relay_queued_requests',
    'proxyctl_relay_signins_total',
    'proxyctl_relay_risk_detections_total',
    'proxyctl_relay_export_lag_seconds',
    'proxyctl_relay_export_dropped_total',
    'proxyctl_relay_certificate_expiry_days',
    'proxyctl_relay_store_duration_seconds_bucket',
    'proxyctl_connector_backend_duration_seconds_bucket',
    'proxyctl_connector_requests_total',
  ])
    t.ok(used.has(family), `the dashboard shows ${family}`);

  // The check can fail: a name nothing exports is caught.
  t.notOk(exported.has(metricNames('rate(proxyctl_relay_requests_totl[5m])')[0]!), 'a misspelt name is not exported');
});
