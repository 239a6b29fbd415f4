// What a configuration reload changed, for the audit log: one entry per changed
// setting with its value before and after. Lists of named things (apps, policies,
// named locations, groups) are compared by name, so reordering is no change and an
// edit names the app it touched. Secrets never reach the log: values under keys that
// hold them are written as "(redacted)", and URLs lose their user and password.

export interface ConfigChange {
  path: string;
  before?: unknown;
  after?: unknown;
}

/** Changes beyond this many are summarised as one count (a rewritten file is still one audit row). */
const MAX_CHANGES = 200;
const MAX_VALUE_CHARS = 2_000;
const SECRET_KEY = /secret|password|passphrase|token|privatekey|keypem|pem$/i;

function plain(value: unknown, key: string): unknown {
  if (SECRET_KEY.test(key) && value !== undefined && value !== null) return '(redacted)';
  if (value instanceof URL) return withoutCredentials(value.href);
  if (typeof value === 'string' && /^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(value)) return withoutCredentials(value);
  if (Array.isArray(value)) return value.map((v) => plain(v, key));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (typeof v !== 'function') out[k] = plain(v, k);
    return out;
  }
  return value;
}

function withoutCredentials(text: string): string {
  try {
    const u = new URL(text);
    if (!u.username && !u.password) return text;
    u.username = '';
    u.password = '';
    return u.href;
  } catch {
    return '(redacted)';
  }
}

const named = (v: unknown): v is { name: string }[] =>
  Array.isArray(v) &&
  v.every((x) => !!x && typeof x === 'object' && typeof (x as { name?: unknown }).name === 'string');

function bounded(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text !== undefined && text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}…` : value;
}

function walk(before: unknown, after: unknown, path: string, key: string, out: ConfigChange[]): void {
  if (JSON.stringify(before) === JSON.stringify(after)) return;
  if (named(before) && named(after)) {
    const b = new Map(before.map((x) => [x.name, x]));
    const a = new Map(after.map((x) => [x.name, x]));
    for (const [name, x] of b) walk(x, a.get(name), `${path}[${name}]`, key, out);
    for (const [name, x] of a) if (!b.has(name)) walk(undefined, x, `${path}[${name}]`, key, out);
    return;
  }
  const isObj = (v: unknown) => !!v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof URL);
  if (isObj(before) && isObj(after)) {
    const keys = new Set([...Object.keys(before as object), ...Object.keys(after as object)]);
    for (const k of keys)
      walk(
        (before as Record<string, unknown>)[k],
        (after as Record<string, unknown>)[k],
        path ? `${path}.${k}` : k,
        k,
        out,
      );
    return;
  }
  const change: ConfigChange = { path };
  if (before !== undefined) change.before = bounded(plain(before, key));
  if (after !== undefined) change.after = bounded(plain(after, key));
  out.push(change);
}

/**
 * The settings that differ between two configurations (the file path, the document it was
 * read from and which API objects are in force are not settings: the objects' own changes
 * are audited by the API).
 */
export function configChanges(before: object, after: object): ConfigChange[] {
  const out: ConfigChange[] = [];
  const { file: _f1, source: _s1, managed: _m1, ...b } = before as Record<string, unknown>;
  const { file: _f2, source: _s2, managed: _m2, ...a } = after as Record<string, unknown>;
  walk(b, a, '', '', out);
  if (out.length > MAX_CHANGES) {
    const rest = out.length - MAX_CHANGES;
    out.length = MAX_CHANGES;
    out.push({ path: `(${rest} more changes)` });
  }
  return out;
}
