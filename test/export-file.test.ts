// NDJSON file export: one event a line, owner-only, rotated by size keeping N files.
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Exporter } from '../src/export/exporter.js';
import { FileSink } from '../src/export/file.js';
import type { FileSinkConfig } from '../src/config/export-config.js';
import { silentLogger } from '../src/log.js';
import { MemoryStore, signInEvent } from './helpers/rsyslog.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

function fileSink(file: string, over: Partial<FileSinkConfig> = {}): FileSinkConfig {
  return {
    kind: 'file',
    name: `file:${file}`,
    path: file,
    maxSize: 100_000_000,
    keep: 5,
    queueSize: 10_000,
    batchSize: 10,
    from: 'start',
    ...over,
  };
}

const lines = (file: string) =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string })
    : [];

t.test('events as NDJSON, owner-only, reading back as stored', async (t) => {
  const file = path.join(tempDir(t), 'events.ndjson');
  const mem = new MemoryStore();
  const x = new Exporter({ store: mem.store, sinks: [fileSink(file)], log: silentLogger, pollMs: 20 });
  t.teardown(() => x.close());
  await x.start();
  for (let i = 0; i < 55; i++) x.publish(mem.add(i % 2 ? 'audit' : 'signIn'));
  await waitFor(() => lines(file).length === 55, { what: '55 lines' });
  t.same(
    lines(file).map((l) => l.id),
    mem.log.map((e) => e.id),
  );
  t.same((lines(file)[0] as unknown as { data: unknown }).data, mem.log[0]!.data);
  t.equal(statSync(file).mode & 0o777, 0o600);
});

t.test('rotation by size keeps N files and every event in them', async (t) => {
  const file = path.join(tempDir(t), 'x.ndjson');
  const sink = new FileSink(fileSink(file, { maxSize: 4096, keep: 2 }));
  t.teardown(() => sink.close());
  const all: string[] = [];
  for (let b = 0; b < 12; b++) {
    const batch = Array.from({ length: 3 }, (_, i) => signInEvent(b * 3 + i + 1));
    all.push(...batch.map((e) => e.id));
    await sink.deliver(batch);
  }
  t.ok(statSync(file).size <= 4096, 'the live file stays under maxSize');
  t.ok(existsSync(`${file}.1`) && existsSync(`${file}.2`), 'two rotated files');
  t.notOk(existsSync(`${file}.3`), 'no third');
  const kept = [...lines(`${file}.2`), ...lines(`${file}.1`), ...lines(file)].map((l) => l.id);
  t.same(kept, all.slice(all.length - kept.length), 'the newest events, in order, across the files');
  t.ok(kept.length < all.length, 'the oldest were rotated away');
  const zero = path.join(tempDir(t), 'z.ndjson');
  const none = new FileSink(fileSink(zero, { maxSize: 2048, keep: 0 }));
  for (let b = 0; b < 6; b++) await none.deliver([signInEvent(b + 1), signInEvent(b + 100)]);
  await none.close();
  t.notOk(existsSync(`${zero}.1`), 'keep: 0 keeps no rotated file');
  t.ok(lines(zero).length > 0);
});

t.test('a directory that went away: delivery fails, then works once it is back', async (t) => {
  const dir = path.join(tempDir(t), 'gone');
  const sink = new FileSink(fileSink(path.join(dir, 'e.ndjson')));
  t.teardown(() => sink.close());
  const err = await sink.deliver([signInEvent(1)]).catch((e: unknown) => e);
  t.match(err, { name: 'DeliveryError', reason: 'io' });
  mkdirSync(dir);
  await sink.deliver([signInEvent(1)]);
  t.equal(lines(path.join(dir, 'e.ndjson')).length, 1);
});
