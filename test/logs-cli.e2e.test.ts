// The log and risk commands as a user runs them: the built binary against a data
// directory, exit codes and one stderr line on bad input (SPEC section 7).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import { runCli, tempDir } from './helpers/proc.js';
import { signInRecord } from './helpers/sign-ins.js';

t.test('signins, audit and risk through the binary', async (t) => {
  const dir = tempDir(t);
  const config = path.join(dir, 'relay.yaml');
  writeFileSync(config, 'dataDir: ./data\n');
  const store = openSqliteStore(path.join(dir, 'data'));
  const id = await store.signIns.record(
    signInRecord({
      at: Date.now() - 60_000,
      subject: 'alice',
      app: 'wiki',
      result: 'success',
      ip: '203.0.113.7',
      risk: 'medium',
      detections: [{ type: 'anonymousIp', level: 'medium' }],
    }),
  );
  await store.close();

  const list = await runCli(['signins', 'list', '--config', config, '--since', '1h', '--json']);
  t.equal(list.code, 0, list.stderr);
  t.match(JSON.parse(list.stdout), [{ id, subject: 'alice', risk: 'medium' }]);
  const csv = await runCli(['signins', 'list', '--config', config, '--csv', '--risk', 'medium']);
  t.equal(csv.code, 0, csv.stderr);
  t.equal(csv.stdout.trim().split('\n').length, 2, 'a header and one row');
  const show = await runCli(['signins', 'show', String(id), '--config', config]);
  t.equal(show.code, 0, show.stderr);
  t.match(show.stdout, /detection:\s+anonymousIp \(medium\)/);

  const risky = await runCli(['risk', 'list', '--config', config, '--json']);
  t.equal(risky.code, 0, risky.stderr);
  t.match(JSON.parse(risky.stdout), [{ user: 'alice', risk: 'medium', state: 'atRisk' }]);
  const confirm = await runCli(['risk', 'confirm', 'alice', '--config', config]);
  t.equal(confirm.code, 0, confirm.stderr);
  const audit = await runCli(['audit', 'list', '--config', config, '--action', 'risk.', '--json']);
  t.match(JSON.parse(audit.stdout), [{ action: 'risk.confirm', details: { subject: 'alice' } }]);

  for (const args of [
    ['signins', 'list', '--config', config, '--result', 'maybe'],
    ['signins', 'list', '--config', config, '--since', 'last tuesday'],
    ['signins', 'show', 'x', '--config', config],
    ['risk', 'dismiss', '', '--config', config],
  ]) {
    const r = await runCli(args);
    t.equal(r.code, 1, `${args.join(' ')}: usage error`);
    t.match(r.stderr, /ERR_USAGE/);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line on stderr');
  }
  const missing = await runCli(['signins', 'show', '999', '--config', config]);
  t.not(missing.code, 0);
  t.match(missing.stderr, /ERR_NOT_FOUND/);
});
