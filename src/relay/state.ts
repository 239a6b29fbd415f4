// Everything a request reads that a reload may change, as one immutable
// snapshot: the configuration and all that is built from it (edge limits,
// token verifier, TLS contexts, identity clients, the embedded provider, the
// per-generation authorization cache). A request takes it once, at admit, and
// uses it to the end; reload builds a complete new one and swaps the reference.
import type { SecureContext } from 'node:tls';
import type { RelayConfig } from '../config/relay-config.js';
import type { EmbeddedIdp } from '../idp/provider.js';
import type { AdminTokenVerifier } from './auth/admin-token.js';
import type { Authorizer } from './auth/authorize.js';
import type { OidcClients } from './auth/oidc-client.js';
import type { ImmediateRateLimit, TrustedProxies } from './edge/limits.js';
import type { TlsStore } from './edge/tls-store.js';

export interface EdgeLimits {
  perIp: ImmediateRateLimit | undefined;
  perApp: ImmediateRateLimit | undefined;
  proxies: TrustedProxies;
}

export type TokenVerifier = Pick<AdminTokenVerifier, 'verify' | 'verifyAccessToken' | 'verifyCaller'>;

export interface RelayState {
  /** 1 for the configuration the relay started with, +1 per successful reload. */
  readonly generation: number;
  readonly config: RelayConfig;
  readonly edge: EdgeLimits;
  readonly verifier: TokenVerifier;
  readonly oidc: OidcClients;
  /** The embedded identity provider (no identity.issuer), once the public listener is up. */
  readonly idp: EmbeddedIdp | undefined;
  readonly authorizer: Authorizer;
  /** Certificates by SNI, and the relay-CA one (with its host list) for every published host. */
  readonly tls:
    | {
        readonly store: TlsStore;
        readonly issued: SecureContext;
        readonly hosts: string;
        readonly keyPem: string;
        readonly certPem: string;
      }
    | undefined;
}
