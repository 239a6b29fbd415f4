// What both stores check before a managed object is written, the errors a put or a
// remove refuses with, and how a row becomes a ManagedObject: one place, so SQLite
// and PostgreSQL refuse the same inputs with the same codes.
import { ProxyctlError } from '../errors.js';
import type { ManagedKind, ManagedObject } from './types.js';

export const MANAGED_KINDS: ReadonlySet<string> = new Set<ManagedKind>(['app', 'policy', 'location', 'connectorGroup']);

/** A spec is a config-file object, not a payload: 64 KiB of JSON is far more than any needs. */
export const MAX_SPEC_BYTES = 64 * 1024;
/** Names are validated by the caller; this bound only keeps the store's keys sane. */
export const MAX_NAME_LENGTH = 256;

export interface ManagedObjectRow {
  kind: ManagedKind;
  name: string;
  /** JSON text (SQLite), parsed by node-postgres (PostgreSQL `json`). */
  spec: string | Record<string, unknown>;
  version: number;
  created_at: number;
  updated_at: number;
  updated_by: string;
}

export const toManaged = (r: ManagedObjectRow): ManagedObject => ({
  kind: r.kind,
  name: r.name,
  spec: typeof r.spec === 'string' ? (JSON.parse(r.spec) as Record<string, unknown>) : r.spec,
  version: r.version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  updatedBy: r.updated_by,
});

const badRequest = (message: string): ProxyctlError => new ProxyctlError('ERR_BAD_REQUEST', message, { status: 400 });

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Refuses a kind this version does not know and a name no store could key on. */
export function checkKey(kind: ManagedKind, name: string): void {
  if (!MANAGED_KINDS.has(kind)) throw badRequest(`${JSON.stringify(kind)} is not a kind of managed object`);
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH)
    throw badRequest(`a ${kind} name is 1 to ${MAX_NAME_LENGTH} characters`);
  // PostgreSQL text cannot hold NUL, and a lone surrogate would not come back as given.
  if (name.includes('\0') || LONE_SURROGATE.test(name))
    throw badRequest(`the ${kind} name ${JSON.stringify(name)} holds NUL or a lone surrogate`);
}

/** expectedVersion: undefined (upsert), 0 (create only) or a stored version. */
export function checkExpectedVersion(expected: number | undefined): void {
  if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0))
    throw badRequest(`an expected version is a whole number from 0, not ${String(expected)}`);
}

/** The spec as stored: the JSON text of a plain object, at most MAX_SPEC_BYTES. */
export function specText(kind: ManagedKind, name: string, spec: Record<string, unknown>): string {
  let text: string | undefined;
  try {
    text = typeof spec === 'object' && spec !== null && !Array.isArray(spec) ? JSON.stringify(spec) : undefined;
  } catch {
    // A cycle or a BigInt: not JSON.
  }
  if (text === undefined || !text.startsWith('{'))
    throw badRequest(`the spec of ${kind} ${JSON.stringify(name)} is not a JSON object`);
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_SPEC_BYTES) {
    throw new ProxyctlError(
      'ERR_BODY_TOO_LARGE',
      `the spec of ${kind} ${JSON.stringify(name)} is ${bytes} bytes of JSON, more than ${MAX_SPEC_BYTES}`,
      { status: 413, details: { bytes, limit: MAX_SPEC_BYTES } },
    );
  }
  return text;
}

/** `version` is unknown when the object that was in the way is gone again by the time it is asked for. */
export const alreadyExists = (kind: ManagedKind, name: string, version: number | undefined): ProxyctlError =>
  new ProxyctlError(
    'ERR_CONFLICT',
    `${kind} ${JSON.stringify(name)} already exists${version === undefined ? '' : ` (version ${version})`}`,
    { status: 409, details: { kind, name, version: version ?? null } },
  );

export const versionDiffers = (kind: ManagedKind, name: string, found: number, expected: number): ProxyctlError =>
  new ProxyctlError(
    'ERR_CONFLICT',
    `${kind} ${JSON.stringify(name)} is at version ${found}, not the expected ${expected}: it changed since it was read`,
    { status: 409, details: { kind, name, version: found, expectedVersion: expected } },
  );

export const objectNotFound = (kind: ManagedKind, name: string): ProxyctlError =>
  new ProxyctlError('ERR_NOT_FOUND', `no ${kind} named ${JSON.stringify(name)}`, {
    status: 404,
    details: { kind, name },
  });
