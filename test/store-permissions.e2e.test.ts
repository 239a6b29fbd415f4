// Black-box (the built binary: `npx tsc -p tsconfig.build.json` first). Regression: the
// relay's store was readable by every local user when its data directory already existed
// 0755. `proxyctl demo` (relay, embedded provider, a registered connector, a user) run
// under umask 000 in such a directory leaves every secret owner-only; a data directory
// owned by someone else is one clear line and exit 1.
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { assertPrivateTree, modeOf } from './helpers/modes.js';
import { Proc, runCli, tempDir } from './helpers/proc.js';

function premade(t: Test): string {
  const dir = path.join(tempDir(t, 'proxyctl-perm-e2e-'), 'data');
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  return dir;
}

t.test('proxyctl demo under umask 000 in a pre-made 0755 directory keeps its secrets owner-only', async (t) => {
  const dataDir = premade(t);
  const previous = process.umask(0o000); // the child inherits it
  const demo = new Proc(['demo', '--port', '0', '--data-dir', dataDir]);
  process.umask(previous);
  t.teardown(() => demo.stop('SIGKILL', 2000));
  await demo.waitForStdout(/Press Ctrl-C/, 30_000).catch(() => undefined); // asserted next
  t.match(demo.stdoutText, /Press Ctrl-C/, `demo is running (stderr: ${demo.stderrText.slice(-500)})`);

  for (const f of [
    'proxyctl.db',
    'proxyctl.db-wal',
    'proxyctl.db-shm',
    'ca-key.pem',
    'idp-keys.json',
    'demo-password',
    'connector/key.pem',
  ]) {
    t.ok(existsSync(path.join(dataDir, f)), `${f} exists`);
  }
  assertPrivateTree(t, dataDir, 'while running');
  t.equal(modeOf(path.join(dataDir, 'proxyctl.db-wal')), 0o600, 'WAL 0600');

  // The admin CLI opening the store alongside (its own SQLite connection, same umask) changes nothing.
  const prevCli = process.umask(0o000);
  const list = await runCli(['relay', 'connectors', 'list', '--data-dir', dataDir, '--json']);
  process.umask(prevCli);
  t.equal(list.code, 0, list.stderr);
  assertPrivateTree(t, dataDir, 'after the admin CLI');

  t.equal(await demo.stop('SIGTERM'), 0, 'demo stops cleanly');
  assertPrivateTree(t, dataDir, 'after stopping');
});

t.test(
  'a data directory owned by another user: one line with ERR_STATE_INVALID, exit 1, nothing written',
  async (t) => {
    if (process.geteuid?.() !== 0) return t.plan(0, 'needs root to hand a directory to another user');
    const dataDir = premade(t);
    chownSync(dataDir, 65534, 65534);
    for (const args of [
      ['relay', 'serve', '--data-dir', dataDir],
      ['relay', 'connectors', 'list', '--data-dir', dataDir],
    ]) {
      const r = await runCli(args, { timeoutMs: 15_000 });
      t.equal(r.code, 1, `${args.slice(0, 3).join(' ')} exits 1`);
      const lines = r.stderr.trim().split('\n');
      t.equal(lines.length, 1, 'one line on stderr');
      t.match(lines[0], /\[ERR_STATE_INVALID\]$/);
    }
    t.same(readdirSync(dataDir), [], 'nothing was written');
    t.equal(modeOf(dataDir), 0o755, 'mode unchanged');
  },
);
