// HTTPS webhook: each batch is one POST of {"events":[…]}, signed so the receiver can
// tell it came from this relay and is fresh:
//   x-proxyctl-timestamp: <unix seconds>
//   x-proxyctl-signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>
// Any 2xx is delivered; anything else (or no answer within the timeout) is retried.
import { createHmac } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Clock } from '../clock.js';
import type { WebhookSinkConfig } from '../config/export-config.js';
import { CLIENT_TLS } from '../crypto/tls-policy.js';
import type { SecurityEvent } from '../store/types.js';
import { VERSION } from '../version.js';
import { eventJson } from './format.js';
import { DeliveryError, type Sink } from './sink.js';

/** The signature header's value for `body` sent at `timestamp` (unix seconds). */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export class WebhookSink implements Sink {
  readonly maxInFlight = 1;
  private readonly url: URL;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly pending = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly cfg: WebhookSinkConfig,
    private readonly clock: Clock,
  ) {
    this.url = new URL(cfg.url);
    this.agent =
      this.url.protocol === 'https:'
        ? new HttpsAgent({ keepAlive: true, maxSockets: 1, ...CLIENT_TLS, ...(cfg.caPem ? { ca: cfg.caPem } : {}) })
        : new HttpAgent({ keepAlive: true, maxSockets: 1 });
  }

  deliver(events: readonly SecurityEvent[]): Promise<void> {
    if (this.closed) return Promise.reject(new DeliveryError('closed', 'webhook sink closed'));
    const body = `{"events":[${events.map(eventJson).join(',')}]}`;
    const timestamp = String(Math.floor(this.clock.now() / 1000));
    const send = this.url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<void>((resolve, reject) => {
      const req = send(this.url, {
        method: 'POST',
        agent: this.agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'user-agent': `proxyctl/${VERSION}`,
          'x-proxyctl-timestamp': timestamp,
          'x-proxyctl-signature': webhookSignature(this.cfg.secret, timestamp, body),
        },
      });
      const abort = () => req.destroy(new DeliveryError('closed', 'webhook sink closed'));
      this.pending.add(abort);
      const timer = this.clock.setTimeout(
        () => req.destroy(new DeliveryError('timeout', `webhook gave no answer within ${this.cfg.timeoutMs} ms`)),
        this.cfg.timeoutMs,
      );
      const done = (err?: Error) => {
        this.clock.clearTimeout(timer);
        this.pending.delete(abort);
        if (err) reject(err instanceof DeliveryError ? err : new DeliveryError('connect', err.message, { cause: err }));
        else resolve();
      };
      req.on('error', done);
      req.on('response', (res: IncomingMessage) => {
        // Read the answer to the end (small or not, it is discarded) so the connection is reused.
        res.resume();
        res.on('error', done);
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) done();
          else done(new DeliveryError('status', `webhook answered HTTP ${status}`));
        });
      });
      req.end(body);
    });
  }

  close(): Promise<void> {
    this.closed = true;
    for (const abort of this.pending) abort();
    this.agent.destroy();
    return Promise.resolve();
  }
}
