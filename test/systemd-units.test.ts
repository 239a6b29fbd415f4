// deploy/systemd: `systemd-analyze verify` finds nothing to say about either
// unit, the directives docs/operations.md promises are there (user, state
// directory, hardening, capabilities for the relay only, restart, reload, drain
// time), the command lines they run exist, and the sysusers file creates the
// users they name.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, runCli, tempDir } from './helpers/proc.js';

const DIR = path.join(ROOT, 'deploy/systemd');
const UNITS = ['proxyctl-relay.service', 'proxyctl-connector.service'] as const;
const EXEC = '/usr/bin/proxyctl';

type Unit = Map<string, Map<string, string[]>>;

/** [Section] → key → every value assigned (in order), comments and continuations as systemd reads them. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section = '';
  for (const line of text.replace(/\\\n/g, ' ').split('\n')) {
    const s = line.trim();
    if (s === '' || s.startsWith('#') || s.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(s);
    if (head) {
      section = head[1]!;
      unit.set(section, unit.get(section) ?? new Map<string, string[]>());
      continue;
    }
    const i = s.indexOf('=');
    const key = s.slice(0, i).trim();
    const keys = unit.get(section)!;
    keys.set(key, [...(keys.get(key) ?? []), s.slice(i + 1).trim()]);
  }
  return unit;
}

const one = (u: Unit, section: string, key: string): string | undefined => u.get(section)?.get(key)?.at(-1);

function seconds(v: string | undefined): number {
  const m = /^(\d+)(s|min)?$/.exec(v ?? '');
  return m ? Number(m[1]) * (m[2] === 'min' ? 60 : 1) : NaN;
}

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });

t.test('systemd-analyze verify: no error and no warning', async (t) => {
  t.equal(analyze.status, 0, 'systemd-analyze is installed (Debian package systemd)');
  if (analyze.status !== 0) return;
  const dir = tempDir(t, 'proxyctl-units-');
  // verify checks that ExecStart's program exists: point it at a stand-in.
  const fake = path.join(dir, 'proxyctl');
  writeFileSync(fake, '#!/bin/sh\nexit 0\n');
  chmodSync(fake, 0o755);
  for (const name of UNITS) {
    const text = readFileSync(path.join(DIR, name), 'utf8');
    t.ok(text.includes(`ExecStart=${EXEC} `), `${name} runs ${EXEC}`);
    writeFileSync(path.join(dir, name), text.replaceAll(`=${EXEC} `, `=${fake} `));
  }
  const r = spawnSync('systemd-analyze', ['verify', ...UNITS.map((n) => path.join(dir, n))], { encoding: 'utf8' });
  t.equal(r.status, 0, 'verify exits 0');
  t.equal(`${r.stdout}${r.stderr}`.trim(), '', 'verify prints nothing');

  // And verify does catch mistakes (a bad value, an unknown key): it is really checking.
  const bad = path.join(dir, 'broken.service');
  copyFileSync(path.join(dir, UNITS[0]), bad);
  writeFileSync(
    bad,
    readFileSync(bad, 'utf8').replace('NoNewPrivileges=yes', 'NoNewPrivileges=maybe\nProtectSystm=strict'),
  );
  const b = spawnSync('systemd-analyze', ['verify', bad], { encoding: 'utf8' });
  t.match(`${b.stdout}${b.stderr}`, /maybe/, 'a bad boolean is reported');
  t.match(`${b.stdout}${b.stderr}`, /ProtectSystm/, 'an unknown key is reported');
});

const relay = parseUnit(readFileSync(path.join(DIR, UNITS[0]), 'utf8'));
const connector = parseUnit(readFileSync(path.join(DIR, UNITS[1]), 'utf8'));

t.test('both units: dedicated user, state directory, hardening, restart, drain', async (t) => {
  for (const [name, u, user, state] of [
    [UNITS[0], relay, 'proxyctl', 'proxyctl'],
    [UNITS[1], connector, 'proxyctl-connector', 'proxyctl-connector'],
  ] as const) {
    const s = (k: string) => one(u, 'Service', k);
    t.equal(s('User'), user, `${name}: User=${user}`);
    t.not(s('DynamicUser'), 'yes', `${name}: a static user`);
    t.equal(s('StateDirectory'), state, `${name}: StateDirectory=${state}`);
    t.equal(s('StateDirectoryMode'), '0700', `${name}: the state directory is owner-only`);
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['PrivateDevices', 'yes'],
      ['Restart', 'on-failure'],
      ['KillSignal', 'SIGTERM'],
      ['UMask', '0077'],
    ] as [string, string][])
      t.equal(s(k), v, `${name}: ${k}=${v}`);
    t.ok(seconds(s('RestartSec')) > 0, `${name}: RestartSec set`);
    // The relay drains for up to 10 s; systemd must not SIGKILL it before.
    t.ok(seconds(s('TimeoutStopSec')) >= 20, `${name}: TimeoutStopSec ${s('TimeoutStopSec')} outlasts the drain`);
    t.not(s('MemoryDenyWriteExecute'), 'yes', `${name}: no MemoryDenyWriteExecute (V8's JIT needs W+X)`);
    t.equal(one(u, 'Install', 'WantedBy'), 'multi-user.target', `${name}: enabled into multi-user.target`);
  }
});

t.test('relay: CAP_NET_BIND_SERVICE only, config directory, SIGHUP reload', async (t) => {
  const s = (k: string) => one(relay, 'Service', k);
  t.equal(s('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
  t.equal(s('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
  t.equal(s('ConfigurationDirectory'), 'proxyctl');
  t.equal(s('ExecReload'), '/bin/kill -HUP $MAINPID', 'reload is SIGHUP');
  t.equal(s('ExecStart'), `${EXEC} relay serve --config /etc/proxyctl/relay.yaml`);
  t.match(s('EnvironmentFile') ?? '', /^-\/etc\/proxyctl\//, 'an optional environment file for the master key');
});

t.test('connector: no capabilities, no reload, its state directory', async (t) => {
  const s = (k: string) => one(connector, 'Service', k);
  t.equal(s('CapabilityBoundingSet'), '', 'an empty capability bounding set');
  t.equal(s('AmbientCapabilities'), '', 'no ambient capabilities');
  t.equal(s('ExecReload'), undefined, 'no reload: SIGHUP would stop it');
  t.equal(
    s('ExecStart'),
    `${EXEC} connector run --state-dir /var/lib/proxyctl-connector --metrics-listen 127.0.0.1:9464`,
    'runs from /var/lib/<StateDirectory>',
  );
});

t.test('the command lines the units run exist with those options', async (t) => {
  for (const [name, u] of [
    [UNITS[0], relay],
    [UNITS[1], connector],
  ] as const) {
    const args = one(u, 'Service', 'ExecStart')!.split(/\s+/).slice(1);
    const words = args.slice(
      0,
      args.findIndex((a) => a.startsWith('--')),
    );
    const r = await runCli([...words, '--help']);
    t.equal(r.code, 0, `${name}: proxyctl ${words.join(' ')} exists`);
    for (const o of args.filter((a) => a.startsWith('--'))) t.match(r.stdout, o, `${name}: it takes ${o}`);
  }
});

t.test('sysusers: creates the users the units run as', async (t) => {
  const root = tempDir(t, 'proxyctl-sysusers-');
  const r = spawnSync('systemd-sysusers', ['--root', root, '--dry-run', path.join(DIR, 'proxyctl.sysusers.conf')], {
    encoding: 'utf8',
  });
  t.equal(r.status, 0, r.stderr);
  for (const user of ['proxyctl', 'proxyctl-connector'])
    t.match(`${r.stdout}${r.stderr}`, new RegExp(`Creating user '${user}'`), `creates ${user}`);
});
