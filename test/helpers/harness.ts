// One in-process harness for integration tests: an identity provider, a relay
// (real TLS, real CA, real SQLite), connectors registered with real admin tokens,
// and a client that trusts the relay CA. Everything on loopback, port 0, torn down.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { Agent, type Dispatcher } from 'undici';
import { parseRelayConfig, type RelayConfig } from '../../src/config/relay-config.js';
import { Connector } from '../../src/connector/connector.js';
import type { ConnectorMetrics } from '../../src/connector/metrics.js';
import { RelayClient } from '../../src/connector/relay-client.js';
import { writeRegistration } from '../../src/connector/state.js';
import { createKeyAndCsr } from '../../src/crypto/csr.js';
import type { RegisterResponse } from '../../src/protocol/connector-api.js';
import { silentLogger, createLogger, type Logger } from '../../src/log.js';
import { Relay } from '../../src/relay/relay.js';
import { startIdp, type TestIdp } from './idp.js';
import type { LogLine } from './proc.js';
import { waitFor } from './wait.js';

export interface HarnessOptions {
  /** YAML appended to the relay config (apps, connectors…). Use {{issuer}} for the IdP. */
  yaml?: (h: { issuer: string }) => string;
  log?: Logger;
  /** Use the relay's embedded identity provider instead of the test IdP. */
  embedded?: boolean;
  /** The relay's clock for sessions and decisions (ms); the wall clock by default. */
  now?: () => number;
}

export interface Harness {
  idp: TestIdp;
  relay: Relay;
  dir: string;
  config: RelayConfig;
  publicPort: number;
  apiUrl: string;
  /** A client that trusts the relay CA and connects every host to the public listener. */
  client: Dispatcher;
  /** The same, but its connections come from another loopback address (e.g. 127.0.0.2). */
  clientFrom(localAddress: string): Dispatcher;
  url(host: string, pathAndQuery?: string): string;
  /**
   * A connector identity registered as `connector register` does (admin token, or the
   * embedded provider's local registration), for tests that drive a connector themselves.
   */
  register(name: string, group: string): Promise<Registered>;
  addConnector(opts?: {
    group?: string;
    name?: string;
    metrics?: ConnectorMetrics;
    /** A CA the connector trusts for https backends (PEM). */
    backendCa?: string;
  }): Promise<Connector>;
  reload(yaml: string): Promise<void>;
  close(): Promise<void>;
}

export interface Registered {
  issued: RegisterResponse;
  keyPem: string;
  /** What a connector presents to the relay (RelayClient, tlsOptions). */
  creds: { caPem: string; certPem: string; keyPem: string };
}

export function testLogger(): Logger {
  return process.env['PROXYCTL_TEST_LOG'] ? createLogger('debug', 'test') : silentLogger;
}

/** A debug-level logger that keeps its lines for the test to wait on (and prints them under PROXYCTL_TEST_LOG). */
export function capturingLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const echo = !!process.env['PROXYCTL_TEST_LOG'];
  const log = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        lines.push(JSON.parse(line) as LogLine);
        if (echo) process.stderr.write(line);
      },
    },
  );
  return { log, lines };
}

export function relayYaml(issuer: string | undefined, extra: string): string {
  return `dataDir: ./data
public: { listen: "127.0.0.1:0" }
connectorApi: { listen: "127.0.0.1:0" }
${issuer ? `identity: { issuer: "${issuer}" }` : ''}
${/^connectors:/m.test(extra) ? '' : 'connectors: { heartbeatInterval: 500ms, queueTimeout: 1s }\n'}${/^limits:/m.test(extra) ? '' : 'limits: { perIp: false }\n'}${extra}`;
}

export async function startHarness(
  t: { teardown(fn: () => unknown): void },
  options: HarnessOptions = {},
): Promise<Harness> {
  const log = options.log ?? testLogger();
  const dir = mkdtempSync(path.join(tmpdir(), 'proxyctl-harness-'));
  const idp = await startIdp();
  let config: RelayConfig;
  let relay: Relay | undefined;
  try {
    const text = relayYaml(options.embedded ? undefined : idp.issuer, options.yaml?.({ issuer: idp.issuer }) ?? '');
    config = parseRelayConfig(text, path.join(dir, 'relay.yaml'));
    relay = await Relay.create(config, { log, storeWatchMs: 100, ...(options.now ? { now: options.now } : {}) });
    await relay.start();
  } catch (err) {
    // A harness that fails to start leaves nothing running behind.
    await relay?.close().catch(() => undefined);
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const apiPort = relay.connectorApiAddress().port;
  const publicPort = relay.publicAddress().port;
  const apiUrl = `https://127.0.0.1:${apiPort}`;
  const client = new Agent({
    connect: { ca: relay.ca.certPem, lookup: (_host, _opts, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) },
    connections: 256,
  });
  const connectors: Connector[] = [];
  let n = 0;

  const extraClients: Agent[] = [];
  const h: Harness = {
    idp,
    relay,
    dir,
    config,
    publicPort,
    apiUrl,
    client,
    clientFrom(localAddress: string) {
      // undici's connector does not pass localAddress through; dial the TCP socket ourselves.
      const agent = new Agent({
        connect: (opts, cb) => {
          const raw = netConnect({ host: '127.0.0.1', port: Number(opts.port), localAddress });
          const sock = tlsConnect({
            socket: raw,
            servername: opts.hostname,
            ca: relay.ca.certPem,
            ALPNProtocols: ['http/1.1'],
          });
          sock.once('secureConnect', () => cb(null, sock));
          sock.once('error', (err: Error) => cb(err, null));
        },
      });
      extraClients.push(agent);
      return agent;
    },
    url: (host, p = '/') => `https://${host}:${publicPort}${p}`,
    async register(name, group) {
      const { keyPem, csrPem } = await createKeyAndCsr(name);
      const request = { csr: csrPem, name, group, version: 'test' };
      let issued: RegisterResponse;
      if (options.embedded) issued = await relay.registerLocal(request, 'harness');
      else {
        const rc = new RelayClient(apiUrl, { caPem: relay.ca.certPem });
        issued = await rc.register(await idp.adminToken(), request);
        await rc.close();
      }
      return { issued, keyPem, creds: { caPem: issued.caCertificate, certPem: issued.certificate, keyPem } };
    },
    async addConnector(opts = {}) {
      const stateDir = path.join(dir, `connector-${++n}`);
      const { issued, keyPem } = await h.register(opts.name ?? `c${n}`, opts.group ?? 'default');
      writeRegistration(stateDir, {
        relayUrl: apiUrl,
        name: opts.name ?? `c${n}`,
        group: opts.group ?? 'default',
        keyPem,
        issued,
      });
      const c = new Connector({
        stateDir,
        log,
        ...(opts.metrics ? { metrics: opts.metrics } : {}),
        ...(opts.backendCa ? { backendCa: opts.backendCa } : {}),
      });
      await c.start();
      connectors.push(c);
      await waitFor(() => c.openChannels() >= (c.currentConfig?.channels ?? 2), {
        timeoutMs: 10_000,
        everyMs: 5,
        what: "the connector's channels",
      });
      return c;
    },
    async reload(yaml: string) {
      await relay.reload(
        parseRelayConfig(relayYaml(options.embedded ? undefined : idp.issuer, yaml), path.join(dir, 'relay.yaml')),
      );
    },
    async close() {
      await Promise.all(connectors.map((c) => c.close(1000)));
      await client.close().catch(() => undefined);
      await Promise.all(extraClients.map((a) => a.close().catch(() => undefined)));
      await relay.close();
      await idp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  t.teardown(() => h.close());
  return h;
}
