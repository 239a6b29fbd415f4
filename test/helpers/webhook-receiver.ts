// A SIEM's webhook endpoint as a security team would write it: HTTPS on port 0, checks
// the timestamp is fresh and the HMAC signature matches (constant-time), refuses with
// 401 otherwise, and counts the event ids it accepted (duplicates included).
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface ReceivedEvent {
  id: string;
  kind: string;
  time: string;
  data: Record<string, unknown>;
}

export interface WebhookReceiverOptions {
  certPem: string;
  keyPem: string;
  secret: string;
  /** Largest accepted difference between the timestamp header and now. */
  toleranceSeconds?: number;
  /** Answer this status instead (an outage), or a function deciding per request. */
  fail?: () => number | undefined;
}

export class WebhookReceiver {
  readonly events: ReceivedEvent[] = [];
  /** Requests refused for a bad or missing signature or timestamp. */
  rejected = 0;
  requests = 0;
  secret: string;
  fail: (() => number | undefined) | undefined;
  private readonly server: Server;

  constructor(private readonly options: WebhookReceiverOptions) {
    this.secret = options.secret;
    this.fail = options.fail;
    this.server = createServer({ cert: options.certPem, key: options.keyPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.requests++;
        const status = this.fail?.();
        if (status) {
          res.writeHead(status).end();
          return;
        }
        const body = Buffer.concat(chunks).toString('utf8');
        if (!this.verify(req.headers['x-proxyctl-timestamp'], req.headers['x-proxyctl-signature'], body)) {
          this.rejected++;
          res.writeHead(401).end('bad signature');
          return;
        }
        const parsed = JSON.parse(body) as { events: ReceivedEvent[] };
        this.events.push(...parsed.events);
        res.writeHead(204).end();
      });
    });
  }

  /** What a receiver does: fresh timestamp, then HMAC-SHA256(secret, timestamp + "." + body), compared in constant time. */
  verify(timestamp: unknown, signature: unknown, body: string): boolean {
    if (typeof timestamp !== 'string' || typeof signature !== 'string' || !/^\d{1,12}$/.test(timestamp)) return false;
    const age = Math.abs(Date.now() / 1000 - Number(timestamp));
    if (age > (this.options.toleranceSeconds ?? 300)) return false;
    const expected = Buffer.from(
      `v1=${createHmac('sha256', this.secret).update(`${timestamp}.${body}`).digest('hex')}`,
    );
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  ids(): Set<string> {
    return new Set(this.events.map((e) => e.id));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

export async function startWebhookReceiver(
  t: { teardown(fn: () => void | Promise<void>): void },
  options: WebhookReceiverOptions,
): Promise<{ receiver: WebhookReceiver; url: string }> {
  const receiver = new WebhookReceiver(options);
  const url = await receiver.start();
  t.teardown(() => receiver.close());
  return { receiver, url };
}
