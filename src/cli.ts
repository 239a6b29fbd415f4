// The command line: commander builds the program; each command's module is
// imported only when it runs so `--help` stays instant. Only main() decides the
// exit status, and every failure is one clear line on stderr.
import { Command, CommanderError, Option } from 'commander';
import { isProxyctlError } from './errors.js';
import { VERSION } from './version.js';
import type { AdminTargetOptions } from './commands/admin-client.js';
import type { PublishOptions, UpdateOptions } from './commands/apps.js';
import type { AuditListOptions, SignInListOptions } from './commands/logs.js';
import type { ObjectOptions } from './commands/objects.js';
import type { WhatIfOptions } from './commands/policy-what-if.js';
import type { RiskListOptions } from './commands/risk.js';

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** Where an administration command works: a running relay (--relay) or the data directory. */
const target = (c: Command) =>
  c
    .option('--relay <url>', "a running relay's admin API, https://host:port (default $PROXYCTL_RELAY)")
    .option('--relay-ca <file>', "with --relay: the relay's CA certificate (its <dataDir>/ca.pem)")
    .option(
      '--token-file <file>',
      'with --relay: file holding an administrator token (default $PROXYCTL_TOKEN, or the one `proxyctl login` saved)',
    )
    .option('--config <file>', 'without --relay: relay configuration (YAML) whose data directory or store to use')
    .option('--data-dir <dir>', 'without --relay: data directory');

const json = (c: Command) => c.option('--json', 'machine-readable output');
const expectedVersion = (c: Command) =>
  c.option('--expected-version <n>', 'refuse the change unless the object is still at this version');
const collect = (value: string, previous: string[]) => [...previous, value];

export function buildProgram(): Command {
  const program = new Command('proxyctl')
    .description('Publish internal web apps through an outbound-only connector and an authenticating relay')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError();

  const relay = program.command('relay').description('the internet-facing relay');
  relay
    .command('serve')
    .description('run the relay')
    .option('--config <file>', 'relay configuration (YAML); embedded loopback defaults when omitted')
    .option('--data-dir <dir>', 'data directory (overrides dataDir in the config)')
    .action(async (opts: { config?: string; dataDir?: string }) => {
      const { serveRelay } = await import('./commands/relay-serve.js');
      await serveRelay(opts);
    });
  const connectors = relay
    .command('connectors')
    .description('administer registered connectors (the same as `proxyctl connector list|revoke`)');
  json(target(connectors.command('list')))
    .description('list connectors: id, name, group, status, version, last seen, certificate expiry')
    .action(async (opts: ObjectOptions) => {
      const { listConnectors } = await import('./commands/connectors.js');
      await listConnectors(opts, out);
    });
  target(connectors.command('revoke'))
    .description('revoke a connector and all its certificates; a running relay closes its channels at once')
    .argument('<id-or-name>', 'connector id, or a name held by exactly one live connector')
    .action(async (idOrName: string, opts: ObjectOptions) => {
      const { revokeConnector } = await import('./commands/connectors.js');
      await revokeConnector(idOrName, opts, out);
    });

  const keys = relay.command('keys').description('keys only the relay holds (session cookies, identity assertions)');
  const rotate = (c: Command) =>
    target(c)
      .description(
        'add a new current key; old cookies stay readable and old assertion keys stay published until what they protect expires',
      )
      .option('--purpose <purpose>', 'session, assertion or all', 'all')
      .action(async (opts: AdminTargetOptions & { purpose: string }) => {
        const { rotateKeys } = await import('./commands/keys.js');
        await rotateKeys(opts, out);
      });
  const listKeys = (c: Command) =>
    json(target(c))
      .description('list session and assertion keys: id, purpose, current, created, retired (never key material)')
      .action(async (opts: ObjectOptions) => {
        const { listKeys } = await import('./commands/keys.js');
        await listKeys(opts, out);
      });
  rotate(keys.command('rotate'));
  listKeys(keys.command('list'));
  keys
    .command('init-master')
    .description('write a new master key (32 random bytes, base64url) to a new owner-only file')
    .requiredOption('--out <file>', 'the file to create (never overwritten)')
    .action(async (opts: { out: string }) => {
      const { initMasterKey } = await import('./commands/relay-keys.js');
      initMasterKey(opts, out);
    });
  keys
    .command('rotate-master')
    .description(
      'seal every secret and key in the store with a new master key; then give every replica the new key and restart it',
    )
    .option(
      '--config <file>',
      'relay configuration (YAML): its store and secrets.masterKeyFile (or PROXYCTL_MASTER_KEY)',
    )
    .option('--data-dir <dir>', 'data directory')
    .requiredOption('--new-key-file <file>', 'the new master key (chmod 600), e.g. from `relay keys init-master`')
    .action(async (opts: { config?: string; dataDir?: string; newKeyFile: string }) => {
      const { rotateMasterKey } = await import('./commands/relay-keys.js');
      await rotateMasterKey(opts, out);
    });

  relay
    .command('migrate')
    .description(
      'copy the SQLite data directory of --config (store, CA, embedded provider keys) into PostgreSQL for replicas; the data directory is only read',
    )
    .requiredOption('--config <file>', 'relay configuration (YAML): its dataDir and master key')
    .requiredOption(
      '--to-postgres <url>',
      'postgres://user@host:port/database of an empty store (the password in PGPASSWORD: a command line is visible to other users)',
    )
    .option('--schema <name>', 'the schema to copy into', 'proxyctl')
    .action(async (opts: { config: string; toPostgres: string; schema: string }) => {
      const { migrateToPostgres } = await import('./commands/relay-migrate.js');
      await migrateToPostgres(opts, out);
    });

  const users = program.command('users').description('users of the embedded identity provider');
  const userOpts = target;
  userOpts(users.command('add').argument('<username>'))
    .description('add a user (prints a generated password unless one is given)')
    .option('--email <email>')
    .option('--name <name>')
    .option('--groups <a,b>', 'comma-separated groups')
    .option('--roles <a,b>', 'comma-separated roles (ProxyAdministrator may register connectors)')
    .option('--password-file <file>', 'read the password from a file')
    .option('--password-stdin', 'read the password from standard input')
    .action(async (username: string, opts: Record<string, string | boolean | undefined>) => {
      const { addUser } = await import('./commands/users.js');
      await addUser(username, opts, out);
    });
  userOpts(users.command('list'))
    .description('list users')
    .option('--json', 'machine-readable output')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const { listUsers } = await import('./commands/users.js');
      await listUsers(opts, out);
    });
  userOpts(users.command('remove').argument('<username>'))
    .description('remove a user')
    .action(async (username: string, opts: Record<string, string | undefined>) => {
      const { removeUser } = await import('./commands/users.js');
      await removeUser(username, opts, out);
    });
  userOpts(users.command('set-password').argument('<username>'))
    .description("set a user's password (generated unless given)")
    .option('--password-file <file>')
    .option('--password-stdin')
    .action(async (username: string, opts: Record<string, string | boolean | undefined>) => {
      const { setPassword } = await import('./commands/users.js');
      await setPassword(username, opts, out);
    });
  userOpts(users.command('enroll-totp').argument('<username>'))
    .description('enroll a TOTP second factor; prints the otpauth URI once')
    .action(async (username: string, opts: Record<string, string | undefined>) => {
      const { enrollTotp } = await import('./commands/users.js');
      await enrollTotp(username, opts, out);
    });

  program
    .command('login')
    .description(
      'get an administrator token with the device flow and keep it for `connector register` and the --relay commands',
    )
    .requiredOption('--relay <url>', "the relay's admin API or connector API URL")
    .option('--relay-ca <file>', "the relay's CA certificate")
    .option('--client-id <id>', 'public client for the device flow (external identity providers)')
    .action(async (opts: { relay: string; relayCa?: string; clientId?: string }) => {
      const { login } = await import('./commands/login.js');
      await login(opts, out);
    });

  program
    .command('demo')
    .description('run a relay, its embedded identity provider, a sample app and a connector on loopback')
    .option('--data-dir <dir>', 'where the demo keeps its state', 'proxyctl-demo')
    .option('--port <port>', 'public HTTPS port', '8443')
    .option('--api-port <port>', 'connector API port (default: port + 1)')
    .action(async (opts: { dataDir?: string; port?: string; apiPort?: string }) => {
      const { runDemo } = await import('./commands/demo.js');
      await runDemo(opts, out);
    });

  const store = target;
  const logFilters = (c: Command) =>
    c
      .option('--since <when>', 'from this date or time (ISO 8601), or this long ago (24h, 7d)')
      .option('--until <when>', 'up to this date or time, or this long ago')
      .option('--limit <n>', 'at most this many rows, newest first (1 to 10000)', '50')
      .option('--json', 'machine-readable output')
      .option('--csv', 'CSV output (RFC 4180) for spreadsheets and SIEM imports');
  const signins = program.command('signins').description('the sign-in log');
  logFilters(store(signins.command('list')))
    .description('list sign-in attempts, newest first')
    .option('--user <subject>', "only this user's attempts (the subject)")
    .option('--app <name>', 'only this app')
    .option('--result <result>', 'success, failure or stepUp')
    .option('--risk <level>', 'none, low, medium or high')
    .action(async (opts: SignInListOptions) => {
      const { listSignIns } = await import('./commands/logs.js');
      await listSignIns(opts, out);
    });
  store(signins.command('show'))
    .description('one sign-in with its location, client, policies and risk detections')
    .argument('<id>', 'the sign-in id (first column of signins list)')
    .option('--json', 'machine-readable output')
    .action(async (id: string, opts: ObjectOptions) => {
      const { showSignIn } = await import('./commands/logs.js');
      await showSignIn(id, opts, out);
    });
  const audit = program.command('audit').description('the audit log of administrative changes');
  logFilters(store(audit.command('list')))
    .description('list administrative changes, newest first')
    .option('--actor <who>', 'only changes by this actor')
    .option('--action <action>', 'only this action, or every action under a prefix ending in "." (connector.)')
    .action(async (opts: AuditListOptions) => {
      const { listAudit } = await import('./commands/logs.js');
      await listAudit(opts, out);
    });

  const risk = program.command('risk').description("users' risk: detections, dismissals, confirmations");
  store(risk.command('list'))
    .description('users at risk, highest first (--all: every user with detections)')
    .option('--all', 'also users whose risk decayed, was remediated or dismissed')
    .option('--since <when>', 'detections from this date or time, or this long ago (default: three decay periods)')
    .option('--json', 'machine-readable output')
    .action(async (opts: RiskListOptions) => {
      const { listRisk } = await import('./commands/risk.js');
      await listRisk(opts, out);
    });
  for (const [name, what] of [
    ['dismiss', 'the user is safe: detections up to now stop counting (audited)'],
    ['confirm', 'the user is compromised: user risk high until dismissed (audited)'],
  ] as const)
    store(risk.command(name))
      .description(what)
      .argument('<user>', 'the subject, as the sign-in log shows it')
      .action(async (user: string, opts: AdminTargetOptions) => {
        const { dismissRisk, confirmRisk } = await import('./commands/risk.js');
        await (name === 'dismiss' ? dismissRisk : confirmRisk)(user, opts, out);
      });

  const policy = program.command('policy').description('Conditional Access policies');
  objectCommands(policy, 'policy', 'policies');
  policy
    .command('what-if')
    .description('show how each policy treats a sign-in and what the relay would decide (exit 0 whatever the decision)')
    .option('--config <file>', 'relay configuration (YAML) to evaluate')
    .option('--relay <url>', "or ask a running relay's admin API (its file and API policies, its users)")
    .option('--relay-ca <file>', "with --relay: the relay's CA certificate")
    .option('--token-file <file>', 'with --relay: file holding an administrator token')
    .requiredOption('--app <name>', 'the app signed in to')
    .requiredOption(
      '--user <id>',
      'who signs in. Embedded provider (no identity.issuer): a user name or e-mail address of its users, whose groups and e-mail are used (anyone else is taken as a bare subject). External provider: the subject (sub claim) exactly as the provider sends it, case included',
    )
    .option(
      '--email <email>',
      "the user's e-mail address, taken as verified (matched without case); overrides the embedded user's",
    )
    .option('--groups <a,b>', "comma-separated groups; override the embedded user's")
    .option('--ip <address>', 'client address (IPv4 or IPv6)', '127.0.0.1')
    .option('--platform <platform>', 'windows, macos, linux, ios, android or other', 'other')
    .option('--mfa', 'the sign-in used a second factor (amr pwd+mfa)')
    .option('--acr <value>', 'authentication context class the provider returned')
    .option('--risk <level>', 'sign-in risk: none, low, medium or high', 'none')
    .option('--user-risk <level>', "the user's risk: none, low, medium or high", 'none')
    .option('--time <iso>', 'when, as an ISO 8601 instant with a zone (default: now)')
    .option('--device-cert', 'the client presents a device certificate')
    .option('--json', 'machine-readable output: { context, assigned, decision }')
    .action(async (opts: WhatIfOptions) => {
      const { whatIf } = await import('./commands/policy-what-if.js');
      await whatIf(opts, out);
    });

  const location = program.command('location').description('named locations for Conditional Access (CIDRs, countries)');
  objectCommands(location, 'location', 'namedLocations');

  const app = program.command('app').description('apps published through the relay');
  target(app.command('publish'))
    .description('publish an app through the API (relays pick it up without a restart)')
    .option('--file <file>', 'the app as YAML, as an entry of apps: in relay.yaml would spell it')
    .option('--name <name>', 'app name (lower-case letters, digits and dashes)')
    .option('--external-url <url>', 'the public URL users open')
    .option('--internal-url <url>', 'where the connector reaches the app')
    .addOption(new Option('--preauth <mode>', 'oidc (sign users in) or passthrough').choices(['oidc', 'passthrough']))
    .option('--group <name>', 'connector group that serves it (default: default)')
    .option('--backend-timeout <duration>', 'how long to wait for the app (default 85s)')
    .option('--json', 'machine-readable output: the published app')
    .action(async (opts: PublishOptions) => {
      const { publishApp } = await import('./commands/apps.js');
      await publishApp(opts, out);
    });
  json(target(app.command('list')))
    .description('list apps, from the config file and the API')
    .action(async (opts: ObjectOptions) => {
      const { listObjects } = await import('./commands/objects.js');
      await listObjects('app', opts, out);
    });
  json(target(app.command('show')))
    .description('show an app as YAML (edit it and pass it to app update --file)')
    .argument('<name>')
    .action(async (name: string, opts: ObjectOptions) => {
      const { showObject } = await import('./commands/objects.js');
      await showObject('app', name, opts, out);
    });
  expectedVersion(json(target(app.command('update'))))
    .description('change an API app: replace it with --file, or edit keys with --set (refused if it changed meanwhile)')
    .argument('<name>')
    .option('--file <file>', 'the whole app as YAML')
    .option(
      '--set <key=value>',
      'set a key (dotted for nested keys: cookie.name=x); the value is YAML; key=null removes it; repeatable',
      collect,
      [],
    )
    .action(async (name: string, opts: UpdateOptions) => {
      const { updateApp } = await import('./commands/apps.js');
      await updateApp(name, opts, out);
    });
  expectedVersion(target(app.command('remove')))
    .description('remove an API app (apps of the config file are removed there)')
    .argument('<name>')
    .action(async (name: string, opts: ObjectOptions) => {
      const { removeObject } = await import('./commands/objects.js');
      await removeObject('app', name, opts, out);
    });

  const group = program.command('group').description('connector groups');
  json(target(group.command('list')))
    .description('list connector groups: declared, or named by apps and connectors')
    .action(async (opts: ObjectOptions) => {
      const { listGroups } = await import('./commands/groups.js');
      await listGroups(opts, out);
    });
  json(target(group.command('show')))
    .description('show a connector group, its connectors and apps')
    .argument('<name>')
    .action(async (name: string, opts: ObjectOptions) => {
      const { showGroup } = await import('./commands/groups.js');
      await showGroup(name, opts, out);
    });
  json(target(group.command('create')))
    .description('declare a connector group')
    .argument('<name>')
    .option('--description <text>', 'what the group serves')
    .action(async (name: string, opts: ObjectOptions & { description?: string }) => {
      const { createGroup } = await import('./commands/groups.js');
      await createGroup(name, opts, out);
    });
  target(group.command('remove'))
    .description('remove a declared group no app or live connector uses')
    .argument('<name>')
    .action(async (name: string, opts: ObjectOptions) => {
      const { removeGroup } = await import('./commands/groups.js');
      await removeGroup(name, opts, out);
    });

  const topKeys = program.command('keys').description('session and assertion keys (also `relay keys`)');
  listKeys(topKeys.command('list'));
  rotate(topKeys.command('rotate'));

  const connector = program.command('connector').description('the on-premises connector (outbound only)');
  connector
    .command('register')
    .description('register this connector with a relay using an administrator token')
    .requiredOption('--relay <url>', 'the relay connector API URL, e.g. https://relay.example.com:8444')
    .option(
      '--token <token>',
      'administrator access token (visible in the process list; prefer --token-file or PROXYCTL_TOKEN)',
    )
    .option('--token-file <file>', 'file holding the administrator access token')
    .option('--relay-ca <file>', "the relay's CA certificate (its <dataDir>/ca.pem) to pin")
    .option('--group <name>', 'connector group', 'default')
    .option('--name <name>', 'connector name (default: host name)')
    .option(
      '--state-dir <dir>',
      'where key.pem, cert.pem and ca.pem are kept (default ./proxyctl-connector or $PROXYCTL_STATE_DIR)',
    )
    .action(
      async (opts: {
        relay: string;
        token?: string;
        tokenFile?: string;
        relayCa?: string;
        group?: string;
        name?: string;
        stateDir?: string;
      }) => {
        const { registerConnector } = await import('./commands/connector-register.js');
        await registerConnector(opts, out);
      },
    );
  connector
    .command('run')
    .description('run the connector: keep control channels to the relay and serve its requests')
    .option('--state-dir <dir>', 'connector state directory (default ./proxyctl-connector or $PROXYCTL_STATE_DIR)')
    .option('--metrics-listen <host:port>', 'loopback address for /metrics, /readyz and /healthz')
    .action(async (opts: { stateDir?: string; metricsListen?: string }) => {
      const { runConnector } = await import('./commands/connector-run.js');
      await runConnector(opts);
    });
  json(target(connector.command('list')))
    .description('list connectors: id, name, group, status, version, last seen, certificate expiry')
    .action(async (opts: ObjectOptions) => {
      const { listConnectors } = await import('./commands/connectors.js');
      await listConnectors(opts, out);
    });
  json(target(connector.command('show')))
    .description('show a connector with its open channels and its certificates')
    .argument('<id-or-name>', 'connector id, or a name held by exactly one live connector')
    .action(async (idOrName: string, opts: ObjectOptions) => {
      const { showConnector } = await import('./commands/connectors.js');
      await showConnector(idOrName, opts, out);
    });
  json(target(connector.command('revoke')))
    .description('revoke a connector and all its certificates; a running relay closes its channels at once')
    .argument('<id-or-name>', 'connector id, or a name held by exactly one live connector')
    .action(async (idOrName: string, opts: ObjectOptions) => {
      const { revokeConnector } = await import('./commands/connectors.js');
      await revokeConnector(idOrName, opts, out);
    });
  target(connector.command('delete'))
    .description('delete a revoked connector from the listings (its certificates stay refused)')
    .argument('<id-or-name>', 'connector id, or a name held by exactly one connector')
    .action(async (idOrName: string, opts: ObjectOptions) => {
      const { deleteConnector } = await import('./commands/connectors.js');
      await deleteConnector(idOrName, opts, out);
    });

  program
    .command('completion')
    .description('print a shell completion script (bash or zsh) for this proxyctl')
    .argument('<shell>', 'bash or zsh')
    .addHelpText('after', COMPLETION_INSTALL)
    .action(async (shell: string) => {
      const { printCompletion } = await import('./commands/completion.js');
      printCompletion(shell, program, (text) => process.stdout.write(text));
    });
  return program;
}

// Kept here, not in completion.ts, so `completion --help` imports nothing.
const COMPLETION_INSTALL = `
Install:
  bash  echo 'source <(proxyctl completion bash)' >> ~/.bashrc
        or: proxyctl completion bash | sudo tee /etc/bash_completion.d/proxyctl
  zsh   proxyctl completion zsh > "\${fpath[1]}/_proxyctl"   (then start a new shell)
        or, after compinit in ~/.zshrc: source <(proxyctl completion zsh)`;

/** list, show, apply and remove of policies and named locations. */
function objectCommands(parent: Command, kind: 'policy' | 'location', listKey: string): void {
  const noun = kind === 'policy' ? 'policies' : 'named locations';
  json(target(parent.command('list')))
    .description(`list ${noun}, from the config file and the API`)
    .action(async (opts: ObjectOptions) => {
      const { listObjects } = await import('./commands/objects.js');
      await listObjects(kind, opts, out);
    });
  json(target(parent.command('show')))
    .description(`show a ${kind} as YAML (edit it and pass it to ${kind} apply --file)`)
    .argument('<name>')
    .action(async (name: string, opts: ObjectOptions) => {
      const { showObject } = await import('./commands/objects.js');
      await showObject(kind, name, opts, out);
    });
  expectedVersion(json(target(parent.command('apply'))))
    .description(`create or replace API ${noun} from a YAML file`)
    .requiredOption('--file <file>', `one ${kind} as a mapping, or a list under ${listKey}: as in relay.yaml`)
    .action(async (opts: ObjectOptions & { file: string }) => {
      const { applyObjects } = await import('./commands/objects.js');
      await applyObjects(kind, opts, out);
    });
  expectedVersion(target(parent.command('remove')))
    .description(`remove an API ${kind} (those of the config file are removed there)`)
    .argument('<name>')
    .action(async (name: string, opts: ObjectOptions) => {
      const { removeObject } = await import('./commands/objects.js');
      await removeObject(kind, name, opts, out);
    });
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    process.exitCode = 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const line = isProxyctlError(err)
      ? `proxyctl: ${err.message} [${err.code}]`
      : `proxyctl: unexpected error: ${(err as Error)?.stack ?? String(err)}`;
    process.stderr.write(`${line}\n`);
    process.exitCode = 1;
  }
}
