// Small hand-written SVG charts: stacked bars over time buckets, with a legend, a
// summary for screen readers and the numbers as a table under a disclosure.

export interface Series {
  key: string;
  label: string;
  /** CSS class giving the fill (see styles.css: .s-ok, .s-bad, .s-warn, .s-info). */
  cls: string;
}

export interface Bucket {
  label: string;
  values: Record<string, number>;
}

const W = 400;
const H = 160;
const LEFT = 30;
const BOTTOM = 18;
const TOP = 8;

function niceMax(n: number): number {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

export function BarChart({
  id,
  title,
  series,
  buckets,
}: {
  id: string;
  title: string;
  series: Series[];
  buckets: Bucket[];
}) {
  const total = (b: Bucket) => series.reduce((s, x) => s + (b.values[x.key] ?? 0), 0);
  const max = niceMax(Math.max(0, ...buckets.map(total)));
  const plotW = W - LEFT;
  const plotH = H - TOP - BOTTOM;
  const step = buckets.length ? plotW / buckets.length : plotW;
  const barW = Math.max(1, step * 0.8);
  const y = (v: number) => TOP + plotH - (v / max) * plotH;
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  const sums = series.map((s) => `${buckets.reduce((n, b) => n + (b.values[s.key] ?? 0), 0)} ${s.label}`);
  return (
    <figure class="chart" id={id} data-testid={id}>
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={`${title}: ${sums.join(', ')}`}>
        {[0, max / 2, max].map((v) => (
          <g key={v} class="gridline">
            <line x1={LEFT} x2={W} y1={y(v)} y2={y(v)} />
            <text x={LEFT - 4} y={y(v) + 3} text-anchor="end">
              {Number.isInteger(v) ? v : v.toFixed(1)}
            </text>
          </g>
        ))}
        {buckets.map((b, i) => {
          let base = 0;
          const x = LEFT + i * step + (step - barW) / 2;
          return (
            <g key={b.label + i}>
              {series.map((s) => {
                const v = b.values[s.key] ?? 0;
                if (!v) return null;
                const top = y(base + v);
                const rect = (
                  <rect key={s.key} class={s.cls} x={x} y={top} width={barW} height={y(base) - top}>
                    <title>{`${b.label}: ${v} ${s.label}`}</title>
                  </rect>
                );
                base += v;
                return rect;
              })}
              {i % every === 0 && (
                <text class="axis" x={x + barW / 2} y={H - 4} text-anchor="middle">
                  {b.label}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <ul class="legend">
        {series.map((s, i) => (
          <li key={s.key}>
            <span class={`swatch ${s.cls}`} aria-hidden="true" />
            {sums[i]}
          </li>
        ))}
      </ul>
      <details>
        <summary>Numbers</summary>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Time</th>
                {series.map((s) => (
                  <th scope="col" key={s.key}>
                    {s.label}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {buckets.map((b, i) => (
                <tr key={b.label + i}>
                  <th scope="row">{b.label}</th>
                  {series.map((s) => (
                    <td key={s.key}>{b.values[s.key] ?? 0}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}

const pad = (n: number) => String(n).padStart(2, '0');
export const hourLabel = (iso: string): string => `${pad(new Date(iso).getHours())}:00`;
export const minuteLabel = (iso: string): string => {
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
};
export const dayLabel = (iso: string): string => {
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
};

export const SIGN_IN_SERIES: Series[] = [
  { key: 'success', label: 'success', cls: 's-ok' },
  { key: 'failure', label: 'failure', cls: 's-bad' },
  { key: 'stepUp', label: 'step-up', cls: 's-warn' },
];
