// The configuration in force: the file's document with the administration API's
// objects (apps, policies, named locations kept in the store) appended to its
// lists, validated by the very loader that reads the file. The file always wins:
// an API object that clashes with it (a name or a host the file defines, a location
// a policy needs that is gone) is left out, with the reason, and the rest stays.
import { validateRelayDocument, type ManagedRef, type RelayConfig } from '../config/relay-config.js';
import type { Issue } from '../config/schema.js';
import type { ManagedObject } from '../store/index.js';
import type { ObjectKind } from './api-types.js';

/** Where each kind lives in the document. */
export const LIST_OF: Record<ObjectKind, 'apps' | 'policies' | 'namedLocations'> = {
  app: 'apps',
  policy: 'policies',
  location: 'namedLocations',
};

/**
 * Keys an API object may not carry: they name files on one relay's disk or hold secrets,
 * which belong in the configuration file (and its secret files) of every replica.
 */
export const FILE_ONLY_KEYS: Record<ObjectKind, readonly string[]> = {
  app: ['clientSecret', 'clientSecretFile', 'tls'],
  policy: [],
  location: [],
};

export interface Excluded {
  kind: ObjectKind;
  name: string;
  problem: string;
}

export interface Composed {
  config: RelayConfig;
  excluded: Excluded[];
}

type ApiObject = Pick<ManagedObject, 'kind' | 'name' | 'spec' | 'version' | 'updatedAt' | 'updatedBy'> & {
  kind: ObjectKind;
};

/** A configuration without the API's objects (a composed one is rebuilt from its file document). */
export function fileAlone(config: RelayConfig): RelayConfig {
  if (config.managed.length === 0) return config;
  const alone = validateRelayDocument(config.source.raw, config.source, []).config;
  return alone ? { ...alone, file: config.file } : config;
}

/** The names the file itself defines, per kind. */
export function fileNames(file: RelayConfig): Record<ObjectKind, Set<string>> {
  return {
    app: new Set(file.apps.map((a) => a.name)),
    policy: new Set(file.access.policies.map((p) => p.name)),
    location: new Set(file.access.namedLocations.map((l) => l.name)),
  };
}

/** The file's own spec of an object (as written in YAML), or undefined. */
export function fileSpec(file: RelayConfig, kind: ObjectKind, name: string): Record<string, unknown> | undefined {
  const raw = file.source.raw as Record<string, unknown> | null;
  const list = raw?.[LIST_OF[kind]];
  if (!Array.isArray(list)) return undefined;
  return list.find(
    (item): item is Record<string, unknown> =>
      item !== null && typeof item === 'object' && (item as Record<string, unknown>)['name'] === name,
  );
}

function isObjectKind(kind: string): kind is ObjectKind {
  return kind === 'app' || kind === 'policy' || kind === 'location';
}

/** Builds the document of the file plus `objects` and validates it; issues are attributed to objects. */
function attempt(
  file: RelayConfig,
  objects: readonly ApiObject[],
): { config: RelayConfig | undefined; byObject: Map<ApiObject, Issue[]>; unattributed: Issue[] } {
  const raw = structuredClone((file.source.raw ?? {}) as Record<string, unknown>);
  const offsets: Record<string, ApiObject[]> = { apps: [], policies: [], namedLocations: [] };
  const fileCounts: Record<string, number> = {};
  for (const list of Object.keys(offsets)) {
    const existing = raw[list];
    fileCounts[list] = Array.isArray(existing) ? existing.length : 0;
  }
  for (const o of objects) {
    const list = LIST_OF[o.kind];
    const existing = raw[list];
    const items = Array.isArray(existing) ? existing : [];
    items.push({ ...structuredClone(o.spec), name: o.name });
    raw[list] = items;
    offsets[list]!.push(o);
  }
  const managed: ManagedRef[] = objects.map((o) => ({
    kind: o.kind,
    name: o.name,
    version: o.version,
    updatedAt: o.updatedAt,
    updatedBy: o.updatedBy,
  }));
  const { config, issues } = validateRelayDocument(raw, file.source, managed);
  const byObject = new Map<ApiObject, Issue[]>();
  const unattributed: Issue[] = [];
  for (const issue of issues) {
    const m = /^(apps|policies|namedLocations)\[(\d+)\]\.?(.*)$/.exec(issue.path);
    const index = m ? Number(m[2]) - fileCounts[m[1]!]! : -1;
    const owner = m && index >= 0 ? offsets[m[1]!]![index] : undefined;
    if (!owner) {
      unattributed.push(issue);
      continue;
    }
    const list = byObject.get(owner) ?? [];
    list.push({ ...issue, path: m![3] ?? '' });
    byObject.set(owner, list);
  }
  return { config, byObject, unattributed };
}

/** One line for people from an object's issues. */
export function describeIssues(issues: readonly Issue[]): string {
  return issues.map((i) => `${i.path || '(the object)'}: found ${i.found}, expected ${i.expected}`).join('; ');
}

/**
 * The file's configuration with every API object that validates beside it. `file` must be
 * a configuration the loader accepted alone (its `source` is the document). Never throws
 * for a bad object: that object is listed in `excluded` instead.
 */
export function composeConfig(given: RelayConfig, stored: readonly ManagedObject[]): Composed {
  const file = fileAlone(given);
  const excluded: Excluded[] = [];
  const names = fileNames(file);
  let objects: ApiObject[] = [];
  for (const o of stored) {
    if (!isObjectKind(o.kind)) continue;
    const kind = o.kind;
    if (names[kind].has(o.name)) {
      excluded.push({ kind, name: o.name, problem: `the configuration file defines ${kind} ${o.name}; the file wins` });
      continue;
    }
    const fileOnly = FILE_ONLY_KEYS[kind].find((k) => k in o.spec);
    if (fileOnly) {
      excluded.push({ kind, name: o.name, problem: `${fileOnly} can only be set in the configuration file` });
      continue;
    }
    objects.push({ ...o, kind });
  }
  // Each round drops the objects the loader found fault with; an object can only fail
  // because of itself or of an object dropped before it, so this ends.
  for (let round = 0; round <= objects.length; round++) {
    if (objects.length === 0) break;
    const { config, byObject, unattributed } = attempt(file, objects);
    if (config) return { config, excluded };
    if (byObject.size === 0) {
      // Nothing to pin it on (a key outside the lists): keep the file alone.
      for (const o of objects)
        excluded.push({ kind: o.kind, name: o.name, problem: describeIssues(unattributed) || 'invalid' });
      objects = [];
      break;
    }
    for (const [o, issues] of byObject) excluded.push({ kind: o.kind, name: o.name, problem: describeIssues(issues) });
    objects = objects.filter((o) => !byObject.has(o));
  }
  return { config: file, excluded };
}

/**
 * Validates the store's objects with one change (`change.spec` undefined: a removal) as
 * composeConfig would, and says what is wrong with the change itself: the issues of the
 * changed object (paths relative to it), or, for a removal, the objects it would break.
 */
export function validateChange(
  file: RelayConfig,
  stored: readonly ManagedObject[],
  change: { kind: ObjectKind; name: string; spec: Record<string, unknown> | undefined },
): { config: RelayConfig; issues: Issue[] } {
  file = fileAlone(file);
  const before = composeConfig(file, stored);
  const kept = stored.filter(
    (o) =>
      isObjectKind(o.kind) &&
      !(o.kind === change.kind && o.name === change.name) &&
      !before.excluded.some((e) => e.kind === o.kind && e.name === o.name),
  ) as ApiObject[];
  const candidate: ApiObject | undefined = change.spec && {
    kind: change.kind,
    name: change.name,
    spec: change.spec,
    version: 0,
    updatedAt: 0,
    updatedBy: '',
  };
  const objects = candidate ? [...kept, candidate] : kept;
  const { config, byObject, unattributed } = attempt(file, objects);
  if (config) return { config, issues: [] };
  const issues: Issue[] = [];
  if (candidate) issues.push(...(byObject.get(candidate) ?? []));
  for (const [o, list] of byObject) {
    if (o === candidate) continue;
    // Another object fails only because of this change (it validated before).
    issues.push({
      path: '',
      found: `${o.kind} ${o.name}`,
      expected: `no ${change.spec ? 'change' : 'removal'} that breaks it (${describeIssues(list)})`,
    });
  }
  for (const i of unattributed) issues.push(i);
  if (issues.length === 0) issues.push({ path: '', found: 'an invalid configuration', expected: 'a valid one' });
  return { config: file, issues };
}
