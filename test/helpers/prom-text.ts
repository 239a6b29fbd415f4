// Reads the Prometheus text exposition format as a scraper would: declared families
// (# TYPE) and samples with their labels, strictly enough that a malformed line fails.
import { request } from 'node:http';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  /** Family name → type, from the # TYPE lines. */
  types: Map<string, string>;
  samples: Sample[];
  /** The value of the one sample with this name and exactly these labels (undefined: none). */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every sample of a name whose labels include these. */
  find(name: string, labels?: Record<string, string>): Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/gy;

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      let consumed = 0;
      for (let l = LABEL.exec(m[2]); l; l = LABEL.exec(m[2])) {
        labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c));
        consumed = LABEL.lastIndex;
      }
      if (consumed !== m[2].length) throw new Error(`malformed labels: ${JSON.stringify(line)}`);
    }
    // Go's ParseFloat, which Prometheus uses, takes NaN and Inf in any case (prom-client writes "Nan").
    const raw = m[3]!.toLowerCase();
    const value = raw === '+inf' || raw === 'inf' ? Infinity : raw === '-inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && raw !== 'nan') throw new Error(`malformed value: ${JSON.stringify(line)}`);
    samples.push({ name: m[1]!, labels, value });
  }
  const matches = (s: Sample, labels: Record<string, string>) =>
    Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  return {
    types,
    samples,
    find: (name, labels = {}) => samples.filter((s) => s.name === name && matches(s, labels)),
    value(name, labels = {}) {
      const want = Object.keys(labels).length;
      const hit = samples.filter((s) => s.name === name && Object.keys(s.labels).length === want && matches(s, labels));
      if (hit.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${hit.length} samples`);
      return hit[0]?.value;
    },
  };
}

/** Metric names a scrape can be queried by: each family, and a histogram's _bucket, _sum and _count. */
export function queryableNames(e: Exposition): Set<string> {
  const out = new Set<string>();
  for (const [name, type] of e.types) {
    out.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(`${name}${s}`);
    if (type === 'summary') for (const s of ['_sum', '_count']) out.add(`${name}${s}`);
  }
  for (const s of e.samples) out.add(s.name);
  return out;
}

/** GET over plain HTTP (the admin listener, the connector's metrics listener). */
export function httpGet(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}
