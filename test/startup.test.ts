// The relay loads what its configuration needs: with an external issuer it starts
// without the embedded provider (oidc-provider, about a second of the start), and
// without pg, ioredis, acme-client or the export sinks unless store:, limits.redis, acme: or export: ask.
// Each case starts a relay in a fresh process and lists the modules it loaded (a
// loader hook reports every load), so the check holds however busy the machine is.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const SRC = new URL('../src/', import.meta.url);
const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-startup-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const HOOK = `let port;
export function initialize(data) { port = data.port; }
export async function load(url, context, next) { port.postMessage(url); return next(url, context); }
`;
// Registers the hook, starts the relay for $CFG (create, start, close), then prints every
// URL loaded. A last import of a marker URL flushes the hook's messages (they arrive in order).
const CHILD = `import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const loaded = [];
let flushed;
const marker = 'data:text/javascript,export default 1';
port1.on('message', (u) => { loaded.push(u); if (u === marker) flushed(); });
register(${JSON.stringify(pathToFileURL(path.join(dir, 'hook.mjs')).href)}, { data: { port: port2 }, transferList: [port2] });
const src = ${JSON.stringify(SRC.href)};
const { parseRelayConfig } = await import(src + 'config/relay-config.ts');
const { createLogger } = await import(src + 'log.ts');
const { Relay } = await import(src + 'relay/relay.ts');
const { generateMasterKey, parseMasterKey } = await import(src + 'crypto/master-key.ts');
const config = parseRelayConfig(process.env.CFG, undefined, { dataDir: process.env.DATA });
let outcome = 'started';
try {
  const relay = await Relay.create(config, {
    log: createLogger('silent'),
    ...(config.store ? { masterKey: parseMasterKey(generateMasterKey()) } : {}),
  });
  if (process.env.START) {
    await relay.start();
    await relay.close();
  }
} catch (err) {
  outcome = err.code ?? err.message;
  process.stderr.write(String(err.stack));
}
const done = new Promise((r) => (flushed = r));
await import(marker);
await done;
process.stdout.write(JSON.stringify({ outcome, loaded }));
process.exit(0);
`;
writeFileSync(path.join(dir, 'hook.mjs'), HOOK);
writeFileSync(path.join(dir, 'child.mjs'), CHILD);

const BASE = `public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0", url: "https://127.0.0.1:0" }
apps:
  - { name: wiki, externalUrl: "https://wiki.localhost:8443/", internalUrl: "http://127.0.0.1:9/", preauth: oidc }
`;
const EXTERNAL = `${BASE}identity: { issuer: "https://idp.example.invalid", clientId: proxyctl }\n`;

interface Run {
  outcome: string;
  loaded: string[];
}

let n = 0;
function run(cfg: string, start: boolean): Promise<Run> {
  const data = path.join(dir, `data-${n++}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(dir, 'child.mjs')], {
      env: { ...process.env, CFG: cfg, DATA: data, ...(start ? { START: '1' } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out) as Run);
      } catch {
        reject(new Error(`child exited ${code}: ${err.slice(-2000)}`));
      }
    });
  });
}

/** Whether a package (node_modules/<name>/) or a source file (src/<file>) was loaded. */
const has = (r: Run, what: string) =>
  r.loaded.some((u) => (what.startsWith('src/') ? u.includes(`/${what}`) : u.includes(`/node_modules/${what}/`)));

t.test('an external issuer: no embedded provider, pg, ioredis or export sinks', async (t) => {
  const r = await run(EXTERNAL, true);
  t.equal(r.outcome, 'started', `the relay started (${r.outcome})`);
  t.ok(has(r, 'src/relay/relay.ts'), 'the hook saw the relay load');
  for (const m of [
    'oidc-provider',
    'koa',
    'pg',
    'ioredis',
    'src/idp/provider.ts',
    'src/export/exporter.ts',
    'acme-client',
  ])
    t.notOk(has(r, m), `${m} is not loaded`);
});

t.test('embedded defaults: the embedded provider loads when the relay starts', async (t) => {
  const r = await run(BASE, true);
  t.equal(r.outcome, 'started', `the relay started (${r.outcome})`);
  t.ok(has(r, 'oidc-provider'), 'oidc-provider is loaded');
  t.ok(has(r, 'src/idp/provider.ts'), 'the embedded provider is loaded');
  t.notOk(has(r, 'pg'), 'pg is not loaded');
  t.notOk(has(r, 'ioredis'), 'ioredis is not loaded');
});

t.test('store.postgres loads pg', async (t) => {
  // Port 1 refuses: the store cannot open, but the driver was needed and loaded.
  const r = await run(`${EXTERNAL}store: { postgres: { url: "postgres://u@127.0.0.1:1/none" } }\n`, false);
  t.not(r.outcome, 'started', 'the unreachable database is reported');
  t.ok(has(r, 'pg'), 'pg is loaded');
  t.notOk(has(r, 'oidc-provider'), 'oidc-provider is not loaded');
});

t.test('limits.redis loads ioredis', async (t) => {
  const r = await run(`${EXTERNAL}limits: { redis: "redis://127.0.0.1:1/0" }\n`, false);
  t.equal(r.outcome, 'started', `the relay started (${r.outcome})`);
  t.ok(has(r, 'ioredis'), 'ioredis is loaded');
  t.notOk(has(r, 'oidc-provider'), 'oidc-provider is not loaded');
});

t.test('export: loads the exporter when the relay starts', async (t) => {
  const file = path.join(dir, 'events.log');
  const r = await run(`${EXTERNAL}export:\n  - file: { path: "${file}" }\n`, true);
  t.equal(r.outcome, 'started', `the relay started (${r.outcome})`);
  t.ok(has(r, 'src/export/exporter.ts'), 'the exporter is loaded');
});
