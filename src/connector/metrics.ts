// The connector's only listener: Prometheus metrics and readiness, refused on
// anything but a loopback address so the connector stays outbound-only.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { isLoopbackHost } from '../net/address.js';
import { ProxyctlError } from '../errors.js';
import { CellCounter, CellHistogram, type CounterCell, type HistogramCell } from '../metric-cells.js';

/** `error`: the backend gave no answer (unreachable, timed out, failed before its headers). */
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;
const ERROR = 5;
/** Seconds from the call to the backend to its response headers. */
const BACKEND_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** At most this many app label values (apps come from the relay's configuration). */
const MAX_APPS = 1000;

/** What the proxy updates for one app, found with one map lookup. */
interface BackendCells {
  byClass: readonly CounterCell[];
  duration: HistogramCell;
}

export class ConnectorMetrics {
  readonly registry = new Registry();
  readonly channelsUp = new Gauge({
    name: 'proxyctl_connector_channels_up',
    help: 'Open control channels to the relay',
    registers: [this.registry],
  });
  readonly reconnects = new Counter({
    name: 'proxyctl_connector_reconnects_total',
    help: 'Control channel reconnect attempts',
    registers: [this.registry],
  });
  readonly configPulls = new Counter({
    name: 'proxyctl_connector_config_pulls_total',
    help: 'Configuration pulls',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly renewals = new Counter({
    name: 'proxyctl_connector_certificate_renewals_total',
    help: 'Certificate renewals',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly certExpiry = new Gauge({
    name: 'proxyctl_connector_certificate_expiry_seconds',
    help: 'Unix time the client certificate expires',
    registers: [this.registry],
  });
  private readonly requests = new CellCounter({
    name: 'proxyctl_connector_requests_total',
    help: 'Backend calls by app and status class (error: no answer from the backend)',
    labelNames: ['app', 'class'],
    registers: [this.registry],
  });
  private readonly backendDuration = new CellHistogram({
    name: 'proxyctl_connector_backend_duration_seconds',
    help: 'Time from calling the backend to its response headers (or its failure), by app',
    labelNames: ['app'],
    buckets: BACKEND_BUCKETS,
    registers: [this.registry],
  });
  private readonly apps = new Map<string, BackendCells>();

  private cellsOf(name: string): BackendCells {
    let cells = this.apps.get(name);
    if (!cells) {
      const app = this.apps.size < MAX_APPS ? name : '(other)';
      cells = {
        byClass: CLASSES.map((c) => this.requests.cell({ app, class: c })),
        duration: this.backendDuration.cell({ app }),
      };
      this.apps.set(name, cells);
    }
    return cells;
  }

  /** The backend answered with `status` after `seconds`; status 0: it gave no answer. */
  backendCall(app: string, status: number, seconds: number): void {
    const cells = this.cellsOf(app);
    const c = status === 0 ? ERROR : Math.min(4, Math.max(0, ((status / 100) | 0) - 1));
    cells.byClass[c]!.inc();
    cells.duration.observe(seconds);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'proxyctl_connector_' });
  }
}

export function parseLoopbackListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2])! : '';
  if (!m || port > 65535 || !isLoopbackHost(host)) {
    throw new ProxyctlError(
      'ERR_USAGE',
      `--metrics-listen must be a loopback host:port such as 127.0.0.1:9464 (found ${JSON.stringify(text)})`,
    );
  }
  return { host, port };
}

export async function startMetricsServer(
  metrics: ConnectorMetrics,
  listen: { host: string; port: number },
  ready: () => boolean,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (path === '/readyz') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'no channel to the relay\n');
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return server;
}

export function addressOf(server: Server): string {
  const a = server.address() as AddressInfo;
  return `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}
