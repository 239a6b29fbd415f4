// The package as a user installs it: `npm pack` (whose `prepare` builds dist/),
// `npm install -g` of the tarball into a temporary prefix, then the installed
// `proxyctl` runs --version, `demo` (signed in through it) and `relay serve`
// (ready, then SIGTERM → exit 0), from a directory outside the repository and
// with nothing of the repository's node_modules resolvable or loaded.
//
// better-sqlite3 builds its native addon at install. Its install script first
// looks for a prebuilt binary, which this sandbox cannot download, then compiles
// SQLite from source (about 3 minutes on 2 busy cores). The test hands
// prebuild-install a local prebuild instead (its documented
// npm_config_<package>_local_prebuilds directory): the addon compiled for the same
// version and Node ABI in the repository's node_modules, copied into the
// installed package like a downloaded one. When the resolved version differs it
// compiles, and the timeout below allows for that.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Agent, request } from 'undici';
import { BrowserSim } from './helpers/browser-sim.js';
import { ROOT, tempDir } from './helpers/proc.js';

t.setTimeout(420_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment of a user's shell: no tap loaders, no proxyctl or Node module settings. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['NODE_OPTIONS', 'NODE_PATH', 'PROXYCTL_TOKEN', 'PROXYCTL_RELAY', 'PROXYCTL_STATE_DIR'])
    delete env[k];
  for (const k of Object.keys(env)) if (/^(TAP|npm_)/i.test(k)) delete env[k];
  env['PATH'] = `${path.dirname(process.execPath)}:${process.env['PATH'] ?? ''}`;
  env['PROXYCTL_CONFIG_DIR'] = '/nonexistent/proxyctl-config';
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running installed proxyctl whose output can be awaited. */
class Installed {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private watchers: (() => void)[] = [];

  constructor(bin: string, args: string[], cwd: string) {
    this.child = spawn(bin, args, { cwd, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const poke = () => this.watchers.forEach((w) => w());
    this.child.stdout!.on('data', (d: Buffer) => ((this.stdout += d.toString()), poke()));
    this.child.stderr!.on('data', (d: Buffer) => ((this.stderr += d.toString()), poke()));
    this.exited = new Promise((resolve) => this.child.on('close', (code) => (poke(), resolve(code))));
  }

  /** The first match of re in stdout or stderr (now or later); rejects on exit or timeout. */
  waitFor(re: RegExp, where: 'stdout' | 'stderr', timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`timed out waiting for ${re}`)), timeoutMs);
      const done = (err?: Error, m?: RegExpExecArray) => {
        clearTimeout(timer);
        this.watchers = this.watchers.filter((w) => w !== check);
        if (m) resolve(m);
        else reject(new Error(`${err?.message}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr.slice(-3000)}`));
      };
      const check = () => {
        const m = re.exec(where === 'stdout' ? this.stdout : this.stderr);
        if (m) done(undefined, m);
        else if (this.child.exitCode !== null || this.child.signalCode !== null)
          done(new Error(`exited (${this.child.exitCode ?? this.child.signalCode}) waiting for ${re}`));
      };
      this.watchers.push(check);
      check();
    });
  }

  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** The repository's own files (tracked, or new and not ignored), copied to build the package from. */
async function copyRepo(t: Test, to: string): Promise<void> {
  const ls = await run(
    'git',
    ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    ROOT,
    process.env,
    30_000,
  );
  t.equal(ls.code, 0, ls.code === 0 ? 'git ls-files lists the repository' : ls.stderr);
  for (const f of ls.stdout.split('\0').filter(Boolean)) {
    if (!existsSync(path.join(ROOT, f)) || f === 'node_modules') continue;
    mkdirSync(path.dirname(path.join(to, f)), { recursive: true });
    cpSync(path.join(ROOT, f), path.join(to, f));
  }
}

/** better-sqlite3 as compiled in the repository, packed the way prebuild-install names prebuilds. */
async function localPrebuild(dir: string): Promise<string | undefined> {
  const pkgDir = path.join(ROOT, 'node_modules/better-sqlite3');
  const addon = path.join(pkgDir, 'build/Release/better_sqlite3.node');
  if (!existsSync(addon)) return undefined;
  const { version } = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  mkdirSync(dir, { recursive: true });
  const r = await run(
    'tar',
    ['-czf', path.join(dir, name), '-C', pkgDir, 'build/Release/better_sqlite3.node'],
    dir,
    process.env,
    30_000,
  );
  return r.code === 0 ? dir : undefined;
}

const OFFLINE_HINT = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|ENOTCACHED/;

t.test('npm pack → npm install -g → proxyctl runs from its own prefix', async (t) => {
  const work = realpathSync(tempDir(t, 'proxyctl-pack-'));
  const src = path.join(work, 'src');
  const prefix = path.join(work, 'prefix');
  const home = path.join(work, 'home'); // cwd of every run: outside the repository
  mkdirSync(home);
  await copyRepo(t, src);
  // prepare (tsc, esbuild) needs the build tools: the repository's, for building only.
  symlinkSync(realpathSync(path.join(ROOT, 'node_modules')), path.join(src, 'node_modules'));

  // 1. npm pack: prepare builds dist/; `files` decides what ships.
  const pack = await run('npm', ['pack', '--json', '--pack-destination', work], src, userEnv(), 180_000);
  t.equal(pack.code, 0, pack.code === 0 ? 'npm pack exits 0' : pack.stderr.slice(-2000));
  if (pack.code !== 0) return;
  const packed = (
    JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[]
  )[0]!;
  const files = new Set(packed.files.map((f) => f.path));
  for (const f of ['package.json', 'bin/proxyctl.js', 'dist/cli.js', 'dist/console/index.html', 'config.example.yaml'])
    t.ok(files.has(f), `the package holds ${f}`);
  t.ok(
    [...files].some((f) => /^dist\/console\/assets\/app-.*\.js$/.test(f)),
    'the package holds the console bundle',
  );
  t.same(
    [...files].filter((f) => /^(src|test|console|scripts|bench|node_modules)\//.test(f)),
    [],
    'no sources, tests or build scripts ship',
  );

  // 2. npm install -g into a temporary prefix, from npm's cache where it can.
  const prebuilds = await localPrebuild(path.join(work, 'prebuilds'));
  const install = await run(
    'npm',
    [
      'install',
      '-g',
      path.join(work, packed.filename),
      '--prefix',
      prefix,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    home,
    userEnv(prebuilds ? { npm_config_better_sqlite3_local_prebuilds: prebuilds } : {}),
    360_000,
  );
  if (install.code !== 0 && OFFLINE_HINT.test(install.stderr)) {
    const reason = `npm cannot reach the registry and its cache lacks a dependency: ${install.stderr.slice(-500)}`;
    await t.test('install and run the package', { skip: reason }, () => undefined);
    return;
  }
  t.equal(install.code, 0, install.code === 0 ? 'npm install -g exits 0' : install.stderr.slice(-3000));
  if (install.code !== 0) return;
  const bin = path.join(prefix, 'bin/proxyctl');
  const installed = path.join(prefix, 'lib/node_modules/proxyctl');
  t.ok(existsSync(bin), 'the proxyctl command is in <prefix>/bin');
  t.ok(existsSync(path.join(installed, 'dist/console/index.html')), 'the console is installed');

  // Every runtime dependency resolves inside the prefix, none from the repository.
  const pkg = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const req = createRequire(path.join(installed, 'dist/cli.js'));
  const outside: string[] = [];
  for (const dep of Object.keys(pkg.dependencies)) {
    // Where Node's lookup finds the package first (some export no package.json, some no main).
    const found = req.resolve.paths(dep)!.find((p) => existsSync(path.join(p, dep, 'package.json')));
    const where = found ? realpathSync(path.join(found, dep)) : '(not found)';
    if (!where.startsWith(`${installed}/node_modules/`)) outside.push(`${dep}: ${where}`);
  }
  t.same(outside, [], `all ${Object.keys(pkg.dependencies).length} dependencies resolve in the prefix`);
  t.ok(
    existsSync(path.join(installed, 'node_modules/better-sqlite3/build/Release/better_sqlite3.node')),
    'the SQLite addon is installed in the prefix',
  );

  // 3. proxyctl --version
  const version = await run(bin, ['--version'], home, userEnv(), 30_000);
  t.equal(version.code, 0, version.code === 0 ? '--version exits 0' : version.stderr);
  t.equal(
    version.stdout.trim(),
    (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
    'it prints the package version',
  );

  await t.test('proxyctl demo: prints where to go, signs in, stops on Ctrl-C', async (t) => {
    const dataDir = path.join(work, 'demo');
    const demo = new Installed(bin, ['demo', '--port', '0', '--data-dir', dataDir], home);
    t.teardown(() => demo.stop('SIGKILL', 2000));
    await demo.waitFor(/Press Ctrl-C/, 'stdout', 60_000);
    const url = /^\s+open:\s+(\S+)$/m.exec(demo.stdout)?.[1];
    const password = /^\s+password (\S+)$/m.exec(demo.stdout)?.[1];
    const caFile = /^\s+trust CA:\s+(\S+)/m.exec(demo.stdout)?.[1];
    if (!url || !password || !caFile) throw new Error(`demo did not print URL, password and CA:\n${demo.stdout}`);
    t.match(url, /^https:\/\/demo\.localhost:\d+\/$/, 'prints the app URL');
    t.equal(caFile, path.join(dataDir, 'ca.pem'), 'prints the CA file in its data directory');

    const agent = new Agent({
      connect: { ca: readFileSync(caFile), lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) },
    });
    t.teardown(() => agent.close());
    const anon = await request(url, { dispatcher: agent });
    await anon.body.dump();
    t.equal(anon.statusCode, 302, 'an anonymous request is sent to sign in (TLS verified with the printed CA)');
    const page = await new BrowserSim(agent).signIn(url, 'demo', { password });
    t.equal(page.status, 200, page.status === 200 ? 'the printed user and password sign in' : page.body.slice(0, 300));
    t.match(page.body, /<span id="user">demo<\/span>/, 'the sample app answers through the connector');

    // The native addon the demo loaded is the prefix's own.
    const maps = readFileSync(`/proc/${demo.child.pid}/maps`, 'utf8');
    t.ok(maps.includes(`${installed}/node_modules/better-sqlite3/`), 'SQLite is loaded from the prefix');
    t.notOk(maps.includes(`${ROOT}/`), 'nothing is mapped from the repository');

    t.equal(await demo.stop('SIGINT', 10_000), 0, 'Ctrl-C exits 0');
  });

  await t.test('proxyctl relay serve: ready, answers, SIGTERM exits 0', async (t) => {
    const dir = path.join(work, 'relay');
    mkdirSync(dir);
    writeFileSync(
      path.join(dir, 'relay.yaml'),
      [
        'dataDir: ./data',
        'public: { listen: "127.0.0.1:0" }',
        'connectorApi: { listen: "127.0.0.1:0" }',
        'admin: { listen: "127.0.0.1:0" }',
        '',
      ].join('\n'),
    );
    const relay = new Installed(bin, ['relay', 'serve', '--config', path.join(dir, 'relay.yaml')], home);
    t.teardown(() => relay.stop('SIGKILL', 2000));
    await relay.waitFor(/"msg":"relay ready"/, 'stderr', 60_000);
    const admin = /"listen":"(127\.0\.0\.1:\d+)","msg":"admin listener ready"/.exec(relay.stderr)?.[1];
    t.ok(admin, 'the admin listener is announced');
    const ready = await request(`http://${admin}/readyz`);
    await ready.body.dump();
    t.equal(ready.statusCode, 200, '/readyz answers 200');
    const metrics = await request(`http://${admin}/metrics`);
    t.match(await metrics.body.text(), /proxyctl_relay_requests_total/, '/metrics answers');
    t.ok(existsSync(path.join(dir, 'data/ca.pem')), 'the data directory was created beside the config');

    t.equal(await relay.stop('SIGTERM', 30_000), 0, 'SIGTERM exits 0');
    t.match(relay.stderr, /"msg":"relay stopping"/, 'it logged that it was stopping');
  });
});
