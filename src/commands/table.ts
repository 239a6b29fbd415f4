// Output for people and for scripts. Values come from strangers (user agents,
// usernames, reasons), so a table cell never carries a control character (no
// escape sequence reaches the administrator's terminal, no line is forged) and a
// CSV cell never starts a spreadsheet formula.

/** C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The text with each unsafe character written as \uXXXX, cut to `max` characters. */
export function safeCell(text: string, max = 200): string {
  const clean = text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** Columns padded to the widest cell, two spaces apart. */
export function printTable(header: string[], rows: string[][], out: (line: string) => void): void {
  const cells = rows.map((r) => r.map((c) => safeCell(c)));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  for (const row of [header, ...cells])
    out(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
}

/** One RFC 4180 line; a cell a spreadsheet would run as a formula gets a leading apostrophe. */
export function csvLine(cells: (string | number | null)[]): string {
  return cells
    .map((v) => {
      let s = v === null ? '' : String(v);
      if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    })
    .join(',');
}
