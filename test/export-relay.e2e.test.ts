// The SIEM export of the real relay binary: `proxyctl relay serve` with a syslog sink
// (Debian's rsyslogd) while sign-ins keep arriving in its store. The relay is killed
// with SIGKILL in the middle of the burst and started again; the sink is stopped for a
// while and brought back. Every sign-in in the store reaches rsyslog (duplicates allowed).
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openSqliteStore } from '../src/store/sqlite/index.js';
import type { Store } from '../src/store/index.js';
import { rsyslogMissing, startRsyslog } from './helpers/rsyslog.js';
import { Proc, tempDir } from './helpers/proc.js';
import { signInRecord } from './helpers/sign-ins.js';
import { waitFor } from './helpers/wait.js';

if (rsyslogMissing) {
  t.test('the relay exports through SIGKILL and a sink outage', { skip: rsyslogMissing }, () => undefined);
} else {
  t.test('the relay exports through SIGKILL and a sink outage', async (t) => {
    const rs = await startRsyslog(t);
    const dir = tempDir(t, 'proxyctl-export-relay-');
    const config = path.join(dir, 'relay.yaml');
    writeFileSync(
      config,
      `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
export:
  - syslog: { url: "tcp://127.0.0.1:${rs.tcpPort}", format: cef, name: siem, confirmTime: 300ms, from: start }
`,
    );
    const start = async () => {
      const relay = new Proc(['relay', 'serve', '--config', config]);
      t.teardown(() => relay.stop('SIGKILL'));
      await relay.waitMsg('relay ready', 30_000);
      return relay;
    };
    let relay = await start();
    const store: Store = openSqliteStore(path.join(dir, 'data'));
    t.teardown(() => store.close());
    const ids: string[] = [];
    // Sign-ins keep arriving (as another relay or the provider would write them) while things fail.
    let writing = true;
    let writerError: unknown;
    const writer = (async () => {
      for (let i = 0; writing && i < 100_000; i++) {
        const id = await store.signIns.record(
          signInRecord({
            at: Date.now(),
            subject: `user-${i % 50}`,
            app: 'wiki',
            result: i % 7 ? 'success' : 'failure',
          }),
        );
        ids.push(`signin-${id}`);
        await new Promise((r) => setTimeout(r, 4));
      }
    })().catch((err: unknown) => {
      writerError = err;
      t.comment(`writer: ${(err as Error).message}`);
    });
    const arrived = () => new Set(rs.ids());

    await waitFor(() => arrived().size >= 150, { what: 'the export under way', timeoutMs: 30_000 });
    await relay.stop('SIGKILL');
    t.pass(`relay killed with ${ids.length} sign-ins written, ${arrived().size} at rsyslog`);
    relay = await start();

    await waitFor(() => arrived().size >= ids.length - 50, {
      what: 'the restarted relay to catch up (after the dead one’s lease)',
      timeoutMs: 60_000,
      everyMs: 200,
    });
    // Delivered and confirmed (the cursor saved) before the sink goes away.
    await waitFor(async () => ((await store.exportCursors.load('siem'))?.signIn ?? 0) >= ids.length - 300, {
      what: 'the cursor to follow',
      timeoutMs: 30_000,
    });
    await rs.stop();
    const duringOutage = ids.length;
    await waitFor(() => ids.length > duringOutage + 100, { what: 'sign-ins while the sink is down' });
    t.ok(ids.length > duringOutage, 'sign-ins kept coming while the sink was down');
    const before = arrived().size;
    await rs.start();
    // Stop writing once the sink has taken events again: the rest is the catch-up.
    await waitFor(() => arrived().size > before, { what: 'the sink receiving again', timeoutMs: 30_000, everyMs: 100 });
    writing = false;
    await writer;
    t.equal(writerError, undefined, 'the store took every write');

    await waitFor(
      () => {
        const got = arrived();
        return ids.every((id) => got.has(id));
      },
      {
        what: 'every stored sign-in at rsyslog',
        timeoutMs: 60_000,
        everyMs: 250,
      },
    ).catch((err: unknown) => {
      const got = arrived();
      t.comment(`missing ${ids.filter((id) => !got.has(id)).length} of ${ids.length}`);
      throw err;
    });
    const got = arrived();
    t.same(
      ids.filter((id) => !got.has(id)),
      [],
      `all ${ids.length} sign-ins arrived (${rs.ids().length - got.size} duplicates)`,
    );
    await relay.stop();
  });
}
