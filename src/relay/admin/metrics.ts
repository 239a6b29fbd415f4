// The relay's Prometheus metrics, served on the admin listener's /metrics. The request
// path updates per-app cells (src/metric-cells.ts: no allocation per request); channels,
// queue, export sinks and certificates are read from the relay when scraped. Every label
// value comes from configuration or from a short fixed list: apps are configured names
// (a request no app matched is `(none)`), never a Host header.
import { X509Certificate } from 'node:crypto';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BoundedLabel, CellCounter, CellHistogram, CounterCell, HistogramCell } from '../../metric-cells.js';
import type { SignInRecord } from '../../store/types.js';
// What an export sink reports about itself (the exporter's own counters, read at scrape time).
import type { ExportSinkStats } from '../../export/exporter.js';

export type { ExportSinkStats };

/** A certificate the relay presents or signs with, and when it expires (ms since the epoch). */
export interface CertificateExpiry {
  /** `ca`, `listener` (the relay-CA certificate of the public listener), or `app:<host>` (an app's own). */
  certificate: string;
  notAfter: number;
}

export interface RelayMetricsSources {
  /** Open control channels (the channel registry's `all()`). */
  channels?: () => Iterable<{ group: string; connectorId: string }>;
  /** Requests waiting for a connector, and requests handed to one and not yet answered. */
  queue?: () => { waiting: number; inFlight: number };
  exportSinks?: () => readonly ExportSinkStats[];
  certificates?: () => readonly CertificateExpiry[];
  /** Failed ACME orders and renewals since start, by host. */
  acmeFailures?: () => ReadonlyMap<string, number>;
  /** Wall clock for certificate days (ms); Date.now by default. */
  now?: () => number;
}

/** A request that matched no app (unknown host, refused before routing). */
export const NO_APP = '(none)';
/** At most this many app label values; configuration keeps far fewer. */
const MAX_APPS = 1000;

const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Seconds: small GETs land in the first buckets, long polls and slow backends in the last. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Seconds: 0 is a connector taken at once (nearly every request); the rest is waiting for one. */
const QUEUE_BUCKETS = [0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Everything the request path updates for one app, found with one map lookup. */
export class AppCells {
  constructor(
    readonly byClass: readonly CounterCell[],
    readonly duration: HistogramCell,
    readonly queueWait: HistogramCell,
  ) {}
}

/** Sign-in methods as labels: the amr values the relay sees, and how a token was presented. */
const METHODS: ReadonlySet<string> = new Set(['password', 'totp', 'mfa', 'bearer', 'session', 'sso', 'none']);
const RESULTS: ReadonlySet<string> = new Set(['success', 'failure', 'stepUp']);
const LEVELS: ReadonlySet<string> = new Set(['none', 'low', 'medium', 'high']);

export class RelayMetrics {
  readonly registry = new Registry();
  private readonly requests: CellCounter<'app' | 'class'>;
  private readonly duration: CellHistogram<'app'>;
  private readonly queueWait: CellHistogram<'app'>;
  private readonly store: CellHistogram<'op'>;
  private readonly signIns: Counter<'result' | 'method'>;
  private readonly detections: Counter<'type' | 'level'>;
  private readonly connections: Counter<'protocol'>;
  private readonly apps = new Map<string, AppCells>();
  private readonly storeCells = new Map<string, HistogramCell>();
  private readonly storeOps = new BoundedLabel(32);
  private readonly detectionTypes = new BoundedLabel(32);

  constructor(private readonly sources: RelayMetricsSources = {}) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'proxyctl_relay_' });
    this.requests = new CellCounter({
      name: 'proxyctl_relay_requests_total',
      help: 'Requests on the public listener by app and status class (WebSocket upgrades are not counted)',
      labelNames: ['app', 'class'],
      registers,
    });
    this.duration = new CellHistogram({
      name: 'proxyctl_relay_request_duration_seconds',
      help: 'Time from a request reaching the relay to its answer ending, by app',
      labelNames: ['app'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.queueWait = new CellHistogram({
      name: 'proxyctl_relay_queue_wait_seconds',
      help: 'Time an allowed request waited for an open channel of a connector of its group, by app',
      labelNames: ['app'],
      buckets: QUEUE_BUCKETS,
      registers,
    });
    this.store = new CellHistogram({
      name: 'proxyctl_relay_store_duration_seconds',
      help: 'Latency of store operations, by operation',
      labelNames: ['op'],
      buckets: STORE_BUCKETS,
      registers,
    });
    this.signIns = new Counter({
      name: 'proxyctl_relay_signins_total',
      help: 'Sign-in attempts by result and authentication method',
      labelNames: ['result', 'method'],
      registers,
    });
    this.connections = new Counter({
      name: 'proxyctl_relay_connections_total',
      help: 'TLS connections on the public listener by negotiated protocol (h2, http/1.1)',
      labelNames: ['protocol'],
      registers,
    });
    this.detections = new Counter({
      name: 'proxyctl_relay_risk_detections_total',
      help: 'Risk detections by type and level',
      labelNames: ['type', 'level'],
      registers,
    });
    new Gauge({
      name: 'proxyctl_relay_channels_open',
      help: 'Open control channels by connector group and connector',
      labelNames: ['group', 'connector_id'],
      registers,
      collect(this: Gauge<'group' | 'connector_id'>) {
        this.reset();
        const list = sources.channels?.();
        if (!list) return;
        for (const ch of list) this.inc({ group: ch.group, connector_id: ch.connectorId });
      },
    });
    new Gauge({
      name: 'proxyctl_relay_queued_requests',
      help: 'Requests waiting for an open channel of their connector group',
      registers,
      collect(this: Gauge) {
        this.set(sources.queue?.().waiting ?? 0);
      },
    });
    new Gauge({
      name: 'proxyctl_relay_requests_in_flight',
      help: 'Requests handed to a connector and not yet answered',
      registers,
      collect(this: Gauge) {
        this.set(sources.queue?.().inFlight ?? 0);
      },
    });
    this.exportMetrics(registers);
    new Counter({
      name: 'proxyctl_relay_acme_failures_total',
      help: 'Failed ACME certificate orders and renewals, by host (each is retried with backoff)',
      labelNames: ['host'],
      registers,
      collect(this: Counter<'host'>) {
        this.reset();
        for (const [host, n] of sources.acmeFailures?.() ?? []) this.inc({ host }, n);
      },
    });
    const now = sources.now ?? Date.now;
    new Gauge({
      name: 'proxyctl_relay_certificate_expiry_days',
      help: 'Days until the certificate expires (negative once expired): ca, listener, app:<host>, acme:<host>',
      labelNames: ['certificate'],
      registers,
      collect(this: Gauge<'certificate'>) {
        this.reset();
        const t = now();
        for (const c of sources.certificates?.() ?? [])
          this.set({ certificate: c.certificate }, Math.round(((c.notAfter - t) / 86_400_000) * 100) / 100);
      },
    });
  }

  private exportMetrics(registers: Registry[]): void {
    const sinks = () => this.sources.exportSinks?.() ?? [];
    const gauge = (name: string, help: string, pick: (s: ExportSinkStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['sink'],
        registers,
        collect(this: Gauge<'sink'>) {
          this.reset();
          for (const s of sinks()) this.set({ sink: s.sink }, pick(s));
        },
      });
    const counter = (name: string, help: string, pick: (s: ExportSinkStats) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['sink'],
        registers,
        collect(this: Counter<'sink'>) {
          this.reset();
          for (const s of sinks()) this.inc({ sink: s.sink }, Math.max(0, pick(s)));
        },
      });
    gauge('proxyctl_relay_export_queue_depth', 'Events waiting in the export queue of a sink', (s) => s.queueDepth);
    gauge(
      'proxyctl_relay_export_lag_seconds',
      'Age of the oldest event a sink has not delivered yet (0 when caught up)',
      (s) => s.lagSeconds,
    );
    counter(
      'proxyctl_relay_export_dropped_total',
      "Events dropped from a sink's in-memory queue (re-read later from the store cursor)",
      (s) => s.dropped,
    );
    counter('proxyctl_relay_export_delivered_total', 'Events a sink delivered', (s) => s.delivered);
    counter('proxyctl_relay_export_failures_total', 'Failed delivery attempts of a sink', (s) => s.failures);
  }

  /** The cells of an app (made on first use). `undefined`: the request matched no app. */
  app(name: string | undefined): AppCells {
    const key = name ?? NO_APP;
    const found = this.apps.get(key);
    if (found) return found;
    const app = this.apps.size < MAX_APPS ? key : '(other)';
    const cells = new AppCells(
      CLASSES.map((c) => this.requests.cell({ app, class: c })),
      this.duration.cell({ app }),
      this.queueWait.cell({ app }),
    );
    this.apps.set(key, cells);
    return cells;
  }

  /** Requests per minute over the last hour (the console's chart): [minute, count, errors] slots. */
  private readonly minutes = new Float64Array(60 * 3);

  /** The last hour, oldest minute first; `now` in ms. */
  requestMinutes(now: number): { start: number; count: number; errors: number }[] {
    const current = Math.floor(now / 60_000);
    const out: { start: number; count: number; errors: number }[] = [];
    for (let m = current - 59; m <= current; m++) {
      const slot = (m % 60) * 3;
      const fresh = this.minutes[slot] === m;
      out.push({
        start: m * 60_000,
        count: fresh ? this.minutes[slot + 1]! : 0,
        errors: fresh ? this.minutes[slot + 2]! : 0,
      });
    }
    return out;
  }

  /** A request's answer ended (or the connection closed): its status and how long it took. */
  request(app: string | undefined, status: number, seconds: number, now: number = Date.now()): void {
    const minute = Math.floor(now / 60_000);
    const slot = (minute % 60) * 3;
    if (this.minutes[slot] !== minute) {
      this.minutes[slot] = minute;
      this.minutes[slot + 1] = 0;
      this.minutes[slot + 2] = 0;
    }
    this.minutes[slot + 1]!++;
    if (status >= 500) this.minutes[slot + 2]!++;
    const cells = this.app(app);
    const c = ((status / 100) | 0) - 1;
    cells.byClass[c < 0 ? 0 : c > 4 ? 4 : c]!.inc();
    cells.duration.observe(seconds);
  }

  /** How long an allowed request waited for a connector's channel (0: one was open). */
  /** A TLS connection on the public listener settled on `protocol` (ALPN; none counts as http/1.1). */
  connection(protocol: 'h2' | 'http/1.1'): void {
    this.connections.inc({ protocol });
  }

  queued(app: string, seconds: number): void {
    this.app(app).queueWait.observe(seconds);
  }

  /** One sign-in attempt. `method`: password, totp, mfa, bearer, session, sso, none; others count as `other`. */
  signIn(result: 'success' | 'failure' | 'stepUp', method: string): void {
    this.signIns.inc({
      result: RESULTS.has(result) ? result : 'other',
      method: METHODS.has(method) ? method : 'other',
    });
  }

  /**
   * A sign-in row as the log wrote it: counted by result and by its strongest method (a bearer
   * token; else the amr values: otp/totp, mfa, pwd; none for a failure before any), and each
   * detection it carries.
   */
  signInRecorded(record: Pick<SignInRecord, 'kind' | 'methods' | 'result' | 'detections'>): void {
    const amr = record.methods;
    const method =
      record.kind === 'bearer'
        ? 'bearer'
        : amr.includes('otp') || amr.includes('totp')
          ? 'totp'
          : amr.includes('mfa')
            ? 'mfa'
            : amr.includes('pwd')
              ? 'password'
              : amr.length === 0
                ? 'none'
                : 'other';
    this.signIn(record.result, method);
    for (const d of record.detections) this.detection(d.type, d.level);
  }

  /** One risk detection (types: the detectors' names; at most 32 distinct, later ones count as `other`). */
  detection(type: string, level: string): void {
    this.detections.inc({ type: this.detectionTypes.of(type), level: LEVELS.has(level) ? level : 'other' });
  }

  /** A store operation took `seconds` (op: a short fixed name such as `signins.record`). */
  observeStore(op: string, seconds: number): void {
    let cell = this.storeCells.get(op);
    if (!cell) {
      const label = this.storeOps.of(op);
      cell = this.store.cell({ op: label });
      if (label !== 'other') this.storeCells.set(op, cell);
    }
    cell.observe(seconds);
  }

  /** Times a store operation: `await metrics.timeStore('keys.all', store.keys.all())`. Failures count too. */
  async timeStore<T>(op: string, work: Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await work;
    } finally {
      this.observeStore(op, (performance.now() - started) / 1000);
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for /metrics. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

const notAfterCache = new Map<string, number>();

/** When a PEM certificate expires (ms), parsed once per distinct certificate. */
export function notAfterOf(pem: string): number {
  let t = notAfterCache.get(pem);
  if (t === undefined) {
    if (notAfterCache.size >= 64) notAfterCache.clear();
    t = Date.parse(new X509Certificate(pem).validTo);
    notAfterCache.set(pem, t);
  }
  return t;
}
