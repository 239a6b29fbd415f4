// `proxyctl app publish|update`: apps published through the administration API
// (list, show and remove are the shared object commands). An update reads the
// current spec, applies the edits and sends it back with the version it read, so a
// concurrent change is refused instead of lost.
import type { ObjectView } from '../admin/api-types.js';
import { parseDuration } from '../config/duration.js';
import { ProxyctlError } from '../errors.js';
import { withAdmin } from './admin-client.js';
import {
  applySets,
  printJson,
  readSpecFile,
  specName,
  usage,
  versionCell,
  versionOption,
  type ObjectOptions,
} from './objects.js';
import { safeCell } from './table.js';

type Out = (line: string) => void;

export interface PublishOptions extends ObjectOptions {
  file?: string;
  name?: string;
  externalUrl?: string;
  internalUrl?: string;
  preauth?: string;
  group?: string;
  backendTimeout?: string;
}

export interface UpdateOptions extends ObjectOptions {
  file?: string;
  set?: string[];
}

/** The app spec the options describe: the file's, or the one the flags spell. */
export function publishSpec(opts: PublishOptions): Record<string, unknown> {
  const flags = {
    name: opts.name,
    externalUrl: opts.externalUrl,
    internalUrl: opts.internalUrl,
    preauth: opts.preauth,
    connectorGroup: opts.group,
    backendTimeout: opts.backendTimeout,
  };
  const given = Object.entries(flags).filter(([, v]) => v !== undefined);
  if (opts.file !== undefined) {
    if (given.length) throw usage('give --file, or --name, --external-url and --internal-url, not both');
    const spec = readSpecFile(opts.file, 'app', false)[0]!;
    specName(spec, 'app');
    return spec;
  }
  const missing = (['name', 'externalUrl', 'internalUrl'] as const).filter((k) => flags[k] === undefined);
  if (missing.length)
    throw usage(
      `app publish needs --file app.yaml, or --name, --external-url and --internal-url (missing ${missing
        .map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)
        .join(', ')})`,
    );
  if (opts.preauth !== undefined && opts.preauth !== 'oidc' && opts.preauth !== 'passthrough')
    throw usage(`--preauth takes oidc or passthrough (found ${JSON.stringify(opts.preauth)})`);
  if (opts.backendTimeout !== undefined && parseDuration(opts.backendTimeout) === undefined)
    throw usage(`--backend-timeout takes a duration such as 85s or 5m (found ${JSON.stringify(opts.backendTimeout)})`);
  return Object.fromEntries(given);
}

export async function publishApp(opts: PublishOptions, out: Out): Promise<void> {
  const spec = publishSpec(opts);
  const o = await withAdmin(opts, (api) => api.publishApp(spec));
  report('published', o, opts, out);
}

export async function updateApp(name: string, opts: UpdateOptions, out: Out): Promise<void> {
  const sets = opts.set ?? [];
  if ((opts.file === undefined) === (sets.length === 0))
    throw usage('app update takes --file app.yaml, or one or more --set key=value');
  let expected = versionOption(opts.expectedVersion);
  const o = await withAdmin(opts, async (api) => {
    let spec: Record<string, unknown>;
    if (opts.file !== undefined) {
      spec = readSpecFile(opts.file, 'app', false)[0]!;
      spec = { ...spec, name: specName(spec, 'app', name) };
    } else {
      const current = await api.getApp(name);
      // Edits apply to the version read; a change in between is refused, not overwritten.
      // (A file app is sent as well: the relay refuses it with its own code.)
      if (expected !== undefined && current.version !== expected)
        throw new ProxyctlError(
          'ERR_CONFLICT',
          `app ${name} is at version ${versionCell(current)}, not ${expected}; nothing was changed`,
          { status: 409 },
        );
      expected = current.version ?? undefined;
      spec = applySets(current.spec, sets);
    }
    return api.updateApp(name, spec, expected);
  });
  report('updated', o, opts, out);
}

function report(verb: string, o: ObjectView, opts: ObjectOptions, out: Out): void {
  if (opts.json) return printJson(o, out);
  out(`${verb} app ${safeCell(o.name)} (version ${versionCell(o)})`);
  if (!o.inForce)
    out(`note: app ${safeCell(o.name)} is not in force: ${safeCell(o.problem ?? 'the config file wins')}`);
}
