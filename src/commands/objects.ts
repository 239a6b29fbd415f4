// What apps, policies and named locations share on the command line: reading a spec
// from a YAML file, `--set key=value` edits, and showing an object as YAML that can be
// edited and applied again. Objects come from the file (read-only) or the API.
import { readFileSync, statSync } from 'node:fs';
import { parseDocument, stringify } from 'yaml';
import type { AdminApi, ObjectKind, ObjectView } from '../admin/api-types.js';
import { parseYaml } from '../config/schema.js';
import { ProxyctlError } from '../errors.js';
import { withAdmin, type AdminTargetOptions } from './admin-client.js';
import { printTable, safeCell } from './table.js';

type Out = (line: string) => void;

export const usage = (message: string): ProxyctlError => new ProxyctlError('ERR_USAGE', message, { status: 400 });

const MAX_SPEC_FILE = 1024 * 1024;

/** The list key of each kind in relay.yaml, so a file may hold several under it. */
const LIST_KEY: Record<ObjectKind, string> = { app: 'apps', policy: 'policies', location: 'namedLocations' };

const isMapping = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The specs in a YAML file: one mapping, or a list under the kind's relay.yaml key
 * (`policies:`, `namedLocations:`, `apps:`) when `many` allows it.
 */
export function readSpecFile(file: string, kind: ObjectKind, many: boolean): Record<string, unknown>[] {
  let text: string;
  try {
    if (statSync(file).size > MAX_SPEC_FILE) throw usage(`${file} is larger than 1 MiB`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ProxyctlError) throw err;
    throw usage(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const raw = parseYaml(text, file);
  const key = LIST_KEY[kind];
  if (isMapping(raw) && Object.keys(raw).length === 1 && key in raw) {
    const list = raw[key];
    if (!many) throw usage(`${file}: give one ${kind} as a mapping (name: …), not a list under ${key}:`);
    if (!Array.isArray(list) || list.length === 0 || !list.every(isMapping))
      throw usage(`${file}: ${key} must be a non-empty list of mappings`);
    return list;
  }
  if (!isMapping(raw) || Object.keys(raw).length === 0)
    throw usage(`${file}: expected a ${kind} as a YAML mapping${many ? `, or a list under ${key}:` : ''}`);
  return [raw];
}

/** The spec's name; refuses a missing one, or one that differs from the name given. */
export function specName(spec: Record<string, unknown>, kind: ObjectKind, given?: string): string {
  const name = spec['name'];
  if (given !== undefined) {
    if (name !== undefined && name !== given)
      throw usage(
        `the file names the ${kind} ${JSON.stringify(name)}, not ${JSON.stringify(given)}; to rename, publish it under the new name and remove the old one`,
      );
    return given;
  }
  if (typeof name !== 'string' || name === '') throw usage(`every ${kind} needs a name:`);
  return name;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'prototype', 'constructor']);

/**
 * Applies `key=value` edits to a copy of `spec`: dotted keys reach into mappings (a
 * number indexes a list), values are YAML (`true`, `90s`, `[a, b]`, `{x: 1}`), and a
 * null value (`key=null`, `key=`) removes the key.
 */
export function applySets(spec: Record<string, unknown>, sets: readonly string[]): Record<string, unknown> {
  const copy = structuredClone(spec);
  for (const set of sets) {
    const eq = set.indexOf('=');
    if (eq <= 0) throw usage(`--set takes key=value (found ${JSON.stringify(set)})`);
    const keys = set.slice(0, eq).split('.');
    if (keys.some((k) => k === '' || FORBIDDEN_KEYS.has(k)))
      throw usage(`--set ${JSON.stringify(set.slice(0, eq))} is not a key path such as backendTimeout or cookie.name`);
    if (keys[0] === 'name') throw usage('--set cannot rename; publish under the new name and remove the old one');
    const value = yamlValue(set.slice(eq + 1), set.slice(0, eq));
    let node: Record<string, unknown> | unknown[] = copy;
    for (const [i, key] of keys.entries()) {
      const last = i === keys.length - 1;
      const index = Array.isArray(node) ? listIndex(node, key, set) : undefined;
      const current: unknown =
        index !== undefined ? (node as unknown[])[index] : (node as Record<string, unknown>)[key];
      if (last) {
        if (index !== undefined) {
          if (value === null) (node as unknown[]).splice(index, 1);
          else (node as unknown[])[index] = value;
        } else if (value === null) delete (node as Record<string, unknown>)[key];
        else (node as Record<string, unknown>)[key] = value;
        break;
      }
      if (current !== undefined && typeof current !== 'object')
        throw usage(`--set ${set.slice(0, eq)}: ${keys.slice(0, i + 1).join('.')} is not a mapping or a list`);
      let next = current as Record<string, unknown> | unknown[] | null | undefined;
      if (next === undefined || next === null) {
        next = {};
        if (index !== undefined) (node as unknown[])[index] = next;
        else (node as Record<string, unknown>)[key] = next;
      }
      node = next;
    }
  }
  return copy;
}

function listIndex(list: unknown[], key: string, set: string): number {
  if (!/^\d+$/.test(key) || Number(key) > list.length)
    throw usage(`--set ${JSON.stringify(set)}: ${key} is not an index of a list of ${list.length}`);
  return Number(key);
}

function yamlValue(text: string, key: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0)
    throw usage(`--set ${key}: the value is not valid YAML (${doc.errors[0]!.message.split('\n')[0]})`);
  return doc.toJS() ?? null;
}

/** A whole number given as an expected version, or undefined. */
export function versionOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,15}$/.test(text) || Number(text) < 1)
    throw usage(`--expected-version takes a version number (found ${JSON.stringify(text)})`);
  return Number(text);
}

/**
 * An object as YAML: comment lines saying where it comes from, then the spec, which
 * can be saved and applied again (`--file`).
 */
export function printObjectYaml(o: ObjectView, out: Out): void {
  out(
    `# ${o.kind} ${safeCell(o.name)}: ${o.source === 'file' ? 'defined in the config file (read-only here)' : `published through the API, version ${o.version ?? '-'}`}`,
  );
  if (o.updatedAt) out(`# updated ${o.updatedAt}${o.updatedBy ? ` by ${safeCell(o.updatedBy)}` : ''}`);
  if (!o.inForce) out(`# NOT IN FORCE: ${safeCell(o.problem ?? 'the config file wins')}`);
  // YAML escapes control characters in quoted strings; safeCell also catches bidi overrides.
  for (const line of stringify(o.spec, { lineWidth: 0 }).trimEnd().split('\n'))
    out(safeCell(line, Number.MAX_SAFE_INTEGER));
}

/** The status cell of a list: in force, or why not. */
export function forceCell(o: ObjectView): string {
  return o.inForce ? 'yes' : `no: ${o.problem ?? 'the config file wins'}`;
}

export const versionCell = (o: ObjectView): string => (o.version === null ? '-' : String(o.version));

export const text = (v: unknown): string =>
  v === undefined || v === null || v === '' ? '-' : typeof v === 'string' ? v : JSON.stringify(v);

export function printJson(value: unknown, out: Out): void {
  out(JSON.stringify(value, null, 2));
}

// ---- the commands every kind has: list, show, apply (policies, locations), remove ----

export interface ObjectOptions extends AdminTargetOptions {
  json?: boolean;
  expectedVersion?: string;
}

interface KindOps {
  list: (api: AdminApi) => Promise<ObjectView[]>;
  get: (api: AdminApi, name: string) => Promise<ObjectView>;
  remove: (api: AdminApi, name: string, version?: number) => Promise<void>;
  /** Create or replace; apps have publish and update instead. */
  put?: (api: AdminApi, name: string, spec: Record<string, unknown>, version?: number) => Promise<ObjectView>;
  columns: string[];
  cells: (o: ObjectView) => string[];
}

const list = (v: unknown) => (Array.isArray(v) && v.length ? v.map(text).join(',') : '-');

export const KINDS: Record<ObjectKind, KindOps> = {
  app: {
    list: (api) => api.listApps(),
    get: (api, n) => api.getApp(n),
    remove: (api, n, v) => api.removeApp(n, v),
    columns: ['EXTERNAL URL', 'INTERNAL URL', 'GROUP', 'PREAUTH'],
    cells: (o) => [
      text(o.spec['externalUrl']),
      text(o.spec['internalUrl']),
      text(o.spec['connectorGroup'] ?? 'default'),
      text(o.spec['preauth'] ?? 'oidc'),
    ],
  },
  policy: {
    list: (api) => api.listPolicies(),
    get: (api, n) => api.getPolicy(n),
    remove: (api, n, v) => api.removePolicy(n, v),
    put: (api, n, s, v) => api.putPolicy(n, s, v),
    columns: ['STATE'],
    cells: (o) => [text(o.spec['state'] ?? 'on')],
  },
  location: {
    list: (api) => api.listLocations(),
    get: (api, n) => api.getLocation(n),
    remove: (api, n, v) => api.removeLocation(n, v),
    put: (api, n, s, v) => api.putLocation(n, s, v),
    columns: ['CIDRS', 'COUNTRIES'],
    cells: (o) => [list(o.spec['cidrs']), list(o.spec['countries'])],
  },
};

const NOUN: Record<ObjectKind, string> = { app: 'apps', policy: 'policies', location: 'named locations' };

export async function listObjects(kind: ObjectKind, opts: ObjectOptions, out: Out): Promise<void> {
  const ops = KINDS[kind];
  const items = await withAdmin(opts, (api) => ops.list(api));
  if (opts.json) return printJson(items, out);
  if (items.length === 0) {
    out(`no ${NOUN[kind]}`);
    return;
  }
  printTable(
    ['NAME', 'SOURCE', 'VERSION', ...ops.columns, 'IN FORCE'],
    items.map((o) => [o.name, o.source, versionCell(o), ...ops.cells(o), forceCell(o)]),
    out,
  );
}

export async function showObject(kind: ObjectKind, name: string, opts: ObjectOptions, out: Out): Promise<void> {
  const o = await withAdmin(opts, (api) => KINDS[kind].get(api, name));
  if (opts.json) return printJson(o, out);
  printObjectYaml(o, out);
}

/** Creates or replaces each policy or location in the file (apply). */
export async function applyObjects(
  kind: 'policy' | 'location',
  opts: ObjectOptions & { file: string },
  out: Out,
): Promise<void> {
  const specs = readSpecFile(opts.file, kind, true);
  const named = specs.map((s) => ({ name: specName(s, kind), spec: s }));
  const version = versionOption(opts.expectedVersion);
  if (version !== undefined && named.length > 1)
    throw usage(`--expected-version applies to one ${kind}; the file holds ${named.length}`);
  const dup = named.find((n, i) => named.findIndex((m) => m.name === n.name) !== i);
  if (dup) throw usage(`${opts.file} names the ${kind} ${dup.name} twice`);
  const put = KINDS[kind].put!;
  const done = await withAdmin(opts, async (api) => {
    const views: ObjectView[] = [];
    for (const n of named) views.push(await put(api, n.name, n.spec, version));
    return views;
  });
  if (opts.json) return printJson(done, out);
  for (const o of done) {
    out(`applied ${kind} ${o.name} (version ${versionCell(o)})`);
    if (!o.inForce) out(`note: ${kind} ${o.name} is not in force: ${safeCell(o.problem ?? 'the config file wins')}`);
  }
}

export async function removeObject(kind: ObjectKind, name: string, opts: ObjectOptions, out: Out): Promise<void> {
  const version = versionOption(opts.expectedVersion);
  await withAdmin(opts, (api) => KINDS[kind].remove(api, name, version));
  out(`removed ${kind} ${name}`);
}
