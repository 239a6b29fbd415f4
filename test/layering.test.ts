// Rooms and their order: no module imports from a room above its own (type-only
// imports included), so the leaves stay leaves and each room can be read, tested
// and replaced (a second store, another edge) without what sits above it.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const SRC = new URL('../src/', import.meta.url).pathname;

/** Lowest first. A module may import from its own room and any room listed before it. */
const ORDER: string[][] = [
  ['base'], // src/*.ts: errors, log, version, files, clock
  ['net', 'http'],
  ['protocol', 'store'],
  ['crypto', 'policy', 'risk'],
  ['config'],
  ['idp', 'connector', 'export'],
  // The administration operations (the API, console and CLI share them): store and config, no relay.
  ['admin'],
  // The relay's rooms are siblings of one another, with the state snapshot they all read
  // (relay/state.ts: types only); relay.ts (the lifecycle) sits above them.
  ['relay/edge', 'relay/connectors', 'relay/auth', 'relay/translate', 'relay/admin', 'relay/acme', 'relay/state'],
  ['relay'],
  ['demo'],
  ['commands'],
  ['cli'],
];

function roomOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  if (rel.length === 1) return rel[0] === 'cli.ts' ? 'cli' : 'base';
  if (rel[0] === 'relay' && rel.length > 2) return `relay/${rel[1]}`;
  if (rel[0] === 'relay' && /^state\.[jt]s$/.test(rel[1]!)) return 'relay/state';
  return rel[0]!;
}

const rank = new Map(ORDER.flatMap((rooms, i) => rooms.map((r) => [r, i] as const)));

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (name.endsWith('.ts')) yield p;
  }
}

const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s*'(\.{1,2}\/[^']+)'|import\(\s*'(\.{1,2}\/[^']+)'\s*\)/gm;

const upward: string[] = [];
for (const file of sources(SRC)) {
  const from = roomOf(file);
  t.ok(rank.has(from), `${path.relative(SRC, file)}: room ${from} has a place in the order`);
  for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
    const target = path.resolve(path.dirname(file), (m[1] ?? m[2])!);
    const to = roomOf(target);
    if ((rank.get(to) ?? -1) > (rank.get(from) ?? -1))
      upward.push(`${path.relative(SRC, file)} (${from}) imports ${path.relative(SRC, target)} (${to})`);
  }
}
t.same(upward, [], 'no import runs upward');
