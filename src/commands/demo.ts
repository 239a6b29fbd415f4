// `proxyctl demo`: everything on loopback in one process — a relay with the
// embedded identity provider, a sample internal app, and a connector registered
// to the relay — then prints where to go. Its data directory is reused on the
// next run (CA, users, connector identity). Ctrl-C stops everything.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseRelayConfig } from '../config/relay-config.js';
import { Connector } from '../connector/connector.js';
import { writeRegistration } from '../connector/state.js';
import { createKeyAndCsr } from '../crypto/csr.js';
import { ProxyctlError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { hashPassword } from '../idp/users.js';
import { tuneHeapForStreaming } from '../heap-tuning.js';
import { createLogger } from '../log.js';
import { Relay } from '../relay/relay.js';
import { startSampleApp } from '../demo/sample-app.js';
import { VERSION } from '../version.js';

export interface DemoOptions {
  dataDir?: string;
  port?: string;
  apiPort?: string;
}

export async function runDemo(opts: DemoOptions, out: (line: string) => void): Promise<void> {
  tuneHeapForStreaming();
  const dataDir = path.resolve(opts.dataDir ?? 'proxyctl-demo');
  const port = Number(opts.port ?? 8443);
  const apiPort = Number(opts.apiPort ?? (port === 0 ? 0 : port + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ProxyctlError('ERR_USAGE', `--port must be a port number (found ${opts.port})`);
  const log = createLogger(process.env['PROXYCTL_LOG_LEVEL'] ? 'info' : 'warn', 'proxyctl-demo');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });

  const app = await startSampleApp();
  const yaml = `public: { listen: "127.0.0.1:${port}" }
connectorApi: { listen: "127.0.0.1:${apiPort}" }
identity: { embedded: { host: login.localhost } }
admin: { listen: "127.0.0.1:0", consoleHost: admin.localhost }
apps:
  - name: demo
    externalUrl: "https://demo.localhost${port === 443 ? '' : `:${port === 0 ? 8443 : port}`}/"
    internalUrl: "${app.url}"
    preauth: oidc
    assignment: any
    identityHeaders: true
`;
  const config = parseRelayConfig(yaml, undefined, { dataDir });
  const relay = await Relay.create(config, { log });
  const stops: (() => Promise<unknown>)[] = [async () => new Promise((r) => app.server.close(r)), () => relay.close()];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };
  try {
    try {
      await relay.start();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new ProxyctlError(
          'ERR_USAGE',
          `port ${port} or ${apiPort} on 127.0.0.1 is in use; pass --port (and --api-port)`,
        );
      }
      throw err;
    }
    const actualPort = relay.publicAddress().port;
    const password = await ensureDemoUser(relay, dataDir);
    const connector = await ensureConnector(relay, dataDir, log);
    stops.push(() => connector.close(2000));
    const url = `https://demo.localhost:${actualPort}/`;
    out('proxyctl demo is running (everything on loopback).');
    out(`  open:      ${url}`);
    out('  sign in:   user demo');
    out(`             password ${password}`);
    out(`  console:   https://admin.localhost:${actualPort}/   (the same user: an administrator)`);
    out(`  admin API: http://127.0.0.1:${relay.adminAddress()?.port ?? 0}/api/v1   (proxyctl login --relay …)`);
    out(`  trust CA:  ${path.join(dataDir, 'ca.pem')}   (e.g. curl --cacert ${path.join(dataDir, 'ca.pem')} ${url})`);
    out(`  identity:  ${relay.issuer().href}`);
    out('Press Ctrl-C to stop.');
  } catch (err) {
    await stopAll();
    throw err;
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  out('stopping…');
  await stopAll();
}

async function ensureDemoUser(relay: Relay, dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'demo-password');
  let password = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  if (!password || !(await relay.store.users.get('demo'))) {
    password ||= randomBytes(9).toString('base64url');
    writeFileAtomic(file, `${password}\n`, 0o600);
    await relay.store.users.put(
      {
        username: 'demo',
        passwordHash: await hashPassword(password),
        email: 'demo@example.com',
        name: 'Demo User',
        groups: ['demo'],
        roles: ['ProxyAdministrator'],
        totpSecret: null,
        createdAt: Date.now(),
      },
      'demo',
      'user.add',
    );
  }
  return password;
}

async function ensureConnector(
  relay: Relay,
  dataDir: string,
  log: ReturnType<typeof createLogger>,
): Promise<Connector> {
  const stateDir = path.join(dataDir, 'connector');
  const relayUrl = `https://127.0.0.1:${relay.connectorApiAddress().port}`;
  if (existsSync(path.join(stateDir, 'cert.pem'))) {
    // The relay's connector API port may differ from last run: keep the identity, update where to dial.
    const metaFile = path.join(stateDir, 'connector.json');
    const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as Record<string, unknown>;
    writeFileAtomic(metaFile, `${JSON.stringify({ ...meta, relayUrl }, null, 2)}\n`, 0o644);
  } else {
    const { keyPem, csrPem } = await createKeyAndCsr('demo-connector');
    const issued = await relay.registerLocal(
      { csr: csrPem, name: 'demo-connector', group: 'default', version: VERSION },
      'demo',
    );
    writeRegistration(stateDir, { relayUrl, name: 'demo-connector', group: 'default', keyPem, issued });
  }
  const connector = new Connector({ stateDir, log });
  await connector.start();
  return connector;
}
