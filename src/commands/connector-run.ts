// `proxyctl connector run`: start the supervisor, optionally the loopback
// metrics endpoint, and drain on SIGTERM/SIGINT. Resolves when stopped cleanly,
// rejects when the relay disowns this connector.
import path from 'node:path';
import { Connector } from '../connector/connector.js';
import { ConnectorMetrics, addressOf, parseLoopbackListen, startMetricsServer } from '../connector/metrics.js';
import { defaultStateDir } from '../connector/state.js';
import { tuneHeapForStreaming } from '../heap-tuning.js';
import { createLogger } from '../log.js';

export interface RunOptions {
  stateDir?: string;
  metricsListen?: string;
}

export async function runConnector(opts: RunOptions): Promise<void> {
  tuneHeapForStreaming();
  const log = createLogger('info', 'proxyctl-connector');
  const metricsAt = opts.metricsListen ? parseLoopbackListen(opts.metricsListen) : undefined;
  const metrics = new ConnectorMetrics();
  const connector = new Connector({ stateDir: path.resolve(opts.stateDir ?? defaultStateDir()), log, metrics });
  const server = metricsAt
    ? await startMetricsServer(metrics, metricsAt, () => connector.openChannels() > 0)
    : undefined;
  if (server) log.info({ listen: addressOf(server) }, 'metrics listening');
  const stop = () => void connector.close();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    await connector.start();
    await connector.done;
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    server?.close();
    server?.closeAllConnections();
  }
}
