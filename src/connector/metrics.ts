// The connector's only listener: Prometheus metrics and readiness, refused on
// anything but a loopback address so the connector stays outbound-only.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { isLoopbackHost } from '../net/address.js';
import { ProxyctlError } from '../errors.js';

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
