// The administration commands as a user runs them: locally against a temp data
// directory (AdminOperations in-process) through main(), and with --relay against a
// small server that speaks the contract. Exit 0 with tables or --json, or exit 1 with
// one stderr line carrying the code; file-managed objects are refused; a concurrent
// change is refused, not lost.
import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { ObjectView } from '../src/admin/api-types.js';
import { main } from '../src/cli.js';
import { openAdmin, remoteTarget } from '../src/commands/admin-client.js';
import { publishSpec } from '../src/commands/apps.js';
import { applySets } from '../src/commands/objects.js';
import { isProxyctlError } from '../src/errors.js';
import { runCli, tempDir } from './helpers/proc.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `proxyctl …args` in-process: what it prints and the exit status main() sets. */
async function run(...args: string[]): Promise<Run> {
  const [write, writeErr] = [process.stdout.write.bind(process.stdout), process.stderr.write.bind(process.stderr)];
  let stdout = '';
  let stderr = '';
  process.stdout.write = (c: string) => ((stdout += c), true);
  process.stderr.write = (c: string) => ((stderr += c), true);
  try {
    await main(['node', 'proxyctl', ...args]);
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
  const code = Number(process.exitCode ?? 0);
  process.exitCode = 0;
  return { code, stdout, stderr };
}

/** A refusal: exit 1 and one stderr line ending in the code. */
function refused(t: Test, r: Run, code: string, what: string): void {
  t.equal(r.code, 1, `${what}: exit 1`);
  t.equal(r.stdout, '', `${what}: nothing on stdout`);
  t.match(r.stderr, new RegExp(`^proxyctl: [^\\n]+ \\[${code}\\]\\n$`), `${what}: one line with ${code}`);
}

const dir = tempDir(t, 'proxyctl-cli-admin-');
const config = path.join(dir, 'relay.yaml');
writeFileSync(
  config,
  `dataDir: ./data
apps:
  - { name: static, externalUrl: "https://static.example.com/", internalUrl: "http://10.0.0.9/", assignment: any }
`,
);
const local = ['--config', config];
const OBJECT_KEYS = ['inForce', 'kind', 'name', 'problem', 'source', 'spec', 'updatedAt', 'updatedBy', 'version'];

t.test('app publish, list, show, update, remove against the data directory', async (t) => {
  let r = await run(
    'app',
    'publish',
    ...local,
    '--name',
    'wiki',
    '--external-url',
    'https://wiki.example.com/',
    '--internal-url',
    'http://10.0.0.5:8080/',
    '--backend-timeout',
    '30s',
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'published app wiki (version 1)\n');

  refused(
    t,
    await run(
      'app',
      'publish',
      ...local,
      '--name',
      'wiki',
      '--external-url',
      'https://w2.example.com/',
      '--internal-url',
      'http://10.0.0.6/',
    ),
    'ERR_CONFLICT',
    'the name exists',
  );
  refused(
    t,
    await run(
      'app',
      'publish',
      ...local,
      '--name',
      'static',
      '--external-url',
      'https://s.example.com/',
      '--internal-url',
      'http://10.0.0.6/',
    ),
    'ERR_READ_ONLY',
    'a file app name',
  );

  r = await run('app', 'list', ...local, '--json');
  t.equal(r.code, 0, r.stderr);
  const list = JSON.parse(r.stdout) as ObjectView[];
  t.same(
    list.map((o) => [o.name, o.source, o.version]),
    [
      ['static', 'file', null],
      ['wiki', 'api', 1],
    ],
  );
  for (const o of list) t.same(Object.keys(o).sort(), OBJECT_KEYS, `${o.name}: the ObjectView fields`);
  t.match(list[1], {
    kind: 'app',
    inForce: true,
    problem: null,
    updatedBy: /^cli:/,
    spec: { name: 'wiki', externalUrl: 'https://wiki.example.com/', backendTimeout: '30s' },
  });

  r = await run('app', 'list', ...local);
  const lines = r.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+SOURCE\s+VERSION\s+EXTERNAL URL\s+INTERNAL URL\s+GROUP\s+PREAUTH\s+IN FORCE$/);
  t.match(
    lines[2],
    /^wiki\s+api\s+1\s+https:\/\/wiki\.example\.com\/\s+http:\/\/10\.0\.0\.5:8080\/\s+default\s+oidc\s+yes$/,
  );

  r = await run('app', 'show', 'wiki', ...local);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^# app wiki: published through the API, version 1\n# updated \S+ by cli:/);
  t.same(
    parseYaml(r.stdout),
    {
      name: 'wiki',
      externalUrl: 'https://wiki.example.com/',
      internalUrl: 'http://10.0.0.5:8080/',
      backendTimeout: '30s',
    },
    'the YAML is the spec',
  );
  const showFile = path.join(dir, 'wiki.yaml');
  writeFileSync(showFile, r.stdout.replace('http://10.0.0.5:8080/', 'http://10.0.0.7/'));

  r = await run(
    'app',
    'update',
    'wiki',
    ...local,
    '--set',
    'backendTimeout=90s',
    '--set',
    'assignedGroups=[staff, ops]',
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'updated app wiki (version 2)\n');
  r = await run('app', 'show', 'wiki', ...local, '--json');
  t.match(JSON.parse(r.stdout), { version: 2, spec: { backendTimeout: '90s', assignedGroups: ['staff', 'ops'] } });

  refused(
    t,
    await run('app', 'update', 'wiki', ...local, '--set', 'backendTimeout=60s', '--expected-version', '1'),
    'ERR_CONFLICT',
    'an edit of an old version',
  );
  r = await run('app', 'update', 'wiki', ...local, '--file', showFile, '--json');
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { name: 'wiki', version: 3, spec: { internalUrl: 'http://10.0.0.7/' } });
  t.notOk((JSON.parse(r.stdout) as ObjectView).spec['assignedGroups'], '--file replaces the whole spec');
  refused(
    t,
    await run('app', 'update', 'wiki', ...local, '--set', 'backendTimeout=soon'),
    'ERR_CONFIG_INVALID',
    'an invalid value',
  );
  refused(
    t,
    await run('app', 'update', 'static', ...local, '--set', 'backendTimeout=60s'),
    'ERR_READ_ONLY',
    'a file app',
  );
  refused(t, await run('app', 'update', 'wiki', ...local, '--set', 'name=other'), 'ERR_USAGE', 'a rename');
  refused(t, await run('app', 'update', 'wiki', ...local), 'ERR_USAGE', 'nothing to change');
  refused(
    t,
    await run('app', 'update', 'nope', ...local, '--set', 'backendTimeout=60s'),
    'ERR_NOT_FOUND',
    'an unknown app',
  );

  refused(t, await run('app', 'remove', 'static', ...local), 'ERR_READ_ONLY', 'removing a file app');
  refused(t, await run('app', 'remove', 'nope', ...local), 'ERR_NOT_FOUND', 'removing an unknown app');
  refused(
    t,
    await run('app', 'remove', 'wiki', ...local, '--expected-version', '2'),
    'ERR_CONFLICT',
    'removing an old version',
  );
  r = await run('app', 'remove', 'wiki', ...local, '--expected-version', '3');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'removed app wiki\n');
  r = await run('app', 'list', ...local, '--json');
  t.same(
    (JSON.parse(r.stdout) as ObjectView[]).map((o) => o.name),
    ['static'],
  );

  r = await run('audit', 'list', ...local, '--action', 'app.', '--json');
  t.same(
    (JSON.parse(r.stdout) as { action: string; actor: string }[]).map((a) => a.action),
    ['app.remove', 'app.update', 'app.update', 'app.publish'],
    'each change audited, newest first',
  );
});

t.test('publish refusals: one clear line', async (t) => {
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, 'name: bad\nexternalUrl: "https://bad.example.com/"\ninternalUrl: "ftp://10.0.0.5/"\n');
  const r = await run('app', 'publish', ...local, '--file', bad);
  refused(t, r, 'ERR_CONFIG_INVALID', 'an invalid internalUrl');
  t.match(r.stderr, /internalUrl/, 'the key is named');
  const secret = path.join(dir, 'secret.yaml');
  writeFileSync(
    secret,
    'name: sec\nexternalUrl: "https://s.example.com/"\ninternalUrl: "http://10.0.0.5/"\nclientSecret: hunter2\n',
  );
  refused(t, await run('app', 'publish', ...local, '--file', secret), 'ERR_CONFIG_INVALID', 'a secret through the API');
  refused(
    t,
    await run(
      'app',
      'publish',
      ...local,
      '--name',
      '../x',
      '--external-url',
      'https://x.example.com/',
      '--internal-url',
      'http://10.0.0.5/',
    ),
    'ERR_CONFIG_INVALID',
    'a hostile name',
  );
  refused(t, await run('app', 'publish', ...local), 'ERR_USAGE', 'no spec');
  refused(t, await run('app', 'publish', ...local, '--file', bad, '--name', 'x'), 'ERR_USAGE', '--file and flags');
  refused(t, await run('app', 'publish', ...local, '--file', path.join(dir, 'none.yaml')), 'ERR_USAGE', 'no such file');
  const list = path.join(dir, 'list.yaml');
  writeFileSync(list, 'apps: [ { name: a } ]\n');
  refused(t, await run('app', 'publish', ...local, '--file', list), 'ERR_USAGE', 'a list where one app goes');
  refused(
    t,
    await run('app', 'list', '--relay', 'https://relay.example.com', '--config', config),
    'ERR_USAGE',
    '--relay with --config',
  );
  const r2 = await run(
    'app',
    'publish',
    ...local,
    '--name',
    'x',
    '--external-url',
    'https://x/',
    '--internal-url',
    'http://y/',
    '--preauth',
    'magic',
  );
  t.equal(r2.code, 1, 'an unknown --preauth choice');
});

t.test('groups, policies, named locations, connectors and keys', async (t) => {
  let r = await run('group', 'create', 'branch-1', ...local, '--description', 'the branch office');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'created group branch-1\n');
  refused(t, await run('group', 'create', 'branch-1', ...local), 'ERR_CONFLICT', 'a second create');
  r = await run('group', 'list', ...local, '--json');
  t.match(JSON.parse(r.stdout), [
    { name: 'branch-1', source: 'api', description: 'the branch office' },
    { name: 'default', source: 'derived', apps: ['static'] },
  ]);
  r = await run('group', 'show', 'branch-1', ...local);
  t.match(r.stdout, /^name:\s+branch-1\nsource:\s+declared through the API/);
  refused(t, await run('group', 'remove', 'default', ...local), 'ERR_CONFLICT', 'a derived group');
  t.equal((await run('group', 'remove', 'branch-1', ...local)).code, 0);

  const locations = path.join(dir, 'locations.yaml');
  writeFileSync(
    locations,
    'namedLocations:\n  - { name: office, cidrs: ["198.51.100.0/24"] }\n  - { name: home, countries: [DE] }\n',
  );
  r = await run('location', 'apply', '--file', locations, ...local);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'applied location office (version 1)\napplied location home (version 1)\n');
  const policy = path.join(dir, 'policy.yaml');
  writeFileSync(
    policy,
    'name: block-outside\nstate: reportOnly\nassignments: { users: { include: [all] } }\nconditions: { locations: { include: [all], exclude: [office] } }\ngrant: { block: true }\n',
  );
  r = await run('policy', 'apply', '--file', policy, ...local);
  t.equal(r.code, 0, r.stderr);
  r = await run('policy', 'list', ...local);
  t.match(r.stdout, /^NAME\s+SOURCE\s+VERSION\s+STATE\s+IN FORCE\nblock-outside\s+api\s+1\s+reportOnly\s+yes\n$/);
  refused(t, await run('location', 'remove', 'office', ...local), 'ERR_CONFLICT', 'a location a policy names');
  t.equal((await run('policy', 'remove', 'block-outside', ...local)).code, 0);
  t.equal((await run('location', 'remove', 'office', ...local)).code, 0);
  r = await run('location', 'list', ...local, '--json');
  t.same(
    (JSON.parse(r.stdout) as ObjectView[]).map((o) => o.name),
    ['home'],
  );

  r = await run('connector', 'list', ...local, '--json');
  t.same(JSON.parse(r.stdout), []);
  refused(t, await run('connector', 'show', 'nope', ...local), 'ERR_CONNECTOR_NOT_FOUND', 'an unknown connector');
  refused(t, await run('relay', 'connectors', 'revoke', 'nope', ...local), 'ERR_CONNECTOR_NOT_FOUND', 'the old name');

  r = await run('keys', 'rotate', ...local, '--purpose', 'session');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^new session key \S+\n$/);
  r = await run('keys', 'list', ...local, '--json');
  t.match(JSON.parse(r.stdout), [{ purpose: 'session', current: true }]);
  t.notMatch(r.stdout, /material|BEGIN/, 'no key material');
});

t.test('--set edits', async (t) => {
  const spec = { name: 'wiki', cookie: { name: 'a' }, assignedGroups: ['x', 'y'], backendTimeout: '5s' };
  t.same(applySets(spec, ['cookie.name=b', 'cookie.sameSite=lax', 'assignedGroups.1=z', 'backendTimeout=null']), {
    name: 'wiki',
    cookie: { name: 'b', sameSite: 'lax' },
    assignedGroups: ['x', 'z'],
  });
  t.same(spec.cookie, { name: 'a' }, 'the input is not changed');
  t.same(applySets({}, ['tls.verify=false', 'maxBodyBytes=1048576', 'forwardHeaders=[a, b]']), {
    tls: { verify: false },
    maxBodyBytes: 1048576,
    forwardHeaders: ['a', 'b'],
  });
  t.same(applySets({ a: ['x', 'y'] }, ['a.0=']), { a: ['y'] }, 'an empty value removes');
  for (const hostile of [
    '__proto__.polluted=1',
    'constructor.prototype.polluted=1',
    'a.__proto__=1',
    'noequals',
    '=1',
    'a..b=1',
    'name=other',
    'backendTimeout.x=1',
    'a=[unclosed',
    'list.9=1',
  ])
    t.throws(() => applySets({ backendTimeout: '5s', list: [] }, [hostile]), { code: 'ERR_USAGE' }, hostile);
  t.equal(({} as Record<string, unknown>)['polluted'], undefined, 'no prototype pollution');
});

t.test('publish from flags', async (t) => {
  t.same(
    publishSpec({ name: 'a', externalUrl: 'https://a/', internalUrl: 'http://b/', group: 'g', preauth: 'passthrough' }),
    { name: 'a', externalUrl: 'https://a/', internalUrl: 'http://b/', preauth: 'passthrough', connectorGroup: 'g' },
  );
  t.throws(() => publishSpec({ name: 'a', externalUrl: 'https://a/' }), {
    code: 'ERR_USAGE',
    message: /--internal-url/,
  });
  t.throws(() => publishSpec({ name: 'a', externalUrl: 'x', internalUrl: 'y', backendTimeout: 'soon' }), {
    code: 'ERR_USAGE',
  });
});

t.test('where a command runs and which token it sends', async (t) => {
  t.equal(remoteTarget({}, { PROXYCTL_RELAY: 'https://r.example.com' }), 'https://r.example.com');
  t.equal(
    remoteTarget({ config }, { PROXYCTL_RELAY: 'https://r.example.com' }),
    undefined,
    '--config wins over the env',
  );
  t.equal(remoteTarget({}, {}), undefined);
  t.throws(() => remoteTarget({ relay: 'https://r', dataDir: dir }), { code: 'ERR_USAGE' });

  const configDir = path.join(dir, 'cli-config');
  mkdirSync(configDir, { recursive: true });
  const saved = process.env['PROXYCTL_CONFIG_DIR'];
  process.env['PROXYCTL_CONFIG_DIR'] = configDir;
  t.teardown(() => {
    if (saved === undefined) delete process.env['PROXYCTL_CONFIG_DIR'];
    else process.env['PROXYCTL_CONFIG_DIR'] = saved;
  });
  const relay = 'https://relay.example.com:9443';
  const codeOf = async (opts: Parameters<typeof openAdmin>[0], env: Record<string, string> = {}) => {
    try {
      const h = await openAdmin(opts, env);
      await h.close();
      return h.remote ? 'remote' : 'local';
    } catch (err) {
      return isProxyctlError(err) ? err.code : String(err);
    }
  };
  t.equal(await codeOf({ relay }), 'ERR_TOKEN_MISSING');
  writeFileSync(
    path.join(configDir, 'tokens.json'),
    JSON.stringify({ 'https://relay.example.com:9443': { accessToken: 'old', expiresAt: Date.now() - 1000 } }),
  );
  t.equal(await codeOf({ relay }), 'ERR_TOKEN_EXPIRED', 'an expired stored token');
  try {
    await openAdmin({ relay: `${relay}/` }, {});
  } catch (err) {
    t.match((err as Error).message, /run proxyctl login --relay https:\/\/relay\.example\.com:9443/);
  }
  t.equal(await codeOf({ relay }, { PROXYCTL_TOKEN: 'fresh' }), 'remote', '$PROXYCTL_TOKEN');
  writeFileSync(
    path.join(configDir, 'tokens.json'),
    JSON.stringify({ 'https://relay.example.com:9443': { accessToken: 'kept', expiresAt: Date.now() + 3_600_000 } }),
  );
  t.equal(await codeOf({ relay }), 'remote', 'the token proxyctl login saved');
  t.equal(await codeOf({ relay: 'http://relay.example.com' }, { PROXYCTL_TOKEN: 'x' }), 'ERR_USAGE', 'plain http');
  t.equal(await codeOf({ relay, relayCa: path.join(dir, 'none.pem') }, { PROXYCTL_TOKEN: 'x' }), 'ERR_USAGE');
  t.equal(await codeOf({ config, tokenFile: 'x' }), 'ERR_USAGE', '--token-file without --relay');
  t.equal(await codeOf({ config }), 'local');
});

/** A relay's admin API as far as these commands need it. */
async function contractServer(t: Test) {
  const seen: { method: string; url: string; auth: string | undefined; body: string }[] = [];
  const signIn = (id: number) => ({
    id,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, id)).toISOString(),
    requestId: null,
    traceId: null,
    kind: 'interactive',
    app: 'wiki',
    user: 'alice\u001b[31m',
    ip: '198.51.100.7',
    country: 'DE',
    city: null,
    latitude: null,
    longitude: null,
    asn: null,
    network: null,
    userAgent: null,
    browser: null,
    os: null,
    clientType: 'browser',
    methods: ['pwd'],
    result: 'success',
    reason: null,
    policies: [],
    risk: 'none',
    detections: [],
  });
  const app: ObjectView = {
    kind: 'app',
    name: 'wiki',
    source: 'api',
    version: 4,
    updatedAt: '2026-01-01T00:00:00.000Z',
    updatedBy: 'api:admin',
    spec: { name: 'wiki', externalUrl: 'https://wiki.example.com/', internalUrl: 'http://10.0.0.5/' },
    inForce: true,
    problem: null,
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, auth: req.headers['authorization'], body });
      const send = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const url = new URL(req.url!, 'http://x');
      if (url.pathname === '/api/v1/apps' && req.method === 'GET') return send(200, [app]);
      if (url.pathname === '/api/v1/apps/wiki' && req.method === 'GET') return send(200, app);
      if (url.pathname === '/api/v1/apps/wiki' && req.method === 'PUT')
        return req.headers['if-match'] === '"4"'
          ? send(200, { ...app, version: 5, spec: JSON.parse(body) as object })
          : send(409, { error: { code: 'ERR_CONFLICT', message: 'app wiki changed meanwhile' } });
      if (url.pathname === '/api/v1/signins') {
        // Two pages of 1000 and 500, newest first.
        const from = url.searchParams.get('cursor') === 'page2' ? 500 : 1500;
        const limit = Number(url.searchParams.get('limit'));
        const count = Math.min(limit, from === 1500 ? 1000 : 500);
        const items = Array.from({ length: count }, (_, i) => signIn(from - i));
        return send(200, { items, next: from === 1500 ? 'page2' : null });
      }
      if (url.pathname === '/api/v1/users/bob' && req.method === 'DELETE') return res.writeHead(204).end();
      if (url.pathname === '/api/v1/keys/rotate' && req.method === 'POST')
        return send(200, [
          { kid: 's-old', purpose: 'session', createdAt: '2026-01-01T00:00:00.000Z', retiredAt: null, current: false },
          { kid: 's-new', purpose: 'session', createdAt: '2026-01-02T00:00:00.000Z', retiredAt: null, current: true },
          { kid: 'a-1', purpose: 'assertion', createdAt: '2026-01-01T00:00:00.000Z', retiredAt: null, current: true },
        ]);
      send(404, { error: { code: 'ERR_NOT_FOUND', message: `no route ${url.pathname}` } });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { seen, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

t.test('--relay: the same commands over the admin API', async (t) => {
  const s = await contractServer(t);
  const tokenFile = path.join(dir, 'token');
  writeFileSync(tokenFile, 'tok-remote\n');
  const remote = ['--relay', s.url, '--token-file', tokenFile];
  let r = await run('app', 'list', ...remote);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^NAME.*\nwiki\s+api\s+4\s+https:\/\/wiki\.example\.com\//);
  t.equal(s.seen.at(-1)!.auth, 'Bearer tok-remote', 'the token file, trimmed');

  r = await run('app', 'update', 'wiki', ...remote, '--set', 'backendTimeout=90s');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'updated app wiki (version 5)\n');
  t.same(JSON.parse(s.seen.at(-1)!.body), {
    name: 'wiki',
    externalUrl: 'https://wiki.example.com/',
    internalUrl: 'http://10.0.0.5/',
    backendTimeout: '90s',
  });
  const file = path.join(dir, 'remote-wiki.yaml');
  writeFileSync(file, 'externalUrl: "https://wiki.example.com/"\ninternalUrl: "http://10.0.0.8/"\n');
  refused(
    t,
    await run('app', 'update', 'wiki', ...remote, '--file', file, '--expected-version', '3'),
    'ERR_CONFLICT',
    "the relay's conflict",
  );

  r = await run('signins', 'list', ...remote, '--limit', '1200', '--json', '--since', '2025-12-01');
  t.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { id: number; subject: string; time: string; at: number }[];
  t.equal(rows.length, 1200, 'two pages read');
  t.match(
    rows[0],
    { id: 1500, subject: 'alice\u001b[31m', time: '2026-01-01T00:25:00.000Z', at: Date.UTC(2026, 0, 1, 0, 25) },
    'the local JSON shape',
  );
  const pages = s.seen.filter((x) => x.url.startsWith('/api/v1/signins'));
  t.match(pages[0]!.url, /limit=1000/);
  t.match(pages[0]!.url, /since=2025-12-01T00%3A00%3A00\.000Z/);
  t.match(pages[1]!.url, /limit=200&cursor=page2/);

  r = await run('signins', 'list', ...remote, '--limit', '2');
  t.notOk(r.stdout.includes('\u001b'), 'no escape sequence from the relay reaches the terminal');

  r = await run('keys', 'rotate', '--purpose', 'session', ...remote);
  t.equal(r.stdout, 'new session key s-new\n', 'only the purpose rotated');
  t.same(JSON.parse(s.seen.at(-1)!.body), { purpose: 'session' });

  r = await run('users', 'remove', 'Bob', ...remote);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'removed user bob\n');
  refused(t, await run('group', 'show', 'x', ...remote), 'ERR_NOT_FOUND', "the relay's 404");
});

t.test('the built binary: exit status and one stderr line', async (t) => {
  let r = await runCli(['app', 'list', '--config', config, '--json']);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), [{ name: 'static', source: 'file' }]);
  r = await runCli(['app', 'show', 'nope', '--config', config]);
  t.equal(r.code, 1);
  t.match(r.stderr, /^proxyctl: .* \[ERR_NOT_FOUND\]\n$/);
});
