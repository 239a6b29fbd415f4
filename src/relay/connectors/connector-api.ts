// The connector API listener: TLS with the relay's server certificate, asking
// every peer for a client certificate. Registration is the one call that needs
// none (it carries an administrator token); config pull, renewal and the
// control channel all require a valid, unrevoked certificate from the relay CA.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import type { RelayCa } from '../../crypto/ca.js';
import { ProxyctlError } from '../../errors.js';
import { systemClock, type Clock, type Timer } from '../../clock.js';
import { refusalOf, renderRaw } from '../../http/render.js';
import type { Logger } from '../../log.js';
import {
  API,
  CLOSE,
  MAX_CONTROL_MESSAGE,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  VERSION_HEADER,
  agreedProtocol,
  parseConnectorMessage,
  type IdentityInfo,
  type RenewRequest,
  type ReplicaInfo,
  type RenewResponse,
} from '../../protocol/connector-api.js';
import type { AdminTokenVerifier } from '../auth/admin-token.js';
import { Channel, type ChannelRegistry } from './channels.js';
import { authenticateConnector } from './client-auth.js';
import { buildConnectorConfig, groupConfigVersion } from './connector-config.js';
import type { RelayConfig } from '../../config/relay-config.js';
import { field, readJsonBody, sendError, sendJson } from './respond.js';
import { parseDataPath, type DataPlane } from './data-plane.js';
import { issueConnectorIdentity } from './registration.js';
import { checkPeerProtocol } from './protocol-version.js';
import type { Store } from '../../store/index.js';
import { SERVER_TLS } from '../../crypto/tls-policy.js';
import { frameBytes, frameText } from '../../net/frames.js';

export interface ConnectorApiDeps {
  config: () => RelayConfig;
  store: Store;
  ca: RelayCa;
  verifier: Pick<AdminTokenVerifier, 'verify'>;
  channels: ChannelRegistry;
  dataPlane: DataPlane;
  /** Issuer and CLI client for administrators' tokens. */
  identityInfo: () => IdentityInfo;
  /** The live relay replicas (this one included), told to connectors in the config and its version. */
  replicas: () => ReplicaInfo[];
  log: Logger;
  now?: () => number;
  /** Grace-period timers; Node's by default. */
  clock?: Clock;
  /** How long a renewed connector's previous certificate stays valid if the new one is not used first. */
  renewalGraceMs?: number;
}

const MAX_CSR = 16 * 1024;
/** Long enough for a connector to store its new certificate and reconnect; short enough that a leaked old key is soon useless. */
export const RENEWAL_GRACE_MS = 10 * 60_000;

export function createConnectorApi(deps: ConnectorApiDeps, tls: { certPem: string; keyPem: string }): Server {
  const clock = deps.clock ?? systemClock;
  const now = deps.now ?? (() => clock.now());
  const server = createServer({
    key: tls.keyPem,
    cert: tls.certPem,
    ca: deps.ca.certPem,
    requestCert: true,
    rejectUnauthorized: false, // registration has no certificate yet; checked per route
    ...SERVER_TLS,
    headersTimeout: 10_000,
    requestTimeout: 0, // response bodies stream for as long as the user downloads
    maxHeaderSize: 64 * 1024, // response headers travel encoded in one request header
  });
  server.keepAliveTimeout = 30_000;
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CONTROL_MESSAGE });
  const graceMs = deps.renewalGraceMs ?? RENEWAL_GRACE_MS;
  const graceTimers = new Set<Timer>();
  server.on('close', () => {
    for (const timer of graceTimers) clock.clearTimeout(timer);
    graceTimers.clear();
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const requestId = randomUUID();
    // Every answer names the protocol this relay speaks, so a connector can refuse it clearly.
    res.setHeader(PROTOCOL_HEADER, String(PROTOCOL_VERSION));
    handle(req, res, requestId).catch((err: unknown) => sendError(res, err, requestId, deps.log));
  });

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://relay.invalid');
    const route = `${req.method} ${url.pathname}`;
    checkPeerProtocol(req);
    const limit = deps.config().connectorApi.maxBodyBytes;
    const data = parseDataPath(url.pathname, API.requests);
    if (data) {
      const who = await authenticateConnector(req.socket as TLSSocket, deps.store, now());
      return deps.dataPlane.handle(req, res, who, data.id, data.action);
    }
    switch (route) {
      case `POST ${API.register}`:
        return register(req, res, requestId, limit);
      case `GET ${API.config}`: {
        const id = await authenticateConnector(req.socket as TLSSocket, deps.store, now());
        await deps.store.connectors.touch(id.connector.id, versionOf(req), now());
        return sendJson(
          res,
          200,
          buildConnectorConfig(deps.config(), id.connector, id.certificate, deps.replicas()),
          requestId,
        );
      }
      case `GET ${API.identity}`:
        req.resume();
        return sendJson(res, 200, deps.identityInfo(), requestId);
      case `POST ${API.renew}`:
        return renew(req, res, requestId, limit);
      default:
        req.resume();
        if (Object.values(API).includes(url.pathname as never)) {
          throw new ProxyctlError('ERR_METHOD_NOT_ALLOWED', `${req.method} is not allowed on ${url.pathname}`, {
            status: 405,
          });
        }
        throw new ProxyctlError('ERR_NOT_FOUND', `no such endpoint: ${url.pathname}`, { status: 404 });
    }
  }

  async function register(req: IncomingMessage, res: ServerResponse, requestId: string, limit: number): Promise<void> {
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer ([^\s]+)$/i.exec(auth);
    if (!m) {
      req.resume();
      throw new ProxyctlError(
        'ERR_TOKEN_MISSING',
        'registration needs an administrator token (Authorization: Bearer)',
        { status: 401 },
      );
    }
    const body = await readJsonBody(req, limit);
    const admin = await deps.verifier.verify(m[1]!);
    const out = await issueConnectorIdentity(
      { ca: deps.ca, store: deps.store, config: deps.config, log: deps.log, now },
      {
        csr: field(body, 'csr', MAX_CSR),
        name: field(body, 'name', 64),
        group: field(body, 'group', 63, 'default'),
        version: typeof body['version'] === 'string' ? body['version'] : 'unknown',
        ...(body['idempotencyKey'] !== undefined ? { idempotencyKey: field(body, 'idempotencyKey', 128) } : {}),
      },
      `admin:${admin.subject}`,
      requestId,
      m[1],
    );
    sendJson(res, 201, out, requestId);
  }

  async function renew(req: IncomingMessage, res: ServerResponse, requestId: string, limit: number): Promise<void> {
    const id = await authenticateConnector(req.socket as TLSSocket, deps.store, now());
    const body = await readJsonBody(req, limit);
    const { csr }: RenewRequest = { csr: field(body, 'csr', MAX_CSR) };
    const issued = await deps.ca.signConnectorCsr(csr, {
      connectorId: id.connector.id,
      lifetimeMs: deps.config().connectors.certificateLifetimeMs,
    });
    const issuedAt = now();
    await deps.store.connectors.recordRenewal({
      connectorId: id.connector.id,
      oldSerial: id.certificate.serial,
      serial: issued.serial,
      issuedAt,
      notAfter: issued.notAfter.getTime(),
      graceUntil: issuedAt + graceMs,
    });
    closeSupersededChannelsLater(id.connector.id);
    deps.log.info(
      {
        request_id: requestId,
        connector_id: id.connector.id,
        serial: issued.serial,
        old_serial: id.certificate.serial,
      },
      'connector certificate renewed',
    );
    const out: RenewResponse = {
      connectorId: id.connector.id,
      certificate: issued.certPem,
      caCertificate: deps.ca.certPem,
      serial: issued.serial,
      notAfter: issued.notAfter.toISOString(),
    };
    sendJson(res, 200, out, requestId);
  }

  /** Channels a renewal superseded: true when the certificate that opened it was replaced (retired, or in its grace). */
  async function superseded(ch: Channel): Promise<boolean> {
    return ((await deps.store.connectors.getCertificate(ch.serial))?.revokedAt ?? null) !== null;
  }

  /**
   * When the grace ends, channels still open with a replaced certificate are closed
   * with a code that tells the connector to reconnect (with its new certificate), not
   * to give up. A connector that rolls its channels itself has none left by then.
   */
  function closeSupersededChannelsLater(connectorId: string): void {
    const timer = clock.setTimeout(() => {
      graceTimers.delete(timer);
      closeSuperseded(connectorId).catch((err: unknown) =>
        deps.log.warn({ connector_id: connectorId, err: (err as Error).message }, 'cannot check replaced channels'),
      );
    }, graceMs);
    timer.unref();
    graceTimers.add(timer);
  }

  async function closeSuperseded(connectorId: string): Promise<void> {
    for (const ch of deps.channels.byConnector(connectorId)) {
      if (!(await superseded(ch))) continue;
      deps.log.info(
        { connector_id: connectorId, channel_id: ch.id, serial: ch.serial },
        'closing a channel opened with a replaced certificate',
      );
      ch.ws.close(CLOSE.replaced, 'certificate replaced by a renewal');
      clock.setTimeout(() => ch.ws.terminate(), 1000).unref();
    }
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void upgrade(req, socket, head);
  });

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const requestId = randomUUID();
    socket.on('error', () => socket.destroy());
    try {
      const url = new URL(req.url ?? '/', 'https://relay.invalid');
      checkPeerProtocol(req);
      const data = parseDataPath(url.pathname, API.requests);
      if (data?.action === 'upgrade') {
        const who = await authenticateConnector(req.socket as TLSSocket, deps.store, now());
        deps.dataPlane.tunnel(req, socket, head, who, data.id);
        return;
      }
      if (url.pathname !== API.channel)
        throw new ProxyctlError('ERR_NOT_FOUND', `no such endpoint: ${url.pathname}`, { status: 404 });
      const id = await authenticateConnector(req.socket as TLSSocket, deps.store, now());
      // The connector reconnected with its current certificate: send nothing new on channels of a replaced one.
      const replaced =
        id.certificate.revokedAt === null ? await supersededChannels(id.connector.id) : ([] as Channel[]);
      wss.handleUpgrade(req, socket, head, (ws) => {
        const version = versionOf(req) ?? 'unknown';
        // A channel lives no longer than its certificate is accepted (a replaced one: until its grace ends).
        const until = Math.min(id.certificate.notAfter, id.certificate.revokedAt ?? Infinity);
        const protocol = agreedProtocol(req.headers[PROTOCOL_HEADER]);
        const ch = new Channel(
          ws,
          id.connector.id,
          id.connector.group,
          id.certificate.serial,
          version,
          until,
          protocol,
        );
        for (const old of replaced) old.draining = true;
        ws.on('message', (data, isBinary) => {
          // A frame outside the contract is a protocol error: the channel is closed, not guessed at.
          const error = isBinary
            ? deps.dataPlane.inlineResponse(ch.connectorId, frameBytes(data), ch.binary)
            : controlMessage(ch, frameText(data));
          if (error) {
            deps.log.warn(
              { connector_id: ch.connectorId, channel_id: ch.id, close_code: CLOSE.protocol, error },
              'connector sent an invalid frame; closing the channel',
            );
            ws.close(CLOSE.protocol, 'invalid frame');
            clock.setTimeout(() => ws.terminate(), 1000).unref();
          }
        });
        ws.on('error', (err) =>
          deps.log.warn({ connector_id: ch.connectorId, channel_id: ch.id, err: err.message }, 'channel error'),
        );
        deps.channels.add(ch);
        deps.store.connectors
          .touch(id.connector.id, version, now())
          .catch((err: unknown) =>
            deps.log.warn({ connector_id: id.connector.id, err: (err as Error).message }, 'cannot record channel'),
          );
        ch.send({
          type: 'hello',
          connectorId: id.connector.id,
          channelId: ch.id,
          configVersion: groupConfigVersion(deps.config(), id.connector.group, deps.replicas()),
        });
      });
    } catch (err) {
      const e = refusalOf(err);
      deps.log.warn({ request_id: requestId, code: e.code, status: e.status }, `channel refused: ${e.message}`);
      renderRaw(socket, e, requestId, { json: true, headers: { [PROTOCOL_HEADER]: String(PROTOCOL_VERSION) } });
    }
  }

  async function supersededChannels(connectorId: string): Promise<Channel[]> {
    const out: Channel[] = [];
    for (const ch of deps.channels.byConnector(connectorId)) if (await superseded(ch)) out.push(ch);
    return out;
  }

  /** Acts on a text frame; returns what is wrong with it, if anything. */
  function controlMessage(ch: Channel, text: string): string | undefined {
    const parsed = parseConnectorMessage(text);
    if (!parsed.ok) return parsed.error;
    // 'draining' is the only message a connector sends.
    ch.draining = true;
    deps.log.info({ connector_id: ch.connectorId, channel_id: ch.id }, 'connector draining');
    return undefined;
  }

  // The 101 of a control channel names this relay's protocol too.
  wss.on('headers', (headers) => headers.push(`${PROTOCOL_HEADER}: ${PROTOCOL_VERSION}`));

  server.on('tlsClientError', (err: Error) =>
    deps.log.debug({ err: err.message }, 'connector API TLS handshake failed'),
  );
  return server;
}

function versionOf(req: IncomingMessage): string | null {
  const v = req.headers[VERSION_HEADER];
  return typeof v === 'string' ? v.slice(0, 64) : null;
}
