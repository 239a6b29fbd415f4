// Metrics updated on the request path, relay and connector alike. prom-client's label
// children rebuild a label key (an object and a string) on every update; a cell here is
// looked up once per label set and then updated with plain arithmetic, and prom-client
// reads the cells only when /metrics is scraped.
import { Counter, Histogram, type Registry } from 'prom-client';

type Labels<L extends string> = Readonly<Record<L, string>>;

/** One label set of a counter. */
export class CounterCell {
  value = 0;
  constructor(readonly labels: Readonly<Record<string, string>>) {}

  inc(n = 1): void {
    this.value += n;
  }
}

/** One label set of a histogram: observations per bucket (not cumulative; the last slot is +Inf). */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** A negative or non-finite value (a clock step) counts as 0. */
  observe(value: number): void {
    const v = value >= 0 && value < Infinity ? value : 0;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i] = this.counts[i]! + 1;
    this.sum += v;
    this.count++;
  }
}

function keyOf<L extends string>(names: readonly L[], labels: Labels<L>): string {
  let key = '';
  for (const n of names) key += `${labels[n]}\u0000`;
  return key;
}

export interface CellMetricConfig<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: Registry[];
}

/** A counter whose label sets are cells: `cell(labels)` once, then `cell.inc()`. */
export class CellCounter<L extends string> extends Counter<L> {
  private readonly names: readonly L[];
  private readonly cells = new Map<string, CounterCell>();

  constructor(cfg: CellMetricConfig<L>) {
    super({ name: cfg.name, help: cfg.help, labelNames: cfg.labelNames, registers: cfg.registers });
    this.names = cfg.labelNames;
  }

  /** The cell of a label set, made on first use (keep it: looking it up builds a key). */
  cell(labels: Labels<L>): CounterCell {
    const key = keyOf(this.names, labels);
    let c = this.cells.get(key);
    if (!c) this.cells.set(key, (c = new CounterCell({ ...labels })));
    return c;
  }

  /** Scrape time: the cells' totals become the counter's values. */
  override async get(): ReturnType<Counter<L>['get']> {
    this.reset();
    for (const c of this.cells.values()) this.inc(c.labels as Labels<L>, c.value);
    return super.get();
  }
}

export interface CellHistogramConfig<L extends string> extends CellMetricConfig<L> {
  /** Upper bounds, ascending (+Inf is implied). */
  buckets: readonly number[];
}

interface HistogramValue {
  labels: Record<string, string | number>;
  sharedLabels: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
  /** prom-client's shape: null on buckets, undefined on _sum and _count (no exemplars here). */
  exemplar: null | undefined;
}

/**
 * A histogram whose label sets are cells. prom-client's registry reads a histogram
 * through its `getForPromString()` (and `get()` goes through it too): this class answers
 * it from the cells, in the shape prom-client's own histogram gives (checked by
 * test/metrics.test.ts, which parses the exposition text).
 */
export class CellHistogram<L extends string> extends Histogram<L> {
  private readonly names: readonly L[];
  private readonly bounds: Float64Array;
  private readonly cells = new Map<string, HistogramCell>();

  constructor(cfg: CellHistogramConfig<L>) {
    super({
      name: cfg.name,
      help: cfg.help,
      labelNames: cfg.labelNames,
      buckets: [...cfg.buckets],
      registers: cfg.registers,
    });
    this.names = cfg.labelNames;
    this.bounds = Float64Array.from(cfg.buckets);
  }

  cell(labels: Labels<L>): HistogramCell {
    const key = keyOf(this.names, labels);
    let c = this.cells.get(key);
    if (!c) this.cells.set(key, (c = new HistogramCell({ ...labels }, this.bounds)));
    return c;
  }

  getForPromString(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    aggregator: 'sum';
    values: HistogramValue[];
  }> {
    const name = (this as unknown as { name: string }).name;
    const help = (this as unknown as { help: string }).help;
    const bucket = `${name}_bucket`;
    const values: HistogramValue[] = [];
    for (const c of this.cells.values()) {
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += c.counts[i]!;
        const le = this.bounds[i]!;
        values.push({ labels: { le }, sharedLabels: c.labels, value: acc, metricName: bucket, exemplar: null });
      }
      const { labels } = c;
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: labels, value: c.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels: labels, value: c.sum, metricName: `${name}_sum`, exemplar: undefined },
        { labels: {}, sharedLabels: labels, value: c.count, metricName: `${name}_count`, exemplar: undefined },
      );
    }
    return Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values });
  }
}

/**
 * A bounded set of label values chosen by code (sign-in methods, detection types, store
 * operations): the first `max` distinct values are kept, later ones count as `other`, so
 * a mistake upstream cannot grow the series without bound.
 */
export class BoundedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}

  of(value: string): string {
    if (this.seen.has(value)) return value;
    if (this.seen.size >= this.max || !/^[\x21-\x7e]{1,64}$/.test(value)) return 'other';
    this.seen.add(value);
    return value;
  }
}
