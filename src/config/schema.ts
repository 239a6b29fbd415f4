// A small strict validator for config files: every problem names the key path,
// what was found and what was expected. Unknown keys are always refused.
import { parseDocument } from 'yaml';
import { ProxyctlError } from '../errors.js';
import { parseDuration } from './duration.js';

export interface Issue {
  path: string;
  found: string;
  expected: string;
}

export class Validation {
  readonly issues: Issue[] = [];
  fail(path: string, value: unknown, expected: string): undefined {
    this.issues.push({ path: path || '(root)', found: describe(value), expected });
    return undefined;
  }
}

export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return `${typeof value} ${String(value)}`;
  return typeof value;
}

export const join = (base: string, key: string | number): string =>
  typeof key === 'number' ? `${base}[${key}]` : base ? `${base}.${key}` : key;

export function obj(
  v: Validation,
  path: string,
  value: unknown,
  allowed: readonly string[],
): Record<string, unknown> | undefined {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return v.fail(path, value, 'a mapping');
  const rec = value as Record<string, unknown>;
  for (const key of Object.keys(rec)) {
    if (!allowed.includes(key)) v.fail(join(path, key), rec[key], `no such key (known keys: ${allowed.join(', ')})`);
  }
  return rec;
}

export function str(
  v: Validation,
  path: string,
  value: unknown,
  fallback?: string,
  pattern?: RegExp,
  patternText?: string,
): string | undefined {
  if (value === undefined) {
    if (fallback === undefined) return v.fail(path, value, 'a string (required)');
    return fallback;
  }
  if (typeof value !== 'string' || value.length === 0) return v.fail(path, value, 'a non-empty string');
  if (pattern && !pattern.test(value)) return v.fail(path, value, patternText ?? `text matching ${pattern}`);
  return value;
}

/** A required `name` matching pattern, refused when an earlier entry of the same list took it. */
export function uniqueName(
  v: Validation,
  path: string,
  value: unknown,
  taken: Set<string>,
  pattern: RegExp,
  patternText: string,
  what: string,
): string | undefined {
  const name = str(v, join(path, 'name'), value, undefined, pattern, patternText);
  if (name !== undefined) {
    if (taken.has(name)) v.fail(join(path, 'name'), name, `a name used by no other ${what}`);
    taken.add(name);
  }
  return name;
}

export function optStr(v: Validation, path: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  return str(v, path, value);
}

export function bool(v: Validation, path: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    v.fail(path, value, 'true or false');
    return fallback;
  }
  return value;
}

export function int(v: Validation, path: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    v.fail(path, value, `a whole number from ${min} to ${max}`);
    return fallback;
  }
  return value;
}

export function oneOf<T extends string>(
  v: Validation,
  path: string,
  value: unknown,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    v.fail(path, value, `one of ${choices.join(', ')}`);
    return fallback;
  }
  return value as T;
}

export function duration(
  v: Validation,
  path: string,
  value: unknown,
  fallback: string,
  minMs = 1,
  aliases: Record<string, string> = {},
): number {
  const text = value === undefined ? fallback : value;
  const resolved = typeof text === 'string' && aliases[text] ? aliases[text] : text;
  const ms = typeof resolved === 'string' ? parseDuration(resolved) : undefined;
  if (ms === undefined || ms < minMs) {
    const extra = Object.keys(aliases).length ? ` or ${Object.keys(aliases).join(', ')}` : '';
    v.fail(
      path,
      value,
      `a duration such as 500ms, 85s, 5m, 12h, 180d${extra}${minMs > 1 ? ` (at least ${minMs}ms)` : ''}`,
    );
    return parseDuration(fallback) ?? 0;
  }
  return ms;
}

export function strList(v: Validation, path: string, value: unknown, fallback: string[]): string[] {
  if (value === undefined) return fallback;
  if (!Array.isArray(value) || value.some((x) => typeof x !== 'string' || x.length === 0)) {
    v.fail(path, value, 'a list of non-empty strings');
    return fallback;
  }
  return value as string[];
}

/** host:port, [v6]:port; port 0 allowed (tests). */
export function listen(v: Validation, path: string, value: unknown, fallback: string): { host: string; port: number } {
  const text = value === undefined ? fallback : value;
  const m = typeof text === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text) : null;
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    v.fail(path, value, 'host:port such as "127.0.0.1:8443" or "[::1]:8443"');
    return { host: '127.0.0.1', port: 0 };
  }
  return { host: (m[1] ?? m[2])!, port };
}

export function url(
  v: Validation,
  path: string,
  value: unknown,
  schemes: readonly string[],
  fallback?: string,
): URL | undefined {
  const text = value === undefined ? fallback : value;
  if (typeof text !== 'string') return v.fail(path, value, `an absolute ${schemes.join(' or ')} URL`);
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    return v.fail(path, value, `an absolute ${schemes.join(' or ')} URL`);
  }
  if (!schemes.includes(parsed.protocol.replace(/:$/, '')))
    return v.fail(path, value, `an absolute ${schemes.join(' or ')} URL`);
  if (parsed.username || parsed.password) return v.fail(path, value, 'a URL without user name or password');
  if (parsed.search || parsed.hash) return v.fail(path, value, 'a URL without query or fragment');
  return parsed;
}

/** Parses YAML strictly (duplicate keys refused); syntax errors name `where` and the line. */
export function parseYaml(text: string, where: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0];
    throw new ProxyctlError(
      'ERR_CONFIG_INVALID',
      `${where}${line ? `:${line.line}:${line.col}` : ''}: not valid YAML: ${e.message.split('\n')[0]}`,
      {
        details: { file: where, issues: [{ path: '(root)', found: 'invalid YAML', expected: 'a YAML mapping' }] },
      },
    );
  }
  return doc.toJS() ?? {};
}
