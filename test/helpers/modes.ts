// File modes of a directory tree, and the check that it keeps secrets to its owner:
// directories 0700, certificates and connector.json (no secret) writable by the owner
// only, every other file without a bit for group or others.
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Test } from 'tap';

const NOT_SECRET = /(^|\/)(ca\.pem|[a-z-]*cert\.pem|connector\.json)$/;

export const modeOf = (p: string): number => statSync(p).mode & 0o777;

/** Every entry under dir (dir itself first), with its mode. */
export function walk(dir: string, rel = ''): { rel: string; dir: boolean; mode: number }[] {
  const here = path.join(dir, rel);
  const out = [{ rel: rel || '.', dir: true, mode: modeOf(here) }];
  for (const e of readdirSync(here, { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push({ rel: r, dir: false, mode: modeOf(path.join(dir, r)) });
  }
  return out;
}

export function assertPrivateTree(t: Test, dir: string, when: string): void {
  for (const e of walk(dir)) {
    const octal = e.mode.toString(8);
    if (e.dir) t.equal(e.mode, 0o700, `${when}: ${e.rel}/ is 0700 (found ${octal})`);
    else if (NOT_SECRET.test(e.rel))
      t.equal(e.mode & 0o022, 0, `${when}: ${e.rel} writable by its owner only (found ${octal})`);
    else t.equal(e.mode & 0o077, 0, `${when}: ${e.rel} owner-only (found ${octal})`);
  }
}
