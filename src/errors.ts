// One error hierarchy for the whole product: a stable `code` that tests and
// scripts match on, an HTTP `status` where one applies, and the wrapped `cause`.

export type ErrorCode =
  | 'ERR_CONFIG_INVALID'
  | 'ERR_CONFIG_READ'
  | 'ERR_USAGE'
  | 'ERR_TOKEN_MISSING'
  | 'ERR_TOKEN_INVALID'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_NOT_YET_VALID'
  | 'ERR_TOKEN_ISSUER'
  | 'ERR_TOKEN_AUDIENCE'
  | 'ERR_TOKEN_SIGNATURE'
  | 'ERR_TOKEN_ALG'
  | 'ERR_TOKEN_NOT_ADMIN'
  | 'ERR_TOKEN_TYPE'
  | 'ERR_IDP_UNAVAILABLE'
  | 'ERR_IDP_INSECURE'
  | 'ERR_IDP_ISSUER_MISMATCH'
  | 'ERR_CSR_INVALID'
  | 'ERR_CSR_SIGNATURE'
  | 'ERR_CSR_WEAK_KEY'
  | 'ERR_CERT_REQUIRED'
  | 'ERR_CERT_UNTRUSTED'
  | 'ERR_CERT_REVOKED'
  | 'ERR_CERT_UNKNOWN'
  | 'ERR_CONNECTOR_NOT_FOUND'
  | 'ERR_CONNECTOR_NAME_TAKEN'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_BAD_REQUEST'
  | 'ERR_APP_NOT_FOUND'
  | 'ERR_PATH_AMBIGUOUS'
  | 'ERR_MISDIRECTED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_HEADERS_TOO_LARGE'
  | 'ERR_REQUEST_TIMEOUT'
  | 'ERR_TOO_MANY_CONNECTIONS'
  | 'ERR_SIGNIN_UNAVAILABLE'
  | 'ERR_SIGNIN_PROVIDER'
  | 'ERR_SIGNIN_STATE'
  | 'ERR_SIGNIN_CODE'
  | 'ERR_SIGNIN_TOKEN'
  | 'ERR_SIGNIN_REQUIRED'
  | 'ERR_NOT_ASSIGNED'
  | 'ERR_POLICY_DENIED'
  | 'ERR_NO_CONNECTOR'
  | 'ERR_CONNECTOR_LOST'
  | 'ERR_BACKEND_UNREACHABLE'
  | 'ERR_BACKEND_TIMEOUT'
  | 'ERR_BACKEND_FAILED'
  | 'ERR_APP_UNKNOWN'
  | 'ERR_REQUEST_NOT_FOUND'
  | 'ERR_NOT_FOUND'
  | 'ERR_CONFLICT'
  | 'ERR_CONNECTOR_NOT_REVOKED'
  | 'ERR_FORBIDDEN'
  | 'ERR_READ_ONLY'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_CSRF'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_RELAY_UNREACHABLE'
  | 'ERR_RELAY_UNTRUSTED'
  | 'ERR_RELAY_REFUSED'
  | 'ERR_PROTOCOL_VERSION'
  | 'ERR_STATE_INVALID'
  | 'ERR_STORE'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_SHUTTING_DOWN'
  | 'ERR_MASTER_KEY'
  | 'ERR_INTERNAL';

export interface ProxyctlErrorOptions {
  status?: number;
  cause?: unknown;
  /** Extra machine-readable fields rendered alongside the message. */
  details?: Record<string, unknown>;
}

export class ProxyctlError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: ProxyctlErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyctlError';
    this.code = code;
    this.status = options.status ?? 500;
    this.details = options.details;
  }
}

export function isProxyctlError(err: unknown, code?: ErrorCode): err is ProxyctlError {
  return err instanceof ProxyctlError && (code === undefined || err.code === code);
}

/** Wraps anything thrown by a library at the point it enters our code. */
export function wrapError(err: unknown, code: ErrorCode, message: string, status = 500): ProxyctlError {
  if (err instanceof ProxyctlError) return err;
  return new ProxyctlError(code, message, { status, cause: err });
}

/**
 * The first string `code` on an error or its causes (at most five deep): Node's and
 * undici's codes (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT…) sit on a cause as often as on the
 * error itself. `skip` passes over codes that say less than one further down.
 */
export function causeCode(err: unknown, skip?: (code: string) => boolean): string | undefined {
  let e = err as { code?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 5; depth++) {
    if (typeof e.code === 'string' && !skip?.(e.code)) return e.code;
    e = e.cause as typeof e;
  }
  return undefined;
}
