// The connector API in-process, over real mutual TLS: registration with a genuine admin token,
// config pull and renewal with client certificates, the control channel (heartbeat, reload,
// revocation from another process), and every hostile variant refused with a stable code
// and without a trace in the store.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, randomUUID, webcrypto } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import path from 'node:path';
import t, { type Test } from 'tap';
import { UnsecuredJWT } from 'jose';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import Database from 'better-sqlite3';
import { parseRelayConfig, type RelayConfig } from '../src/config/relay-config.js';
import { loadOrCreateCa } from '../src/crypto/ca.js';
import { certificateInfo } from '../src/crypto/certs.js';
import { createKeyAndCsr } from '../src/crypto/csr.js';
import { silentLogger } from '../src/log.js';
import { API, CLOSE } from '../src/protocol/connector-api.js';
import { Relay } from '../src/relay/relay.js';
import { openSqliteStore } from '../src/store/index.js';
import { ec, ecCsr, rsa, rsaCsr } from './helpers/csr.js';
import { ManualClock } from './helpers/clock.js';
import { startIdp } from './helpers/idp.js';
import { tempDir } from './helpers/proc.js';
import { waitFor } from './helpers/wait.js';

x509.cryptoProvider.set(webcrypto);

const AUDIENCE = 'api://proxyctl';
const ADMIN = 'ProxyAdministrator';
const MAX_BODY = 4096;
/** The relay's timers run on a manual clock: heartbeats as in production, moved by the tests. */
const HEARTBEAT_MS = 15_000;
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Json = Record<string, unknown>;
interface Creds {
  keyPem: string;
  certPem: string;
}
interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Json;
}
interface Registered extends Creds {
  connectorId: string;
  serial: string;
  agent: Agent;
}

const idp = await startIdp();
t.teardown(() => idp.close());
const nowSeconds = (): number => Math.floor(Date.now() / 1000);

const APP_WIKI = `
  - name: wiki
    externalUrl: "https://wiki.example.com/"
    internalUrl: "http://10.0.0.5:8080/"
    connectorGroup: default`;
const APP_GIT = `
  - name: git
    externalUrl: "https://git.example.com/"
    internalUrl: "http://10.0.0.6:3000/"
    connectorGroup: default`;

function configText(apps: string): string {
  return `
public:
  listen: "127.0.0.1:0"
connectorApi:
  listen: "127.0.0.1:0"
  maxBodyBytes: ${MAX_BODY}
identity:
  issuer: "${idp.issuer}"
connectors:
  heartbeatInterval: ${HEARTBEAT_MS}ms
apps:${apps}
`;
}

class Fixture {
  readonly agents: Agent[] = [];
  readonly sockets: WebSocket[] = [];
  port = 0;
  constructor(
    readonly relay: Relay,
    readonly dataDir: string,
    readonly clock: ManualClock,
  ) {}

  get origin(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  config(apps = APP_WIKI): RelayConfig {
    return parseRelayConfig(configText(apps), undefined, { dataDir: this.dataDir });
  }

  agent(creds?: Creds): Agent {
    const agent = new Agent({
      connect: creds
        ? { ca: this.relay.ca.certPem, cert: creds.certPem, key: creds.keyPem }
        : { ca: this.relay.ca.certPem },
    });
    this.agents.push(agent);
    return agent;
  }

  async call(
    agent: Agent,
    method: 'GET' | 'POST' | 'PUT',
    pathname: string,
    opts: { headers?: Record<string, string>; body?: string | Readable } = {},
  ): Promise<Reply> {
    const res = await request(`${this.origin}${pathname}`, {
      dispatcher: agent,
      method,
      headers: opts.headers,
      body: opts.body,
    });
    const text = await res.body.text();
    let body: Json;
    try {
      body = JSON.parse(text) as Json;
    } catch {
      body = { unparsed: text };
    }
    return { status: res.statusCode, headers: res.headers, body };
  }

  postJson(agent: Agent, pathname: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    return this.call(agent, 'POST', pathname, {
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  }

  register(token: string | undefined, body: unknown): Promise<Reply> {
    return this.postJson(
      this.agent(),
      API.register,
      body,
      token === undefined ? {} : { authorization: `Bearer ${token}` },
    );
  }

  async registerConnector(t: Test, name: string, group = 'default'): Promise<Registered> {
    const { keyPem, csrPem } = await createKeyAndCsr(name);
    const reply = await this.register(await idp.adminToken(), { csr: csrPem, name, group, version: 'test-1.0' });
    t.equal(reply.status, 201, `${name} registered`);
    const out = reply.body as unknown as { connectorId: string; certificate: string; serial: string };
    const creds = { keyPem, certPem: out.certificate };
    return { ...creds, connectorId: out.connectorId, serial: out.serial, agent: this.agent(creds) };
  }

  pull(agent: Agent): Promise<Reply> {
    return this.call(agent, 'GET', API.config);
  }

  /** Everything a request could store; lastSeen is left out because heartbeats of open channels move it. */
  async snapshot(): Promise<{ connectors: unknown; audit: number }> {
    const connectors = (await this.relay.store.connectors.list()).map(({ lastSeen: _seen, ...rest }) => rest);
    return { connectors, audit: (await this.relay.store.audit.list(100_000)).length };
  }

  /** Opens a control channel and waits for its first message (hello). */
  async channel(creds: Creds, options: { autoPong?: boolean } = {}): Promise<Channel> {
    const ws = new WebSocket(`wss://127.0.0.1:${this.port}${API.channel}`, {
      ca: this.relay.ca.certPem,
      cert: creds.certPem,
      key: creds.keyPem,
      autoPong: options.autoPong ?? true,
    });
    this.sockets.push(ws);
    const ch = new Channel(ws);
    const hello = await ch.next(3000);
    return Object.assign(ch, { hello });
  }

  /** Attempts a channel upgrade expected to be refused; resolves with the HTTP status and JSON body. */
  refusedChannel(creds: Creds): Promise<{ status: number; body: Json; requestId: unknown }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${this.port}${API.channel}`, {
        ca: this.relay.ca.certPem,
        cert: creds.certPem,
        key: creds.keyPem,
      });
      this.sockets.push(ws);
      ws.on('open', () => reject(new Error('channel was accepted')));
      ws.on('error', () => undefined); // the aborted handshake reports here after unexpected-response
      ws.on('unexpected-response', (_req, res: IncomingMessage) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(text) as Json,
            requestId: res.headers['x-request-id'],
          });
          ws.terminate();
        });
      });
    });
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await Promise.all(this.agents.map((a) => a.destroy()));
    await this.relay.close();
  }
}

class Channel {
  readonly messages: Json[] = [];
  hello: Json = {};
  readonly closed: Promise<{ code: number; at: number }>;
  private waiter: (() => void) | undefined;
  private read = 0;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.messages.push(JSON.parse(data.toString('utf8')) as Json);
      this.waiter?.();
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      ws.on('close', (code: number) => {
        resolve({ code, at: Date.now() });
        this.waiter?.();
      }),
    );
  }

  /** The next unread message, or a rejection after timeoutMs. */
  async next(timeoutMs: number): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    while (this.read >= this.messages.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.messages[this.read++]!;
  }

  closedWithin(ms: number): Promise<{ code: number; at: number } | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
    return Promise.race([this.closed, late]).finally(() => clearTimeout(timer));
  }

  /** A ping answered: the relay has processed, and sent, everything before it on this channel. */
  roundTrip(): Promise<void> {
    return new Promise((resolve) => {
      this.ws.once('pong', () => resolve());
      this.ws.ping();
    });
  }
}

async function startRelay(t: Test): Promise<Fixture> {
  const dataDir = path.join(tempDir(t), 'data');
  const config = parseRelayConfig(configText(APP_WIKI), undefined, { dataDir });
  const clock = new ManualClock();
  const relay = await Relay.create(config, { log: silentLogger, storeWatchMs: 100, clock });
  const fx = new Fixture(relay, dataDir, clock);
  t.teardown(() => fx.close()); // before start(), so a failed start still closes whatever listens
  await relay.start();
  fx.port = relay.connectorApiAddress().port;
  return fx;
}

/** Status, stable code, a request id header, and the same id in the body. */
function refused(t: Test, reply: Reply, status: number, code: string, what: string): void {
  const error = reply.body['error'] as { code?: unknown; requestId?: unknown } | undefined;
  t.equal(reply.status, status, `${what}: HTTP ${status}`);
  t.equal(error?.code, code, `${what}: ${code}`);
  const id = reply.headers['x-request-id'];
  t.match(id, UUID, `${what}: x-request-id header`);
  t.equal(error?.requestId, id, `${what}: body names the same request id`);
}

function tamper(csrPem: string): string {
  const der = Buffer.from(x509.PemConverter.decodeFirst(csrPem));
  der[der.length - 1]! ^= 0x01; // the signature BIT STRING ends the DER encoding
  return x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
}

async function rsa1024Csr(): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(
    { name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
    true,
    ['sign', 'verify'],
  );
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=weak',
    keys,
    signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' },
  });
  return csr.toString('pem');
}

t.test('a genuine registration issues a client certificate and records it', async (t) => {
  const fx = await startRelay(t);
  const auditBefore = (await fx.relay.store.audit.list(100_000)).length;
  const { keyPem, csrPem } = await createKeyAndCsr('edge-1');
  const token = await idp.adminToken();
  const reply = await fx.register(token, { csr: csrPem, name: 'edge-1', group: 'default', version: 'test-1.0' });

  t.equal(reply.status, 201);
  t.match(reply.headers['x-request-id'], UUID, 'x-request-id header');
  t.match(reply.headers['content-type'], /^application\/json/);
  const body = reply.body as {
    connectorId: string;
    certificate: string;
    caCertificate: string;
    serial: string;
    notAfter: string;
  };
  t.match(body.connectorId, UUID);
  t.equal(body.caCertificate, fx.relay.ca.certPem, 'the relay CA is handed over');

  const cert = new X509Certificate(body.certificate);
  const caCert = new X509Certificate(fx.relay.ca.certPem);
  t.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey), 'chains to the relay CA');
  t.same(cert.keyUsage, [OID_CLIENT_AUTH], 'EKU clientAuth only');
  t.equal(cert.ca, false);
  t.equal(
    certificateInfo(body.certificate).subjectCN,
    body.connectorId,
    'subject CN is the connector id, not the CSR subject',
  );
  t.equal(certificateInfo(body.certificate).serial, body.serial);
  t.equal(new Date(body.notAfter).getTime(), new Date(cert.validTo).getTime());

  const listed = await fx.relay.store.connectors.list();
  t.equal(listed.length, 1, 'one connector stored');
  t.match(listed[0], {
    id: body.connectorId,
    name: 'edge-1',
    group: 'default',
    certificates: 1,
    revokedAt: null,
    version: 'test-1.0',
  });
  t.match(await fx.relay.store.connectors.getCertificate(body.serial), {
    connectorId: body.connectorId,
    kind: 'register',
    revokedAt: null,
  });
  const audit = await fx.relay.store.audit.list(100_000);
  t.equal(audit.length, auditBefore + 1, 'one audit entry added');
  t.match(audit[0], {
    action: 'connector.register',
    connectorId: body.connectorId,
    actor: /^admin:/,
    details: { name: 'edge-1', group: 'default', serial: body.serial },
  });

  const pulled = await fx.pull(fx.agent({ keyPem, certPem: body.certificate }));
  t.equal(pulled.status, 200, 'the new certificate works at once');

  const group = await fx.register(await idp.adminToken(), { csr: (await createKeyAndCsr('x')).csrPem, name: 'edge-2' });
  t.equal(group.status, 201, 'group may be omitted');
  t.equal(
    (await fx.relay.store.connectors.get(group.body['connectorId'] as string))?.group,
    'default',
    'and defaults to "default"',
  );
});

t.test('registration refusals store nothing', async (t) => {
  const fx = await startRelay(t);
  await fx.registerConnector(t, 'existing'); // the store is not empty, so "unchanged" means something
  const before = await fx.snapshot();
  const { csrPem } = await createKeyAndCsr('edge');
  const good = { csr: csrPem, name: 'edge-1', group: 'default' };
  const admin = await idp.adminToken();
  const now = nowSeconds();
  const claims = { iss: idp.issuer, aud: AUDIENCE, sub: 'mallory', roles: [ADMIN], iat: now, exp: now + 300 };

  refused(t, await fx.postJson(fx.agent(), API.register, good), 401, 'ERR_TOKEN_MISSING', 'no Authorization header');
  refused(
    t,
    await fx.postJson(fx.agent(), API.register, good, {
      authorization: `Basic ${Buffer.from('a:b').toString('base64')}`,
    }),
    401,
    'ERR_TOKEN_MISSING',
    'Basic credentials',
  );
  refused(
    t,
    await fx.postJson(fx.agent(), API.register, good, { authorization: 'Bearer' }),
    401,
    'ERR_TOKEN_MISSING',
    'empty bearer',
  );

  const tokens: [string, string | Promise<string>, number, string][] = [
    ['expired token', idp.signToken({ ...claims, iat: now - 3600, exp: now - 600 }), 401, 'ERR_TOKEN_EXPIRED'],
    [
      'wrong audience (real provider token)',
      idp.adminToken({ audience: 'api://something-else' }),
      401,
      'ERR_TOKEN_AUDIENCE',
    ],
    ['alg none', new UnsecuredJWT(claims).encode(), 401, 'ERR_TOKEN_ALG'],
    ['no admin role (real provider token)', idp.adminToken({ roles: [] }), 403, 'ERR_TOKEN_NOT_ADMIN'],
    ['wrong issuer', idp.signToken({ ...claims, iss: 'https://evil.example.com' }), 401, 'ERR_TOKEN_ISSUER'],
    ['garbage token', 'not-a-token', 401, 'ERR_TOKEN_INVALID'],
  ];
  for (const [what, token, status, code] of tokens)
    refused(t, await fx.register(await token, good), status, code, what);

  const csrs: [string, unknown, string][] = [
    ['garbage CSR', 'hello, I am a CSR', 'ERR_CSR_INVALID'],
    ['certificate instead of CSR', fx.relay.ca.certPem, 'ERR_CSR_INVALID'],
    ['RSA-1024 CSR', await rsa1024Csr(), 'ERR_CSR_WEAK_KEY'],
    ['RSA-4104 CSR (above the 4096-bit maximum)', rsaCsr(rsa(4104)), 'ERR_CSR_WEAK_KEY'],
    ['RSA-2048 CSR with public exponent 3', rsaCsr(rsa(2048, 3)), 'ERR_CSR_WEAK_KEY'],
    ['secp256k1 CSR', ecCsr(ec('secp256k1')), 'ERR_CSR_WEAK_KEY'],
    ['tampered CSR signature', tamper(csrPem), 'ERR_CSR_SIGNATURE'],
    [
      'CSR signed by a key other than its own',
      ecCsr(ec('prime256v1'), 'sha256', ec('prime256v1').privateKey),
      'ERR_CSR_SIGNATURE',
    ],
  ];
  for (const [what, csr, code] of csrs) refused(t, await fx.register(admin, { ...good, csr }), 400, code, what);

  const bad: [string, Json][] = [
    ['missing CSR', { name: 'edge-1', group: 'default' }],
    ['CSR not a string', { ...good, csr: 42 }],
    ['missing name', { csr: csrPem, group: 'default' }],
    ['name with a space', { ...good, name: 'edge 1' }],
    ['name with a slash', { ...good, name: '../edge' }],
    ['name starting with a dot', { ...good, name: '.edge' }],
    ['name of 65 characters', { ...good, name: 'e'.repeat(65) }],
    ['name shaped like a connector id', { ...good, name: randomUUID() }],
    ['name shaped like a connector id, upper case', { ...good, name: randomUUID().toUpperCase() }],
    ['group with upper case', { ...good, group: 'Default' }],
    ['group with an underscore', { ...good, group: 'de_fault' }],
    ['group not a string', { ...good, group: ['default'] }],
    ['group empty', { ...good, group: '' }],
  ];
  for (const [what, body] of bad) refused(t, await fx.register(admin, body), 400, 'ERR_BAD_REQUEST', what);

  const raw = (body: string | Readable, headers: Record<string, string>) =>
    fx.call(fx.agent(), 'POST', API.register, { headers: { authorization: `Bearer ${admin}`, ...headers }, body });
  refused(t, await raw('{"csr": ', { 'content-type': 'application/json' }), 400, 'ERR_BAD_REQUEST', 'truncated JSON');
  refused(t, await raw('[1, 2]', { 'content-type': 'application/json' }), 400, 'ERR_BAD_REQUEST', 'JSON array');
  refused(t, await raw('null', { 'content-type': 'application/json' }), 400, 'ERR_BAD_REQUEST', 'JSON null');
  refused(t, await raw('', { 'content-type': 'application/json' }), 400, 'ERR_BAD_REQUEST', 'empty body');
  refused(
    t,
    await raw(JSON.stringify(good), { 'content-type': 'text/plain' }),
    415,
    'ERR_BAD_REQUEST',
    'text/plain content type',
  );
  refused(t, await raw(JSON.stringify(good), {}), 415, 'ERR_BAD_REQUEST', 'no content type');
  refused(
    t,
    await raw(`csr=${encodeURIComponent(csrPem)}&name=edge`, { 'content-type': 'application/x-www-form-urlencoded' }),
    415,
    'ERR_BAD_REQUEST',
    'form body',
  );

  const big = JSON.stringify({ ...good, pad: 'x'.repeat(MAX_BODY) });
  refused(
    t,
    await raw(big, { 'content-type': 'application/json' }),
    413,
    'ERR_BODY_TOO_LARGE',
    'body over the limit with content-length',
  );
  const chunked = Readable.from(
    (function* () {
      for (let i = 0; i < 16; i++) yield Buffer.from(i === 0 ? `{"pad":"${'x'.repeat(1000)}` : 'x'.repeat(1024));
      yield Buffer.from('"}');
    })(),
  );
  const reply = await raw(chunked, { 'content-type': 'application/json' });
  refused(t, reply, 413, 'ERR_BODY_TOO_LARGE', 'chunked body over the limit (no content-length)');
  const slow = Readable.from(
    (async function* () {
      yield Buffer.from('{"pad":"');
      for (let i = 0; i < 12; i++) {
        yield Buffer.from('x'.repeat(1024));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      yield Buffer.from('"}');
    })(),
  );
  refused(
    t,
    await raw(slow, { 'content-type': 'application/json' }),
    413,
    'ERR_BODY_TOO_LARGE',
    'slow chunked body over the limit',
  );

  t.same(await fx.snapshot(), before, 'no connector, certificate or audit entry was added');
});

t.test('a live connector name is unique and never an id (regression: duplicate connector names)', async (t) => {
  const fx = await startRelay(t);
  const admin = await idp.adminToken();
  const csr = async (): Promise<string> => (await createKeyAndCsr('x')).csrPem;
  const first = await fx.registerConnector(t, 'edge-1');
  const before = await fx.snapshot();
  for (const [what, body] of [
    ['the same name', { name: 'edge-1' }],
    ['the same name in upper case', { name: 'EDGE-1' }],
    ['the same name in another group', { name: 'edge-1', group: 'other' }],
  ] as const) {
    refused(
      t,
      await fx.register(admin, { csr: await csr(), group: 'default', ...body }),
      409,
      'ERR_CONNECTOR_NAME_TAKEN',
      what,
    );
  }
  refused(
    t,
    await fx.register(admin, { csr: await csr(), name: first.connectorId }),
    400,
    'ERR_BAD_REQUEST',
    "another connector's id as a name",
  );
  t.same(await fx.snapshot(), before, 'nothing stored by the refusals');

  const race = await Promise.all([0, 1, 2].map(async () => fx.register(admin, { csr: await csr(), name: 'edge-2' })));
  t.same(race.map((r) => r.status).sort(), [201, 409, 409], 'three registrations at once: exactly one gets the name');
  t.equal((await fx.relay.store.connectors.list()).filter((c) => c.name === 'edge-2').length, 1);

  await fx.relay.revokeConnector('edge-1', 'admin:test');
  const again = await fx.registerConnector(t, 'edge-1');
  t.not(again.connectorId, first.connectorId, "a revoked connector's name can be given again");
  t.equal((await fx.relay.store.connectors.find('edge-1')).id, again.connectorId, 'and then means the live connector');
  refused(t, await fx.pull(first.agent), 403, 'ERR_CERT_REVOKED', 'the revoked namesake stays revoked');
  t.equal((await fx.pull(again.agent)).status, 200);
});

t.test('revoke refuses an argument that names two connectors (data from before names were unique)', async (t) => {
  const fx = await startRelay(t);
  const a = await fx.registerConnector(t, 'edge-1');
  const b = await fx.registerConnector(t, 'edge-2');
  // What an older relay could store: a name equal to another connector's id, and twins.
  const raw = new Database(path.join(fx.dataDir, 'proxyctl.db'));
  const legacy = (id: string, name: string) =>
    raw
      .prepare(
        `INSERT INTO connectors (id, name, group_name, created_at, created_by) VALUES (?, ?, 'default', ?, 'legacy')`,
      )
      .run(id, name, Date.now());
  const impostor = randomUUID();
  legacy(impostor, a.connectorId);
  legacy(randomUUID(), 'edge-2');
  raw.close();
  const store = fx.relay.store;
  const live = async () =>
    (await store.connectors.list())
      .filter((c) => c.revokedAt === null)
      .map((c) => c.id)
      .sort();
  const before = await live();

  await t.rejects(
    fx.relay.revokeConnector(a.connectorId, 'admin:test'),
    { code: 'ERR_USAGE' },
    "one connector's id and another's name",
  );
  await t.rejects(
    fx.relay.revokeConnector('edge-2', 'admin:test'),
    { code: 'ERR_USAGE' },
    'a name two live connectors have',
  );
  await t.rejects(
    fx.relay.revokeConnector('name:edge-2', 'admin:test'),
    { code: 'ERR_USAGE' },
    'name: does not make twins one',
  );
  await t.rejects(fx.relay.revokeConnector('nobody', 'admin:test'), { code: 'ERR_CONNECTOR_NOT_FOUND' });
  await t.rejects(
    fx.relay.revokeConnector(`id:${impostor.slice(0, 8)}`, 'admin:test'),
    { code: 'ERR_CONNECTOR_NOT_FOUND' },
    'no prefix matching',
  );
  t.same(await live(), before, 'nothing was revoked');
  t.equal((await fx.pull(a.agent)).status, 200);

  t.equal((await store.connectors.find(`name:${a.connectorId}`)).id, impostor, 'name: picks the one named so');
  await fx.relay.revokeConnector(`id:${a.connectorId}`, 'admin:test');
  refused(t, await fx.pull(fx.agent(a)), 403, 'ERR_CERT_REVOKED', 'id: revokes the one with that id');
  await fx.relay.revokeConnector(`id:${b.connectorId}`, 'admin:test');
  t.same((await live()).length, before.length - 2);
});

t.test('config pull needs a known, valid certificate from this relay', async (t) => {
  const fx = await startRelay(t);
  const c = await fx.registerConnector(t, 'edge-1');
  const ok = await fx.pull(c.agent);
  t.equal(ok.status, 200);
  t.match(ok.headers['x-request-id'], UUID);
  t.match(ok.body, {
    connectorId: c.connectorId,
    name: 'edge-1',
    group: 'default',
    heartbeatIntervalMs: HEARTBEAT_MS,
    certificate: { serial: c.serial },
  });
  t.same(
    (ok.body['apps'] as Json[]).map((a) => a['name']),
    ['wiki'],
  );
  t.match(ok.body['version'], /^[A-Za-z0-9_-]{22}$/);
  t.same(
    ok.body['replicas'],
    [{ id: fx.relay.replicaId, url: `https://127.0.0.1:${fx.port}/` }],
    'a relay without a registry names itself, at the URL it is bound to, as the one replica',
  );

  const before = await fx.snapshot();
  refused(t, await fx.pull(fx.agent()), 401, 'ERR_CERT_REQUIRED', 'no client certificate');

  const other = await loadOrCreateCa(tempDir(t));
  const foreignCsr = await createKeyAndCsr('x');
  const foreign = await other.signConnectorCsr(foreignCsr.csrPem, {
    connectorId: c.connectorId,
    lifetimeMs: 3_600_000,
  });
  refused(
    t,
    await fx.pull(fx.agent({ keyPem: foreignCsr.keyPem, certPem: foreign.certPem })),
    401,
    'ERR_CERT_UNTRUSTED',
    'certificate from another CA, even naming a real connector',
  );

  const unknownCsr = await createKeyAndCsr('x');
  const unknown = await fx.relay.ca.signConnectorCsr(unknownCsr.csrPem, {
    connectorId: c.connectorId,
    lifetimeMs: 3_600_000,
  });
  refused(
    t,
    await fx.pull(fx.agent({ keyPem: unknownCsr.keyPem, certPem: unknown.certPem })),
    401,
    'ERR_CERT_UNKNOWN',
    'relay-signed certificate never recorded',
  );

  t.same(await fx.snapshot(), before, 'refused pulls touch nothing');
});

t.test('an expired certificate is refused, on a new or a kept-alive connection', async (t) => {
  const fx = await startRelay(t);
  const { keyPem, csrPem } = await createKeyAndCsr('short');
  const id = randomUUID();
  const issued = await fx.relay.ca.signConnectorCsr(csrPem, { connectorId: id, lifetimeMs: 60_000 });
  await fx.relay.store.connectors.register({
    id,
    name: 'short',
    group: 'default',
    actor: 'test',
    serial: issued.serial,
    issuedAt: fx.clock.now(),
    notAfter: issued.notAfter.getTime(),
  });
  const creds = { keyPem, certPem: issued.certPem };
  const early = fx.agent(creds);
  t.equal((await fx.pull(early)).status, 200, 'valid while fresh');
  // The relay's clock passes notAfter (TLS still sees a valid certificate: the relay's own check refuses).
  await fx.clock.advance(Math.max(0, issued.notAfter.getTime() - fx.clock.now()) + 1000);
  refused(t, await fx.pull(fx.agent(creds)), 401, 'ERR_CERT_UNTRUSTED', 'expired (new TLS connection)');
  refused(t, await fx.pull(early), 401, 'ERR_CERT_UNTRUSTED', 'expired (agent that connected while it was valid)');
  t.equal((await fx.refusedChannel(creds)).status, 401, 'channel refused too');

  // A certificate that expired by the wall clock as well: refused by the TLS verification itself.
  const past = await loadOrCreateCa(fx.dataDir, { now: () => new Date(Date.now() - 600_000) });
  const old = await createKeyAndCsr('old');
  const oldId = randomUUID();
  const stale = await past.signConnectorCsr(old.csrPem, { connectorId: oldId, lifetimeMs: 60_000 });
  t.ok(stale.notAfter.getTime() < Date.now(), 'issued already expired');
  await fx.relay.store.connectors.register({
    id: oldId,
    name: 'old',
    group: 'default',
    actor: 'test',
    serial: stale.serial,
    issuedAt: Date.now() - 600_000,
    notAfter: stale.notAfter.getTime(),
  });
  const reply = await fx.pull(fx.agent({ keyPem: old.keyPem, certPem: stale.certPem }));
  refused(t, reply, 401, 'ERR_CERT_UNTRUSTED', 'expired by the wall clock');
  t.match((reply.body['error'] as Json)['message'], /expired/, 'named as expired');
});

t.test('renewal issues a second certificate; bad CSRs change nothing', async (t) => {
  const fx = await startRelay(t);
  const c = await fx.registerConnector(t, 'edge-1');
  const next = await createKeyAndCsr('edge-1');
  const reply = await fx.postJson(c.agent, API.renew, { csr: next.csrPem });
  t.equal(reply.status, 200);
  t.match(reply.headers['x-request-id'], UUID);
  const body = reply.body as { connectorId: string; certificate: string; serial: string };
  t.equal(body.connectorId, c.connectorId);
  t.not(body.serial, c.serial, 'new serial');
  t.equal(certificateInfo(body.certificate).subjectCN, c.connectorId);
  t.ok(new X509Certificate(body.certificate).checkIssued(new X509Certificate(fx.relay.ca.certPem)));

  const renewed = { keyPem: next.keyPem, certPem: body.certificate };
  const oldPull = await fx.pull(fx.agent(c));
  const newAgent = fx.agent(renewed);
  const newPull = await fx.pull(newAgent);
  t.equal(oldPull.status, 200, 'the old certificate still works until the new one is used');
  t.equal(newPull.status, 200, 'the new certificate works');
  t.match(newPull.body, { connectorId: c.connectorId, certificate: { serial: body.serial } });
  t.match(oldPull.body, { connectorId: c.connectorId, certificate: { serial: c.serial } });

  t.equal((await fx.relay.store.connectors.list())[0]?.certificates, 2, 'two certificates listed');
  t.match(await fx.relay.store.connectors.getCertificate(body.serial), {
    connectorId: c.connectorId,
    kind: 'renew',
    revokedAt: null,
  });
  t.match(
    (await fx.relay.store.audit.list()).find((a) => a.action === 'connector.renew'),
    { action: 'connector.renew', connectorId: c.connectorId, details: { oldSerial: c.serial, serial: body.serial } },
  );

  const before = await fx.snapshot();
  refused(t, await fx.postJson(newAgent, API.renew, { csr: 'garbage' }), 400, 'ERR_CSR_INVALID', 'garbage CSR');
  refused(
    t,
    await fx.postJson(newAgent, API.renew, { csr: tamper(next.csrPem) }),
    400,
    'ERR_CSR_SIGNATURE',
    'tampered CSR',
  );
  refused(
    t,
    await fx.postJson(newAgent, API.renew, { csr: await rsa1024Csr() }),
    400,
    'ERR_CSR_WEAK_KEY',
    'RSA-1024 CSR',
  );
  refused(
    t,
    await fx.postJson(newAgent, API.renew, { csr: rsaCsr(rsa(2048, 65539)) }),
    400,
    'ERR_CSR_WEAK_KEY',
    'RSA CSR with public exponent 65539',
  );
  refused(
    t,
    await fx.postJson(newAgent, API.renew, { csr: ecCsr(ec('secp521r1'), 'sha512') }),
    400,
    'ERR_CSR_WEAK_KEY',
    'P-521 CSR',
  );
  refused(
    t,
    await fx.postJson(newAgent, API.renew, { csr: fx.relay.ca.certPem }),
    400,
    'ERR_CSR_INVALID',
    'certificate instead of CSR',
  );
  refused(t, await fx.postJson(newAgent, API.renew, {}), 400, 'ERR_BAD_REQUEST', 'no CSR');
  refused(
    t,
    await fx.postJson(c.agent, API.renew, { csr: next.csrPem }),
    403,
    'ERR_CERT_REVOKED',
    'renewal with the replaced certificate',
  );
  refused(
    t,
    await fx.postJson(fx.agent(), API.renew, { csr: next.csrPem }),
    401,
    'ERR_CERT_REQUIRED',
    'renewal without a certificate',
  );
  t.same(await fx.snapshot(), before, 'no certificate recorded by refused renewals');
});

t.test('revocation from another process cuts channels and every certificate', async (t) => {
  const fx = await startRelay(t);
  const c = await fx.registerConnector(t, 'edge-1');
  const next = await createKeyAndCsr('edge-1');
  const renewedReply = await fx.postJson(c.agent, API.renew, { csr: next.csrPem });
  t.equal(renewedReply.status, 200);
  const renewed = { keyPem: next.keyPem, certPem: renewedReply.body['certificate'] as string };
  const renewedAgent = fx.agent(renewed);
  t.equal((await fx.pull(renewedAgent)).status, 200);
  const bystander = await fx.registerConnector(t, 'edge-2');

  const ch = await fx.channel(renewed);
  t.match(ch.hello, { type: 'hello', connectorId: c.connectorId, channelId: UUID, configVersion: String });
  const other = await fx.channel(bystander);
  t.equal(fx.relay.channels.byConnector(c.connectorId).length, 1, 'relay tracks the channel');

  const cli = openSqliteStore(fx.dataDir); // as `proxyctl relay connectors revoke` would
  const revokedAt = Date.now();
  await cli.connectors.revoke(c.connectorId, 'admin:cli');
  await cli.close();

  const msg = await ch.next(2000);
  t.match(msg, { type: 'revoked', reason: String });
  const closed = await ch.closedWithin(2000 - (Date.now() - revokedAt));
  t.equal(closed?.code, CLOSE.revoked, 'closed with 4403 within 2 s');

  const before = await fx.snapshot();
  refused(t, await fx.pull(c.agent), 403, 'ERR_CERT_REVOKED', 'original certificate');
  refused(t, await fx.pull(renewedAgent), 403, 'ERR_CERT_REVOKED', 'renewed certificate (kept-alive connection)');
  refused(t, await fx.pull(fx.agent(renewed)), 403, 'ERR_CERT_REVOKED', 'renewed certificate (new connection)');
  refused(
    t,
    await fx.postJson(fx.agent(renewed), API.renew, { csr: (await createKeyAndCsr('x')).csrPem }),
    403,
    'ERR_CERT_REVOKED',
    'renewal after revocation',
  );
  for (const creds of [c, renewed]) {
    const r = await fx.refusedChannel(creds);
    t.equal(r.status, 403, 'channel upgrade refused with 403');
    t.equal((r.body['error'] as Json)['code'], 'ERR_CERT_REVOKED');
    t.match(r.requestId, UUID);
  }
  t.same(await fx.snapshot(), before, 'refusals after revocation store nothing');
  // The original certificate was already retired when the renewed one was first used.
  t.match((await fx.relay.store.audit.list())[0], {
    action: 'connector.revoke',
    actor: 'admin:cli',
    connectorId: c.connectorId,
    details: { certificates: 1 },
  });

  t.equal(other.ws.readyState, WebSocket.OPEN, "another connector's channel is untouched");
  t.equal(other.messages.length, 1, 'and told nothing');
  t.equal((await fx.pull(bystander.agent)).status, 200);
});

t.test('a channel that stops answering pings is cut by the heartbeat', async (t) => {
  const fx = await startRelay(t);
  const c = await fx.registerConnector(t, 'edge-1');
  const deaf = await fx.channel(c, { autoPong: false });
  const healthy = await fx.channel(c);
  const opened = fx.clock.now();
  t.equal(fx.relay.channels.byConnector(c.connectorId).length, 2);
  const relaySide = (ch: Channel) =>
    fx.relay.channels.byConnector(c.connectorId).find((r) => r.id === ch.hello['channelId']);
  const beat = async () => {
    await fx.clock.advance(HEARTBEAT_MS);
    // The healthy channel's pong is back (it marks the channel alive) before the next beat.
    await waitFor(() => relaySide(healthy)?.alive, { what: 'the pong of the healthy channel' });
  };

  await beat();
  t.equal(deaf.ws.readyState, WebSocket.OPEN, 'one unanswered ping is not yet fatal');
  await beat();
  const closed = await deaf.closedWithin(3000);
  t.ok(closed, 'silent channel closed');
  t.equal(fx.clock.now() - opened, 2 * HEARTBEAT_MS, 'cut at the second heartbeat after an unanswered ping');
  t.equal(closed?.code, 1006, 'terminated, no close frame');

  await beat();
  await beat();
  t.equal(healthy.ws.readyState, WebSocket.OPEN, 'a channel that answers pings stays open');
  t.equal(fx.relay.channels.byConnector(c.connectorId).length, 1, 'only the live channel remains registered');
  t.ok(
    ((await fx.relay.store.connectors.get(c.connectorId))?.lastSeen ?? 0) >= opened,
    'pongs record the connector as seen',
  );
});

t.test('a frame outside the contract closes the channel as a protocol error', async (t) => {
  const fx = await startRelay(t);
  const c = await fx.registerConnector(t, 'edge-1');
  const cases: [string, string | Buffer][] = [
    ['not JSON', 'draining'],
    ['an unknown message type', JSON.stringify({ type: 'hello' })],
    ['a message without a type', JSON.stringify({ draining: true })],
    ['a malformed inline response', Buffer.from([0, 0, 0, 9, 1, 2])],
  ];
  for (const [what, data] of cases) {
    const ch = await fx.channel(c);
    ch.ws.send(data);
    const closed = await ch.closedWithin(3000);
    t.equal(closed?.code, CLOSE.protocol, `${what}: closed with ${CLOSE.protocol}`);
  }
  const ch = await fx.channel(c);
  ch.ws.send(JSON.stringify({ type: 'draining' }));
  await ch.roundTrip();
  const relaySide = fx.relay.channels.byConnector(c.connectorId);
  t.equal(relaySide.length, 1, 'only the channel that spoke the contract remains');
  t.equal(relaySide[0]?.draining, true, 'draining is understood');
  t.equal(ch.ws.readyState, WebSocket.OPEN, 'and keeps the channel open');
});

t.test('reload tells only the affected group', async (t) => {
  const fx = await startRelay(t);
  const a = await fx.registerConnector(t, 'edge-1', 'default');
  const b = await fx.registerConnector(t, 'edge-2', 'other');
  const chA = await fx.channel(a);
  const chB = await fx.channel(b);
  const versionA = chA.hello['configVersion'];

  const result = await fx.relay.reload(fx.config(APP_WIKI + APP_GIT));
  t.same(result.restartNeeded, [], 'no restart needed');
  const msg = await chA.next(2000);
  t.match(msg, { type: 'config-changed', configVersion: String });
  t.not(msg['configVersion'], versionA, 'new config version');
  await chB.roundTrip();
  t.equal(chB.messages.length, 1, 'the other group got nothing beyond hello');
  t.equal(chB.ws.readyState, WebSocket.OPEN);

  const pulled = await fx.pull(a.agent);
  t.same((pulled.body['apps'] as Json[]).map((x) => x['name']).sort(), ['git', 'wiki']);
  t.equal(pulled.body['version'], msg['configVersion'], 'the pull matches the announced version');
  t.same((await fx.pull(b.agent)).body['apps'], [], 'group "other" still has no apps');

  await fx.relay.reload(fx.config(APP_WIKI + APP_GIT));
  await chA.roundTrip();
  t.equal(chA.messages.length, 2, 'reloading an identical config announces nothing');
});

t.test('unknown paths and methods; the relay survives hostile calls', async (t) => {
  const fx = await startRelay(t);
  const c = await fx.registerConnector(t, 'edge-1');
  const anon = fx.agent();
  refused(t, await fx.call(anon, 'GET', '/nope'), 404, 'ERR_NOT_FOUND', 'unknown path');
  refused(
    t,
    await fx.call(c.agent, 'GET', '/v1/connector/../connectors/register'),
    405,
    'ERR_METHOD_NOT_ALLOWED',
    'dot segments are normalised',
  );
  refused(t, await fx.call(anon, 'GET', API.register), 405, 'ERR_METHOD_NOT_ALLOWED', 'GET on the register path');
  refused(
    t,
    await fx.call(c.agent, 'POST', API.config, { headers: { 'content-type': 'application/json' }, body: '{}' }),
    405,
    'ERR_METHOD_NOT_ALLOWED',
    'POST on config',
  );
  refused(
    t,
    await fx.call(c.agent, 'PUT', API.renew, { headers: { 'content-type': 'application/json' }, body: '{}' }),
    405,
    'ERR_METHOD_NOT_ALLOWED',
    'PUT on renew',
  );
  refused(
    t,
    await fx.call(c.agent, 'GET', API.channel),
    405,
    'ERR_METHOD_NOT_ALLOWED',
    'plain GET on the channel path',
  );
  refused(t, await fx.call(c.agent, 'GET', `${API.config}/extra`), 404, 'ERR_NOT_FOUND', 'config with a suffix');

  // Hostile bursts in parallel: oversized, malformed, certificate-less.
  const junk = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0
        ? fx.call(fx.agent(), 'POST', API.register, {
            headers: { authorization: 'Bearer x', 'content-type': 'application/json' },
            body: 'x'.repeat(MAX_BODY * 2),
          })
        : fx.pull(fx.agent()),
    ),
  );
  t.same([...new Set(junk.map((r) => r.status))].sort(), [401, 413]);

  const after = await fx.pull(c.agent);
  t.equal(after.status, 200, 'a valid config pull still works');
  t.equal(after.body['connectorId'], c.connectorId);
});
