// Every YAML example in the README (and config.example.yaml) loads as written,
// every proxyctl command line in its shell examples names a real command with
// options that command accepts, and bench/README.md documents exactly the
// options bench/run.mjs reads. A reader copies these; they must work.
import t from 'tap';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { loadRelayConfig } from '../src/config/relay-config.js';
import { runCli } from './helpers/proc.js';
import { generateCa } from '../src/crypto/ca.js';

const ROOT = path.resolve(import.meta.dirname, '..');

/** Fenced blocks of one language, with the line they start on. */
function blocks(file: string, lang: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = new RegExp(`^(\\s*)\`\`\`${lang}\\s*$`).exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(indent));
    out.push({ line: i + 1, text: body.join('\n') });
    i = j;
  }
  return out;
}

const docs = [
  path.join(ROOT, 'README.md'),
  ...readdirSync(ROOT)
    .filter((f) => /^docs?$/.test(f))
    .flatMap((d) =>
      readdirSync(path.join(ROOT, d))
        .filter((f) => f.endsWith('.md'))
        .map((f) => path.join(ROOT, d, f)),
    ),
];

/** A real certificate for examples that name a CA file. */
let caPem: string | undefined;
async function pem(): Promise<string> {
  caPem ??= (await generateCa()).certPem;
  return caPem;
}

t.test('every YAML example loads as a relay configuration', async (t) => {
  let count = 0;
  for (const doc of docs) {
    for (const b of blocks(doc, 'yaml')) {
      // A block that opens by naming another program's file (# prometheus.yml) is that program's: it must parse.
      if (/^# [\w.-]+\.ya?ml\b/.test(b.text) && !/^# relay\.ya?ml\b/.test(b.text)) {
        t.same(parseDocument(b.text).errors.map(String), [], `${path.basename(doc)}:${b.line} parses`);
        continue;
      }
      count++;
      const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-readme-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      // Files an example names (a client secret, a users file, address lists, a CA) are the reader's to provide.
      const parsed = parseDocument(b.text).toJS() as unknown;
      for (const file of namedFiles(parsed))
        writeFileSync(path.join(dir, file), file.endsWith('.pem') ? await pem() : 'placeholder-secret\n');
      const file = path.join(dir, 'relay.yaml');
      writeFileSync(file, b.text);
      t.doesNotThrow(() => loadRelayConfig(file), `${path.basename(doc)}:${b.line} loads`);
    }
  }
  t.ok(count >= 2, `${count} YAML examples`);
});

t.test('config.example.yaml loads as written', async (t) => {
  t.doesNotThrow(() => loadRelayConfig(path.join(ROOT, 'config.example.yaml')));
});

/**
 * Relative file names under *File keys (clientSecretFile, caFile…) and the file lists
 * of *Lists and *Database keys, to create beside the example.
 */
function namedFiles(v: unknown): string[] {
  if (Array.isArray(v)) return v.flatMap(namedFiles);
  if (!v || typeof v !== 'object') return [];
  const local = (x: unknown): x is string => typeof x === 'string' && !x.includes('/', 2);
  return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) =>
    /File$/.test(k) && local(x) && k !== 'usersFile'
      ? [x]
      : /(Lists|Database)$/.test(k)
        ? [x].flat().filter(local)
        : namedFiles(x),
  );
}

/** proxyctl invocations in shell examples: the command words and the long options used. */
function invocations(text: string): { words: string[]; options: string[]; alternatives: boolean }[] {
  const out: { words: string[]; options: string[]; alternatives: boolean }[] = [];
  const joined = text.replace(/\\\n\s*/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.replace(/#.*$/, '');
    const m = /(?:^|&&|\s)(?:npx\s+)?proxyctl\s+(.*)$/.exec(line);
    if (!m) continue;
    const tokens = m[1]!.split(/\s+/).filter(Boolean);
    const words: string[] = [];
    for (const tok of tokens) {
      if (!/^[a-z][a-z|-]*$/.test(tok)) break;
      words.push(tok);
    }
    const options = [...m[1]!.matchAll(/(?:^|[\s[])(--[a-z][a-z-]*)/g)].map((x) => x[1]!);
    // users add|list|remove: each alternative is a command of its own.
    const alts = words.map((w) => w.split('|'));
    const expand = (i: number): string[][] =>
      i === alts.length ? [[]] : alts[i]!.flatMap((w) => expand(i + 1).map((rest) => [w, ...rest]));
    for (const w of expand(0)) out.push({ words: w, options, alternatives: alts.some((a) => a.length > 1) });
  }
  return out;
}

t.test('every proxyctl command in the shell examples exists and takes the options shown', async (t) => {
  let count = 0;
  for (const doc of docs) {
    for (const b of blocks(doc, 'sh')) {
      for (const inv of invocations(b.text)) {
        count++;
        const r = await runCli([...inv.words, '--help']);
        t.equal(r.code, 0, `${path.basename(doc)}:${b.line}: proxyctl ${inv.words.join(' ')} exists`);
        // Options of the alternatives may differ (users add vs list): only options of a single command are checked.
        if (!inv.alternatives) {
          for (const o of inv.options) t.ok(r.stdout.includes(o), `proxyctl ${inv.words.join(' ')} takes ${o}`);
        }
      }
    }
  }
  t.ok(count >= 8, `${count} command lines`);
});

t.test('bench/README.md and bench/run.mjs agree on the options', async (t) => {
  const run = readFileSync(path.join(ROOT, 'bench/run.mjs'), 'utf8');
  const known = new Set([...run.matchAll(/flag\('([a-z-]+)'/g)].map((m) => `--${m[1]!}`));
  const doc = path.join(ROOT, 'bench/README.md');
  let count = 0;
  for (const b of blocks(doc, 'sh')) {
    for (const raw of b.text.replace(/\\\n\s*/g, ' ').split('\n')) {
      const line = raw.replace(/#.*$/, '');
      if (!/npm run bench|node bench\/run\.mjs/.test(line)) continue;
      count++;
      for (const m of line.matchAll(/(?:^|\s)(--[a-z][a-z-]*)/g)) {
        t.ok(known.has(m[1]!), `bench/README.md:${b.line}: bench/run.mjs reads ${m[1]!}`);
      }
    }
  }
  t.ok(count >= 2, `${count} benchmark command lines`);
  // And the other way round: every option it reads is documented.
  const text = readFileSync(doc, 'utf8');
  for (const o of known) t.ok(text.includes(`\`${o}`), `bench/README.md documents ${o}`);
});
