// Which certificate the public listener presents, chosen by SNI: an app's own
// certificate (custom domain) for its exact host, else the most specific
// wildcard app certificate, else the certificate the relay CA issued for every
// published host. Rebuilt from the config on reload (files are re-read then).
import { createSecureContext, type SecureContext } from 'node:tls';
import type { AppConfig } from '../../config/relay-config.js';
import { SERVER_TLS } from '../../crypto/tls-policy.js';

export class TlsStore {
  private readonly exact = new Map<string, SecureContext>();
  private readonly wildcard: { suffix: string; ctx: SecureContext }[] = [];

  /** clientCa: the device CA, when client certificates are requested (verified against it only). */
  constructor(
    private readonly fallback: SecureContext,
    apps: readonly AppConfig[],
    clientCa?: string,
  ) {
    for (const app of apps) {
      if (!app.tls) continue;
      const ctx = createSecureContext({
        cert: app.tls.certPem,
        key: app.tls.keyPem,
        ...SERVER_TLS,
        ...(clientCa ? { ca: clientCa } : {}),
      });
      if (app.host.startsWith('*.')) this.wildcard.push({ suffix: app.host.slice(1), ctx });
      else this.exact.set(app.host, ctx);
    }
    this.wildcard.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  contextFor(servername: string | undefined): SecureContext {
    if (!servername) return this.fallback;
    const host = servername.toLowerCase().replace(/\.$/, '');
    const own = this.exact.get(host);
    if (own) return own;
    for (const w of this.wildcard) {
      if (host.endsWith(w.suffix) && !host.slice(0, -w.suffix.length).includes('.')) return w.ctx;
    }
    return this.fallback;
  }
}
