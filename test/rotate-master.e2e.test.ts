// `proxyctl relay keys init-master` and `rotate-master` as an operator runs them (the
// built binary: `npm run build` first): a key file made, a store's keys re-sealed
// with it, and refusals as exit 1 with one line on stderr.
import t, { type Test } from 'tap';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KeyRing } from '../src/crypto/keyring.js';
import { generateMasterKey, loadMasterKey, sealedKeyId } from '../src/crypto/master-key.js';
import { openSqliteStore } from '../src/store/index.js';
import { runCli, tempDir, type CliResult } from './helpers/proc.js';

function failedWith(t: Test, r: CliResult, code: string, what: string): void {
  t.equal(r.code, 1, `${what}: exit status 1`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
  t.match(r.stderr, new RegExp(`^proxyctl: [^\\n]+ \\[${code}\\]\\n$`), `${what}: one line naming ${code}`);
}

t.test('init-master, then rotate-master on a data directory', async (t) => {
  const dir = tempDir(t, 'proxyctl-rotate-e2e-');
  const current = path.join(dir, 'current.key');
  const made = await runCli(['relay', 'keys', 'init-master', '--out', current]);
  t.equal(made.code, 0, made.stderr);
  t.equal(statSync(current).mode & 0o777, 0o600);
  t.match(made.stdout, `(id ${loadMasterKey({ file: current, env: {} })!.id})`);
  failedWith(t, await runCli(['relay', 'keys', 'init-master', '--out', current]), 'ERR_USAGE', 'an existing file');

  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, 'dataDir: ./data\nsecrets: { masterKeyFile: current.key }\n');
  const store = openSqliteStore(path.join(dir, 'data'));
  await KeyRing.load(store.keys, loadMasterKey({ file: current, env: {} }));
  await store.close();

  const loose = path.join(dir, 'loose.key');
  writeFileSync(loose, generateMasterKey());
  chmodSync(loose, 0o644);
  failedWith(
    t,
    await runCli(['relay', 'keys', 'rotate-master', '--config', config, '--new-key-file', loose]),
    'ERR_MASTER_KEY',
    'a new key others may read',
  );

  const next = path.join(dir, 'next.key');
  t.equal((await runCli(['relay', 'keys', 'init-master', '--out', next])).code, 0);
  const nextId = loadMasterKey({ file: next, env: {} })!.id;
  const rotated = await runCli(['relay', 'keys', 'rotate-master', '--config', config, '--new-key-file', next]);
  t.equal(rotated.code, 0, rotated.stderr);
  t.equal(rotated.stderr, '');
  t.match(rotated.stdout, `sealed 2 secrets and keys with the new master key ${nextId}`);
  t.match(rotated.stdout, 'PROXYCTL_MASTER_KEY');

  const after = openSqliteStore(path.join(dir, 'data'));
  t.teardown(() => after.close());
  t.same(
    (await after.keys.all()).map((k) => sealedKeyId(k.material)),
    [nextId, nextId],
    'every key sealed with the new one',
  );
  const key = readFileSync(next, 'utf8');
  writeFileSync(config, 'dataDir: ./data\n');
  const again = await runCli(['relay', 'keys', 'rotate-master', '--config', config, '--new-key-file', current], {
    env: { PROXYCTL_MASTER_KEY: key },
  });
  t.equal(again.code, 0, again.stderr);
});
