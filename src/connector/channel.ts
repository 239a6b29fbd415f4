// One outbound control channel (WebSocket over mutual TLS) to the relay. It
// watches the relay's heartbeat and reports how it ended so the supervisor can
// choose between reconnecting and stopping for good.
import WebSocket from 'ws';
import type { IncomingMessage } from 'node:http';
import { ProxyctlError } from '../errors.js';
import type { Logger } from '../log.js';
import { frameBytes, frameText } from '../net/frames.js';
import { systemClock, type Clock, type Timer } from '../clock.js';
import {
  API,
  CLOSE,
  MAX_CONTROL_MESSAGE,
  PROTOCOL_BINARY_FRAMES,
  PROTOCOL_HEADER,
  PROTOCOL_IMPLIED,
  agreedProtocol,
  encodeInlineResponse,
  parseRelayMessage,
  type InlineResponseHead,
  type ConnectorMessage,
  type RelayMessage,
} from '../protocol/connector-api.js';
import { sendBatched } from '../net/batching.js';
import { decodeRequestFrame, encodeResponseFrame } from '../protocol/binary-frames.js';
import {
  classifyNetworkError,
  connectorHeaders,
  refusal,
  relayProtocolError,
  tlsOptions,
  type ClientCredentials,
} from './relay-client.js';

/** 'error': ended by a classified error (revoked, unknown, untrusted relay, protocol version); the supervisor decides what is final. */
export type ChannelEnd =
  { kind: 'closed'; code: number; reason: string; wasOpen: boolean } | { kind: 'fatal'; error: ProxyctlError };

export interface ChannelHandlers {
  onOpen(): void;
  onMessage(msg: RelayMessage, channel: ControlChannel): void;
}

export class ControlChannel {
  private ws: WebSocket | undefined;
  private deadTimer: Timer | undefined;
  private opened = false;
  /**
   * The protocol version this channel speaks, from the relay's 101 (agreedProtocol). From 2
   * on, requests arrive and inline responses leave as binary frames (binary-frames.ts).
   */
  private protocol = PROTOCOL_IMPLIED;

  constructor(
    private readonly relayUrl: string,
    private readonly creds: ClientCredentials,
    private readonly heartbeatMs: number,
    private readonly log: Logger,
    private readonly handlers: ChannelHandlers,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Connects and resolves when the channel ends, however it ends. */
  run(): Promise<ChannelEnd> {
    return new Promise((resolve) => {
      const url = new URL(API.channel, this.relayUrl);
      url.protocol = 'wss:';
      const ws = new WebSocket(url, {
        ...tlsOptions(this.creds),
        headers: connectorHeaders(),
        handshakeTimeout: 10_000,
        perMessageDeflate: false,
        maxPayload: MAX_CONTROL_MESSAGE,
        // Masking protects intermediaries' caches from script in browsers; this channel is
        // mutual TLS between two programs, so frames go unmasked (an all-zero key: ws then
        // skips the XOR on both ends, which cost up to 64 KiB of work per inline response).
        generateMask: (mask: Buffer) => void mask.fill(0),
      });
      this.ws = ws;
      let settled = false;
      const finish = (end: ChannelEnd) => {
        if (settled) return;
        settled = true;
        this.clearDeadTimer();
        resolve(end);
      };

      ws.on('upgrade', (res: IncomingMessage) => {
        // A relay that answers the upgrade but speaks a protocol this connector does not.
        const incompatible = relayProtocolError(res.headers[PROTOCOL_HEADER], this.relayUrl);
        if (!incompatible) {
          this.protocol = agreedProtocol(res.headers[PROTOCOL_HEADER]);
          return;
        }
        finish({ kind: 'fatal', error: incompatible });
        ws.terminate();
      });
      ws.on('open', () => {
        if (settled) return;
        this.opened = true;
        this.armDeadTimer();
        this.handlers.onOpen();
      });
      ws.on('ping', () => this.armDeadTimer());
      ws.on('message', (data, isBinary) => {
        this.armDeadTimer();
        // The relay sends only messages of the contract (binary ones only requests, and only
        // from protocol 2); anything else means the two ends disagree, and acting on a guess
        // could misroute a user's request.
        const parsed = !isBinary
          ? parseRelayMessage(frameText(data))
          : this.protocol >= PROTOCOL_BINARY_FRAMES
            ? decodeRequestFrame(frameBytes(data))
            : { ok: false as const, error: 'binary frame' };
        if (!parsed.ok) {
          this.log.warn(
            { close_code: CLOSE.protocol, error: parsed.error },
            'relay sent an invalid control message; closing the channel',
          );
          ws.close(CLOSE.protocol, 'invalid control message');
          this.clock.setTimeout(() => ws.terminate(), 2000).unref();
          return;
        }
        const msg = parsed.message;
        if (msg.type === 'revoked') {
          finish({
            kind: 'fatal',
            error: new ProxyctlError('ERR_CERT_REVOKED', `the relay revoked this connector: ${msg.reason}`),
          });
          ws.terminate();
          return;
        }
        this.handlers.onMessage(msg, this);
      });
      ws.on('unexpected-response', (_req, res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const err = refusal(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), API.channel);
          if (err.code !== 'ERR_RELAY_REFUSED') finish({ kind: 'fatal', error: err });
          else finish({ kind: 'closed', code: res.statusCode ?? 0, reason: err.message, wasOpen: false });
          ws.terminate();
        });
        res.on('error', () => finish({ kind: 'closed', code: 0, reason: 'refused', wasOpen: false }));
      });
      ws.on('error', (err) => {
        const e = classifyNetworkError(err, this.relayUrl, this.creds.untrustedRemedy);
        if (!this.opened) this.log.debug({ code: e.code }, e.message);
        // Reported with its code: the supervisor logs it loudly and retries.
        if (e.code === 'ERR_RELAY_UNTRUSTED') finish({ kind: 'fatal', error: e });
      });
      ws.on('close', (code, reason) => {
        const text = reason.toString();
        if (code === CLOSE.revoked || code === CLOSE.unknown) {
          finish({
            kind: 'fatal',
            error: new ProxyctlError(
              code === CLOSE.revoked ? 'ERR_CERT_REVOKED' : 'ERR_CERT_UNKNOWN',
              `the relay closed the channel: ${text || 'certificate revoked'}`,
            ),
          });
        }
        finish({ kind: 'closed', code, reason: text, wasOpen: this.opened });
      });
    });
  }

  /** Sends a small complete response in one binary frame; false when the channel is not open. */
  sendResponse(head: InlineResponseHead, body: Buffer): boolean {
    const ws = this.ws;
    if (ws?.readyState !== WebSocket.OPEN) return false;
    const frame =
      this.protocol >= PROTOCOL_BINARY_FRAMES ? encodeResponseFrame(head, body) : encodeInlineResponse(head, body);
    sendBatched(ws, frame, true);
    return true;
  }

  sendDraining(): void {
    const msg: ConnectorMessage = { type: 'draining' };
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  close(code: number = CLOSE.shutdown, reason = 'connector shutting down'): void {
    this.clearDeadTimer();
    const ws = this.ws;
    if (!ws) return;
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(code, reason);
      this.clock.setTimeout(() => ws.terminate(), 2000).unref();
    } else {
      ws.terminate();
    }
  }

  /** No ping or message for 2.5 heartbeats: the path is dead even if TCP says otherwise. */
  private armDeadTimer(): void {
    // Every message re-arms it: restart the timer there is rather than make a new one.
    if (this.deadTimer) {
      this.deadTimer.refresh();
      return;
    }
    this.deadTimer = this.clock.setTimeout(
      () => {
        this.log.warn({ heartbeat_ms: this.heartbeatMs }, 'no heartbeat from the relay; reconnecting');
        this.ws?.terminate();
      },
      Math.round(this.heartbeatMs * 2.5),
    );
    this.deadTimer.unref();
  }

  private clearDeadTimer(): void {
    this.clock.clearTimeout(this.deadTimer);
    this.deadTimer = undefined;
  }
}
