// HTTPS calls from the connector to the relay's connector API (undici). TLS and
// network failures are classified here so callers act on codes: untrusted relay,
// unreachable relay, or a refusal carrying the relay's own error code.
import { Agent, request, type Dispatcher } from 'undici';
import { ProxyctlError, causeCode, type ErrorCode } from '../errors.js';
import {
  API,
  PROTOCOL_HEADER,
  PROTOCOL_SUPPORTED,
  PROTOCOL_VERSION,
  VERSION_HEADER,
  parsePeerProtocol,
  supportedProtocols,
  type ApiErrorBody,
  type ConnectorConfig,
  type RegisterRequest,
  type RegisterResponse,
  type RenewRequest,
  type RenewResponse,
} from '../protocol/connector-api.js';
import { VERSION } from '../version.js';
import { CLIENT_TLS } from '../crypto/tls-policy.js';

export interface ClientCredentials {
  /** PEM CA bundle to trust; undefined = the system's trust store. */
  caPem: string | undefined;
  certPem?: string;
  keyPem?: string;
  /** What to do when the relay's certificate does not verify (the default suits `connector register`). */
  untrustedRemedy?: string;
}

/** The remedy `connector register` offers for a relay whose certificate does not verify. */
export const REGISTER_UNTRUSTED_REMEDY = "if the relay uses its own CA, pass --relay-ca with the relay's ca.pem";

/** Headers every connector-API call and channel upgrade carries. */
export const connectorHeaders = (): Record<string, string> => ({
  [VERSION_HEADER]: VERSION,
  [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
});

/**
 * The relay's protocol version from its answer's headers: an error when it is one this
 * connector does not speak (or is unreadable). A relay that names none speaks version 1.
 */
export function relayProtocolError(
  raw: string | string[] | number | undefined,
  relayUrl: string,
): ProxyctlError | undefined {
  const peer = parsePeerProtocol(raw);
  if (peer.ok && peer.supported) return undefined;
  const message = !peer.ok
    ? `the relay at ${relayUrl} sent an unreadable protocol version (${peer.error}); check that the URL reaches a proxyctl relay`
    : `the relay at ${relayUrl} speaks protocol version ${peer.version}; this connector (proxyctl ${VERSION}) speaks ${supportedProtocols()}: ${
        peer.version > PROTOCOL_SUPPORTED.max ? 'upgrade the connector' : 'upgrade the relay'
      }`;
  return new ProxyctlError('ERR_PROTOCOL_VERSION', message, {
    details: { relayProtocol: peer.ok ? peer.version : undefined, connectorProtocol: PROTOCOL_SUPPORTED },
  });
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_SIGNATURE_FAILURE',
]);

/** Remote refusals kept under their own code (the others become ERR_RELAY_REFUSED). */
const REMOTE_CODES: ReadonlySet<string> = new Set([
  'ERR_CERT_REVOKED',
  'ERR_CERT_UNKNOWN',
  'ERR_CERT_UNTRUSTED',
  'ERR_PROTOCOL_VERSION',
]);

/** Remote refusals that mean this connector identity is finished. */
export const FATAL_REMOTE: ReadonlySet<string> = new Set([
  'ERR_CERT_REVOKED',
  'ERR_CERT_UNKNOWN',
  'ERR_CERT_UNTRUSTED',
]);

export function tlsOptions(creds: ClientCredentials) {
  return {
    ...(creds.caPem ? { ca: creds.caPem } : {}),
    ...(creds.certPem ? { cert: creds.certPem, key: creds.keyPem } : {}),
    ...CLIENT_TLS,
  };
}

export class RelayClient {
  private readonly agent: Dispatcher;
  private readonly untrustedRemedy: string | undefined;
  /** scheme://host:port of the connector API. */
  readonly origin: string;
  /** TLS options for node:https calls (tunnels). */
  readonly tls: ReturnType<typeof tlsOptions>;

  constructor(
    readonly relayUrl: string,
    creds: ClientCredentials,
  ) {
    this.tls = tlsOptions(creds);
    this.untrustedRemedy = creds.untrustedRemedy;
    this.origin = new URL(relayUrl).origin;
    // Data-plane streams can idle for as long as a user reads slowly: no body/headers timeouts there.
    this.agent = new Agent({
      connect: { ...this.tls, timeout: 10_000 },
      keepAliveTimeout: 30_000,
      headersTimeout: 0,
      bodyTimeout: 0,
      connections: 512,
    });
  }

  /** The pooled mutual-TLS dispatcher for data-plane calls. */
  get dispatcher(): Dispatcher {
    return this.agent;
  }

  register(token: string, body: RegisterRequest): Promise<RegisterResponse> {
    return this.call<RegisterResponse>('POST', API.register, body, { authorization: `Bearer ${token}` });
  }

  fetchConfig(): Promise<ConnectorConfig> {
    return this.call<ConnectorConfig>('GET', API.config);
  }

  renew(csr: string): Promise<RenewResponse> {
    const body: RenewRequest = { csr };
    return this.call<RenewResponse>('POST', API.renew, body);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async call<T>(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<T> {
    const url = new URL(path, this.relayUrl);
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method,
        dispatcher: this.agent,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
        headers: { ...headers, ...connectorHeaders(), ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw classifyNetworkError(err, this.relayUrl, this.untrustedRemedy);
    }
    const incompatible = relayProtocolError(res.headers[PROTOCOL_HEADER], this.relayUrl);
    if (incompatible) {
      await res.body.dump();
      throw incompatible;
    }
    const text = await res.body.text();
    if (res.statusCode >= 200 && res.statusCode < 300) {
      try {
        return JSON.parse(text) as T;
      } catch (err) {
        throw new ProxyctlError('ERR_RELAY_REFUSED', `relay answered ${path} with a body that is not JSON`, {
          cause: err,
        });
      }
    }
    throw refusal(res.statusCode, text, path);
  }
}

export function refusal(status: number, text: string, path: string): ProxyctlError {
  let remote: ApiErrorBody['error'] | undefined;
  try {
    remote = (JSON.parse(text) as ApiErrorBody).error;
  } catch {
    remote = undefined;
  }
  const code = (remote?.code && REMOTE_CODES.has(remote.code) ? remote.code : 'ERR_RELAY_REFUSED') as ErrorCode;
  const message = remote
    ? `relay refused ${path}: ${remote.message} (${remote.code}, request id ${remote.requestId})`
    : `relay answered ${path} with HTTP ${status}`;
  return new ProxyctlError(code, message, {
    status,
    details: { remoteCode: remote?.code, requestId: remote?.requestId },
  });
}

export function classifyNetworkError(
  err: unknown,
  relayUrl: string,
  untrustedRemedy = REGISTER_UNTRUSTED_REMEDY,
): ProxyctlError {
  // undici's socket codes say less than the network error they wrap.
  const code = causeCode(err, (c) => c.startsWith('UND_ERR_SOCKET'));
  if (code && UNTRUSTED.has(code)) {
    return new ProxyctlError(
      'ERR_RELAY_UNTRUSTED',
      `cannot verify the relay's certificate at ${relayUrl} (${code}); ${untrustedRemedy}`,
      { cause: err, details: { tlsCode: code } },
    );
  }
  return new ProxyctlError(
    'ERR_RELAY_UNREACHABLE',
    `cannot reach the relay at ${relayUrl} (${code ?? (err as Error).message})`,
    { cause: err },
  );
}
