// `proxyctl completion bash|zsh`: the scripts are made from the commander tree, so every
// command, subcommand and option is in them; bash parses the script and completes as a
// user would see it; zsh (when installed) parses its script.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { buildProgram, main } from '../src/cli.js';
import { bashScript, commandTree, printCompletion, zshScript } from '../src/commands/completion.js';
import { tempDir } from './helpers/proc.js';

const program = buildProgram();
const dir = tempDir(t);

function walk(cmd: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  return [{ path, cmd }, ...cmd.commands.flatMap((c) => walk(c, [...path, c.name()]))];
}
const all = walk(program);

t.test('the tree has every command and option', async (t) => {
  const tree = commandTree(program);
  t.equal(tree.length, all.length, 'one node per command');
  for (const { path, cmd } of all) {
    const node = tree.find((n) => n.path === path.join(' '));
    t.ok(node, `node for "${path.join(' ')}"`);
    t.same(
      node!.commands.map((c) => c.name),
      cmd.commands.map((c) => c.name()),
      `subcommands of "${path.join(' ')}"`,
    );
    for (const o of cmd.options)
      t.ok(
        node!.options.some((x) => x.name === o.long),
        `${path.join(' ')} ${o.long}`,
      );
  }
  const names = all.map((a) => a.path.join(' '));
  for (const expected of [
    'app publish',
    'app list',
    'app show',
    'app update',
    'app remove',
    'connector list',
    'connector show',
    'connector revoke',
    'connector delete',
    'connector register',
    'connector run',
    'relay connectors list',
    'relay connectors revoke',
    'group list',
    'group show',
    'group create',
    'group remove',
    'policy list',
    'policy show',
    'policy apply',
    'policy remove',
    'policy what-if',
    'location list',
    'location show',
    'location apply',
    'location remove',
    'keys list',
    'keys rotate',
    'relay keys rotate',
    'signins list',
    'signins show',
    'audit list',
    'risk list',
    'risk dismiss',
    'risk confirm',
    'users add',
    'users list',
    'users remove',
    'users set-password',
    'users enroll-totp',
    'completion',
  ])
    t.ok(names.includes(expected), `proxyctl ${expected}`);
});

t.test('bash: the script parses and completes', async (t) => {
  const script = bashScript(program);
  const file = path.join(dir, 'proxyctl.bash');
  writeFileSync(file, script);
  const check = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
  t.equal(check.status, 0, `bash -n: ${check.stderr}`);
  for (const { path: p, cmd } of all) {
    const arm = `'${p.join(' ')}') echo '`;
    if (cmd.commands.length)
      t.ok(script.includes(`${arm}${cmd.commands.map((c) => c.name()).join(' ')}'`), p.join(' '));
  }

  /** What bash offers after these words (the last one being completed). */
  const complete = (...words: string[]) => {
    const r = spawnSync(
      'bash',
      [
        '-c',
        `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _proxyctl; printf '%s\\n' "\${COMPREPLY[@]}"`,
        'bash',
        file,
        'proxyctl',
        ...words,
      ],
      { encoding: 'utf8' },
    );
    t.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  };
  t.same(
    complete(''),
    all
      .filter((a) => a.path.length === 1)
      .map((a) => a.path[0])
      .sort(),
    'top level',
  );
  t.same(complete('ap'), ['app']);
  t.same(complete('relay', 'connectors', ''), ['list', 'revoke']);
  t.same(complete('app', 'publish', '--ex'), ['--external-url']);
  t.same(complete('app', 'publish', '--preauth', ''), ['oidc', 'passthrough'], 'choices of an option');
  t.same(complete('app', 'publish', '--file', 'app', ''), [], 'a value is skipped, not taken as a command');
  t.same(complete('app', 'update', 'wiki', '--s'), ['--set']);
  t.same(complete('--version', 'policy', 'w'), ['what-if']);
  t.same(complete('connector', 'list', '--relay', 'https://x', '--j'), ['--json']);
  t.same(complete('nosuch', ''), complete(''), 'an unknown word does not move down the tree');
});

t.test('zsh: the script lists every command and parses', async (t) => {
  const script = zshScript(program);
  t.match(script, /^#compdef proxyctl\n/);
  for (const { path: p, cmd } of all) {
    if (!cmd.commands.length) continue;
    for (const c of cmd.commands) t.ok(script.includes(`'${c.name()}:`), `${p.join(' ')} ${c.name()}`);
  }
  const zsh = spawnSync('zsh', ['--version'], { encoding: 'utf8' });
  await t.test('zsh -n', { skip: zsh.error ? 'zsh is not installed' : false }, async (t) => {
    const file = path.join(dir, '_proxyctl');
    writeFileSync(file, script);
    const check = spawnSync('zsh', ['-n', file], { encoding: 'utf8' });
    t.equal(check.status, 0, `zsh -n: ${check.stderr}`);
  });
});

t.test('proxyctl completion through main()', async (t) => {
  const write = process.stdout.write.bind(process.stdout);
  let printed = '';
  process.stdout.write = (chunk: string) => {
    printed += chunk;
    return true;
  };
  try {
    await main(['node', 'proxyctl', 'completion', 'bash']);
  } finally {
    process.stdout.write = write;
  }
  t.equal(process.exitCode, 0);
  t.match(printed, /complete -o default -F _proxyctl proxyctl/);
  t.throws(() => printCompletion('fish', program, () => undefined), { code: 'ERR_USAGE' });
  process.exitCode = 0;
});
