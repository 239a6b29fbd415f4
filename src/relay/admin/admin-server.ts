// The admin listener (`admin.listen`): plain HTTP for load balancers, orchestrators and
// Prometheus, on loopback unless another address is configured. GET or HEAD:
// /healthz says the process runs; /readyz runs the readiness checks the relay injects
// (listeners up, store reachable, configuration loaded…) and answers 200 only when
// every one passes; /metrics (when the relay gives a metrics source) is the Prometheus
// text exposition; /api/v1 is the REST API (bearer tokens). Nothing else is served here.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ProxyctlError, isProxyctlError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { isLoopbackHost } from '../../net/address.js';

export interface CheckResult {
  ok: boolean;
  /** A short reason for people reading the probe (no secrets: the answer is unauthenticated). */
  detail?: string;
}

export type Checks = Record<string, CheckResult>;

export interface AdminServerOptions {
  /** Evaluated on every /readyz request; may be asynchronous (a store round trip). */
  checks: () => Checks | Promise<Checks>;
  log: Logger;
  /** Longest the checks may take before the relay counts as not ready (2 s). */
  checkTimeoutMs?: number;
  /** Served as /metrics (absent: /metrics is 404). */
  metrics?: { contentType: string; text(): Promise<string> };
  /** The REST API under /api/ (bearer tokens only here); absent: 404. */
  api?: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

export interface AdminServer {
  /** Listens on host:port (port 0: any free port). */
  start(host: string, port: number): Promise<void>;
  /** The bound address, once listening. */
  address(): { host: string; port: number } | undefined;
  /** Idempotent; safe before or after a failed start. Open connections are cut. */
  close(): Promise<void>;
}

interface Answer {
  status: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

const text = (status: number, body: string, headers?: Record<string, string>): Answer => ({
  status,
  type: 'text/plain; charset=utf-8',
  body,
  headers,
});

export function createAdminServer(opts: AdminServerOptions): AdminServer {
  const checkTimeoutMs = opts.checkTimeoutMs ?? 2000;
  const endpoints = new Set(['/healthz', '/readyz', ...(opts.metrics ? ['/metrics'] : [])]);
  let server: Server | undefined;
  let closing: Promise<void> | undefined;

  /** The checks, bounded in time; a throw, a rejection or a malformed result counts as not ready. */
  async function readiness(): Promise<Answer> {
    let timer: NodeJS.Timeout | undefined;
    let results: Checks;
    try {
      const late = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () => reject(new ProxyctlError('ERR_INTERNAL', `the readiness checks took over ${checkTimeoutMs} ms`)),
          checkTimeoutMs,
        );
      });
      results = await Promise.race([Promise.resolve().then(opts.checks), late]);
    } catch (err) {
      const reason = isProxyctlError(err) ? err.message : 'the readiness checks failed';
      opts.log.warn({ err: (err as Error)?.message }, `readiness: ${reason}`);
      return json(503, { ready: false, error: reason });
    } finally {
      clearTimeout(timer);
    }
    if (results === null || typeof results !== 'object' || Array.isArray(results)) {
      opts.log.warn('readiness: the checks returned no results');
      return json(503, { ready: false, error: 'the readiness checks returned no results' });
    }
    const checks: Checks = {};
    let ready = true;
    for (const [name, r] of Object.entries(results)) {
      const ok = r !== null && typeof r === 'object' && r.ok === true;
      const detail = r !== null && typeof r === 'object' && typeof r.detail === 'string' ? r.detail : undefined;
      checks[name] = detail === undefined ? { ok } : { ok, detail };
      ready &&= ok;
    }
    return json(ready ? 200 : 503, { ready, checks });
  }

  async function answer(req: IncomingMessage): Promise<Answer> {
    const target = req.url ?? '';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    if (!endpoints.has(path)) return text(404, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n', { allow: 'GET, HEAD' });
    if (path === '/metrics') return exposition(opts.metrics!);
    return path === '/healthz' ? text(200, 'ok') : readiness();
  }

  /** A failing collector is logged and answered 500: Prometheus marks the scrape failed. */
  async function exposition(metrics: NonNullable<AdminServerOptions['metrics']>): Promise<Answer> {
    try {
      return { status: 200, type: metrics.contentType, body: await metrics.text() };
    } catch (err) {
      opts.log.warn({ err: (err as Error)?.message }, 'metrics: a collector failed');
      return text(500, 'metrics unavailable\n');
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    if (opts.api && (req.url === '/api' || req.url?.startsWith('/api/'))) {
      opts.api(req, res).catch(() => res.destroy());
      return;
    }
    req.resume(); // a body, if any, is read and dropped: the connection stays usable
    answer(req)
      .then((a) => {
        const body = Buffer.from(a.body, 'utf8');
        res.writeHead(a.status, {
          'content-type': a.type,
          'content-length': String(body.length),
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          ...a.headers,
        });
        res.end(req.method === 'HEAD' ? undefined : body);
      })
      .catch(() => res.destroy());
  }

  function address(): { host: string; port: number } | undefined {
    const a = server?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  return {
    async start(host, port) {
      if (server || closing) throw new Error('the admin server was already started');
      const s = createServer({ headersTimeout: 5000, requestTimeout: 10_000, maxHeaderSize: 8192 }, handle);
      server = s;
      s.on('clientError', (_err, socket) => socket.destroy());
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, host, () => {
          s.off('error', reject);
          resolve();
        });
      }).catch((err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
        throw new ProxyctlError('ERR_INTERNAL', `cannot listen on admin.listen ${host}:${port}: ${code}`, {
          cause: err,
        });
      });
      if (closing) {
        // close() came while listen() was under way: do not leave a listener behind.
        s.close();
        throw new ProxyctlError('ERR_INTERNAL', 'the admin server was closed while starting');
      }
      const listen = formatAddress(address());
      if (!isLoopbackHost(host)) {
        opts.log.warn(
          { listen },
          'the admin listener is not on loopback: /healthz, /readyz (with the readiness details) and /metrics answer anyone who can reach it',
        );
      }
      opts.log.info({ listen }, 'admin listener ready');
    },

    address,

    close() {
      closing ??= new Promise<void>((resolve) => {
        const s = server;
        if (!s?.listening) return resolve();
        s.close(() => resolve());
        s.closeAllConnections();
      });
      return closing;
    },
  };
}

function json(status: number, value: unknown): Answer {
  return { status, type: 'application/json', body: JSON.stringify(value) };
}

function formatAddress(a: { host: string; port: number } | undefined): string {
  if (!a) return '';
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
