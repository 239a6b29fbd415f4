// What the exporter needs of a destination: deliver one batch (resolve only when it
// arrived as far as the transport can tell, reject otherwise), and close.
import type { Clock } from '../clock.js';
import type { ExportSinkConfig } from '../config/export-config.js';
import type { SecurityEvent } from '../store/types.js';
import { FileSink } from './file.js';
import { SyslogSink } from './syslog.js';
import { WebhookSink } from './webhook.js';

export interface Sink {
  /**
   * Batches the exporter may have on their way at once (in order). A transport without
   * acknowledgements (syslog over TCP) overlaps their confirmation times.
   */
  readonly maxInFlight: number;
  deliver(events: readonly SecurityEvent[]): Promise<void>;
  /** Idempotent; deliveries still under way reject. */
  close(): Promise<void>;
}

/** Why a delivery failed, for the log: `connect`, `closed`, `timeout`, `status`, `io`. */
export class DeliveryError extends Error {
  constructor(
    readonly reason: 'connect' | 'closed' | 'timeout' | 'status' | 'io',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'DeliveryError';
  }
}

export function createSink(cfg: ExportSinkConfig, clock: Clock): Sink {
  if (cfg.kind === 'syslog') return new SyslogSink(cfg, clock);
  if (cfg.kind === 'webhook') return new WebhookSink(cfg, clock);
  return new FileSink(cfg);
}
