// Certificates for app hosts from an ACME (RFC 8555) certificate authority, through
// acme-client: one order per host, validated with HTTP-01 (the HTTP listener asks
// `httpChallenge`) or TLS-ALPN-01 (the public listener asks `alpnSelect`). The account key and each certificate with its key live in the
// store's secrets (wrapped by the master key when there is one), so replicas share
// them: a replica adopts a fresh certificate another one stored instead of ordering.
// Renewal at two thirds of the lifetime (or `renewBefore`); a failed order is logged,
// counted, and retried with exponential backoff. Until a host has a certificate the
// relay-CA certificate keeps serving it.
import { X509Certificate } from 'node:crypto';
import { Agent } from 'node:https';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import * as acme from 'acme-client';
import type { AcmeConfig } from '../../config/acme-config.js';
import type { Clock, Timer } from '../../clock.js';
import { openSecret, type SecretWrap } from '../../crypto/secret-wrap.js';
import { SERVER_TLS } from '../../crypto/tls-policy.js';
import type { Logger } from '../../log.js';
import type { SecretRepo } from '../../store/types.js';

export const ACME_ACCOUNT_SECRET = 'acme-account';
export const acmeCertSecret = (host: string): string => `acme-cert:${host}`;
const aad = (name: string) => `secret:${name}`;

export interface AcmeTiming {
  /** First retry after a failed order; doubled per failure up to `retryMaxMs`. */
  retryMinMs: number;
  retryMaxMs: number;
  /** Challenge types in order of preference (tests); http-01 first, then tls-alpn-01. */
  challengePriority?: readonly ('http-01' | 'tls-alpn-01')[];
}

export const DEFAULT_TIMING: AcmeTiming = { retryMinMs: 60_000, retryMaxMs: 6 * 3_600_000 };

export interface AcmeManagerOptions {
  config: AcmeConfig;
  secrets: SecretRepo;
  wrap: SecretWrap | undefined;
  log: Logger;
  clock: Clock;
  timing?: AcmeTiming;
  /** HTTP-01 is offered only with an HTTP listener (`public.httpListen`); TLS-ALPN-01 always. */
  http: boolean;
  /** The device CA, when client certificates are requested: every TLS context carries it. */
  clientCa?: () => string | undefined;
}

interface Held {
  certPem: string;
  keyPem: string;
  notBefore: number;
  notAfter: number;
  ctx: SecureContext;
}

interface HostState {
  timer: Timer | undefined;
  failures: number;
  running: Promise<void> | undefined;
}

export class AcmeManager {
  private readonly held = new Map<string, Held>();
  private readonly hosts = new Map<string, HostState>();
  private readonly tokens = new Map<string, { host: string; keyAuthorization: string }>();
  /** TLS-ALPN-01 certificates of orders in progress, by host. */
  private readonly alpn = new Map<string, SecureContext>();
  /** The host whose handshake just offered `acme-tls/1` (see alpnSelect). */
  private alpnPending: string | undefined;
  private readonly timing: AcmeTiming;
  private client: acme.Client | undefined;
  private closed = false;
  /** Failed orders since start, by host (the failures metric). */
  readonly failures = new Map<string, number>();

  constructor(private readonly opts: AcmeManagerOptions) {
    this.timing = opts.timing ?? DEFAULT_TIMING;
  }

  /** The `acme:` settings in force (fixed for the life of the process). */
  get config(): AcmeConfig {
    return this.opts.config;
  }

  /** The hosts to hold certificates for (the configuration's, again on every reload). */
  setHosts(hosts: readonly string[]): void {
    if (this.closed) return;
    for (const [host, st] of this.hosts)
      if (!hosts.includes(host)) {
        this.opts.clock.clearTimeout(st.timer);
        this.hosts.delete(host);
        this.held.delete(host);
      }
    for (const host of hosts)
      if (!this.hosts.has(host)) {
        this.hosts.set(host, { timer: undefined, failures: 0, running: undefined });
        this.schedule(host, 0);
      }
  }

  /** The key authorization the HTTP listener answers for `token` on `host`, while its order runs. */
  httpChallenge(token: string, host: string): string | undefined {
    const t = this.tokens.get(token);
    return t && t.host === host ? t.keyAuthorization : undefined;
  }

  /**
   * The public listener's ALPNCallback. OpenSSL runs it before the certificate callback
   * (SNICallback) of the same handshake, in one synchronous step: a handshake offering
   * `acme-tls/1` for a host with a TLS-ALPN-01 challenge in progress is noted here and
   * given the challenge certificate by `challengeContext`, and only that handshake.
   * Any other handshake gets undefined: the listener picks h2 or http/1.1 itself.
   */
  alpnSelect(servername: string | undefined, protocols: readonly string[]): string | undefined {
    const host = servername?.toLowerCase().replace(/\.$/, '');
    this.alpnPending = undefined;
    if (host && protocols.includes('acme-tls/1') && this.alpn.has(host)) {
      this.alpnPending = host;
      // Both callbacks run within the one read that carried the ClientHello: never let the note outlive it.
      setImmediate(() => {
        if (this.alpnPending === host) this.alpnPending = undefined;
      });
      return 'acme-tls/1';
    }
    return undefined;
  }

  /** The TLS-ALPN-01 challenge certificate, for the handshake alpnSelect just chose `acme-tls/1` in. */
  challengeContext(servername: string | undefined): SecureContext | undefined {
    const host = this.alpnPending;
    this.alpnPending = undefined;
    if (!host || servername?.toLowerCase().replace(/\.$/, '') !== host) return undefined;
    return this.alpn.get(host);
  }

  /** The ACME certificate for `servername`, once there is one. */
  contextFor(servername: string | undefined): SecureContext | undefined {
    if (!servername) return undefined;
    return this.held.get(servername.toLowerCase().replace(/\.$/, ''))?.ctx;
  }

  /** Certificates held, for the expiry metric. */
  certificates(): { host: string; certPem: string }[] {
    return [...this.held].map(([host, h]) => ({ host, certPem: h.certPem }));
  }

  /** Another replica may have stored a certificate: adopt what the store holds now. */
  async reloadFromStore(): Promise<void> {
    for (const host of this.hosts.keys()) {
      const stored = await this.load(host);
      if (stored && stored.notAfter > (this.held.get(host)?.notAfter ?? 0)) {
        this.held.set(host, stored);
        const st = this.hosts.get(host);
        if (st && !st.running) this.schedule(host, this.dueAt(stored) - this.opts.clock.now());
      }
    }
  }

  /** Runs the check for `host` now (tests, and a renewal the clock says is due). */
  checkNow(host: string): Promise<void> {
    const st = this.hosts.get(host);
    if (!st) return Promise.resolve();
    this.opts.clock.clearTimeout(st.timer);
    st.timer = undefined;
    st.running ??= this.check(host).finally(() => (st.running = undefined));
    return st.running;
  }

  close(): void {
    this.closed = true;
    for (const st of this.hosts.values()) this.opts.clock.clearTimeout(st.timer);
    this.hosts.clear();
  }

  private schedule(host: string, delayMs: number): void {
    const st = this.hosts.get(host);
    if (!st || this.closed) return;
    this.opts.clock.clearTimeout(st.timer);
    // Node's timers hold at most 2^31-1 ms (24.8 days): a longer wait is taken in steps.
    const ms = Math.min(Math.max(0, delayMs), 2 ** 31 - 1);
    st.timer = this.opts.clock.setTimeout(() => void this.checkNow(host), ms);
    st.timer.unref();
  }

  /** When a certificate is due for renewal: `renewBefore` before expiry, else at two thirds of its lifetime. */
  private dueAt(h: Held): number {
    const before = this.opts.config.renewBeforeMs;
    return before !== undefined ? h.notAfter - before : h.notBefore + ((h.notAfter - h.notBefore) * 2) / 3;
  }

  private async check(host: string): Promise<void> {
    const st = this.hosts.get(host);
    if (!st || this.closed) return;
    const now = () => this.opts.clock.now();
    try {
      // What the store holds (this replica's earlier order, or another replica's) comes first.
      const stored = await this.load(host);
      if (this.hosts.get(host) !== st) return;
      if (stored && stored.notAfter > (this.held.get(host)?.notAfter ?? 0)) this.held.set(host, stored);
      const current = this.held.get(host);
      if (current && this.dueAt(current) > now()) {
        st.failures = 0;
        return this.schedule(host, this.dueAt(current) - now());
      }
      const issued = await this.order(host);
      // The host left the configuration while its order ran: nothing to install.
      if (this.hosts.get(host) !== st) return;
      await this.opts.secrets.put(
        acmeCertSecret(host),
        this.seal(acmeCertSecret(host), JSON.stringify({ certPem: issued.certPem, keyPem: issued.keyPem })),
        'acme',
      );
      this.held.set(host, issued);
      st.failures = 0;
      this.opts.log.info(
        { host, not_after: new Date(issued.notAfter).toISOString() },
        'ACME certificate obtained and installed',
      );
      this.schedule(host, this.dueAt(issued) - now());
    } catch (err) {
      if (this.closed) return;
      st.failures++;
      this.failures.set(host, (this.failures.get(host) ?? 0) + 1);
      const delay = Math.min(this.timing.retryMaxMs, this.timing.retryMinMs * 2 ** (st.failures - 1));
      this.opts.log.error(
        { host, err: (err as Error).message, failures: st.failures, retry_in_ms: delay },
        this.held.has(host)
          ? 'ACME renewal failed; the current certificate stays'
          : 'ACME order failed; the relay-CA certificate keeps serving this host',
      );
      this.schedule(host, delay);
    }
  }

  private async order(host: string): Promise<Held> {
    const client = await this.accountClient();
    const keyPem = (await acme.crypto.createPrivateEcdsaKey()).toString();
    const [, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] }, keyPem);
    const mine: string[] = [];
    try {
      const certPem = await client.auto({
        csr,
        email: this.opts.config.email,
        termsOfServiceAgreed: true,
        // The certificate authority validates; a self-check from here would go through our own resolver.
        skipChallengeVerification: true,
        challengePriority: [
          ...(this.timing.challengePriority ?? (this.opts.http ? ['http-01', 'tls-alpn-01'] : ['tls-alpn-01'])),
        ],
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          const name = authz.identifier.value.toLowerCase();
          this.opts.log.info({ host: name, challenge: challenge.type }, 'ACME challenge ready');
          if ((challenge.type as string) === 'tls-alpn-01') {
            const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(
              authz,
              keyAuthorization,
              await acme.crypto.createPrivateEcdsaKey(),
            );
            this.alpn.set(name, createSecureContext({ key: alpnKey, cert: alpnCert }));
            return;
          }
          if (challenge.type !== 'http-01') throw new Error(`unsupported challenge ${challenge.type}`);
          this.tokens.set(challenge.token, { host: name, keyAuthorization });
          mine.push(challenge.token);
        },
        challengeRemoveFn: async (authz, challenge) => {
          this.tokens.delete(challenge.token);
          if ((challenge.type as string) === 'tls-alpn-01') this.alpn.delete(authz.identifier.value.toLowerCase());
        },
      });
      return this.held_(certPem, keyPem);
    } finally {
      for (const t of mine) this.tokens.delete(t);
      this.alpn.delete(host);
    }
  }

  private held_(certPem: string, keyPem: string): Held {
    const leaf = new X509Certificate(certPem);
    const clientCa = this.opts.clientCa?.();
    return {
      certPem,
      keyPem,
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      ctx: createSecureContext({ cert: certPem, key: keyPem, ...SERVER_TLS, ...(clientCa ? { ca: clientCa } : {}) }),
    };
  }

  private async load(host: string): Promise<Held | undefined> {
    const name = acmeCertSecret(host);
    const stored = await this.opts.secrets.get(name);
    if (stored === undefined) return undefined;
    try {
      const { certPem, keyPem } = JSON.parse(openSecret(stored, aad(name), this.opts.wrap)) as {
        certPem: string;
        keyPem: string;
      };
      const h = this.held_(certPem, keyPem);
      return new X509Certificate(certPem).checkHost(host) ? h : undefined;
    } catch (err) {
      this.opts.log.warn({ host, err: (err as Error).message }, 'the stored ACME certificate is not usable; ordering');
      return undefined;
    }
  }

  private seal(name: string, value: string): string {
    return this.opts.wrap ? this.opts.wrap.wrap(value, aad(name)) : value;
  }

  /** The ACME client with the shared account key (made by whichever replica gets there first). */
  private async accountClient(): Promise<acme.Client> {
    if (this.client) return this.client;
    let stored = await this.opts.secrets.get(ACME_ACCOUNT_SECRET);
    if (stored === undefined) {
      const fresh = (await acme.crypto.createPrivateEcdsaKey()).toString();
      stored = await this.opts.secrets.putIfAbsent(ACME_ACCOUNT_SECRET, this.seal(ACME_ACCOUNT_SECRET, fresh));
    }
    const accountKey = openSecret(stored, aad(ACME_ACCOUNT_SECRET), this.opts.wrap);
    // acme-client retries a failed request itself (up to 5 times, seconds apart): the manager's own
    // backoff retries the whole order instead, so one failure is logged and counted once, at once.
    (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number } }).acmeSettings!.retryMaxAttempts = 0;
    const caPem = this.opts.config.caPem;
    if (caPem) {
      // acme-client's requests all go through one axios instance: the directory's CA is added there.
      acme.axios.defaults.httpsAgent = new Agent({ ca: [...rootCertificates, caPem], keepAlive: false });
    }
    this.client = new acme.Client({
      directoryUrl: this.opts.config.directory.href,
      accountKey,
      backoffAttempts: 5,
      backoffMin: 500,
      backoffMax: 5_000,
    });
    return this.client;
  }
}
