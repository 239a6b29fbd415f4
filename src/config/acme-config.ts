// `acme:`: certificates for app hosts from an ACME (RFC 8555) certificate authority,
// validated with HTTP-01 on `public.httpListen` and TLS-ALPN-01 on `public.listen`.
// Apps with their own `tls` keep it; wildcard hosts need a certificate file (no DNS-01).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { isLoopbackHost } from '../net/address.js';
import { Validation, bool, duration, join, obj, str, url } from './schema.js';

export interface AcmeConfig {
  /** The directory URL of the certificate authority. */
  readonly directory: URL;
  readonly email: string;
  /** 'all': every app host without a certificate file (wildcards excepted); else these hosts. */
  readonly hosts: 'all' | readonly string[];
  /** Extra CA certificates (PEM) trusted for the directory's HTTPS (a test CA such as Pebble's). */
  readonly caPem: string | undefined;
  /** Renew this long before expiry; undefined: when two thirds of the lifetime have passed. */
  readonly renewBeforeMs: number | undefined;
}

const HOST = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/;

export function buildAcme(
  v: Validation,
  raw: unknown,
  baseDir: string,
  apps: readonly { host: string; tls: unknown }[],
): AcmeConfig | undefined {
  if (raw === undefined) return undefined;
  const o = obj(v, 'acme', raw, ['directory', 'email', 'agreeTerms', 'hosts', 'caFile', 'renewBefore']);
  if (!o) return undefined;
  const directory = url(v, 'acme.directory', o['directory'], ['https', 'http']);
  if (directory && directory.protocol === 'http:' && !isLoopbackHost(directory.hostname))
    v.fail('acme.directory', o['directory'], 'an https URL (http is accepted only on loopback addresses)');
  const email = str(v, 'acme.email', o['email'], undefined, /^[^@\s,]+@[^@\s,]+\.[^@\s,]+$/, 'an e-mail address');
  if (!bool(v, 'acme.agreeTerms', o['agreeTerms'], false))
    v.fail('acme.agreeTerms', o['agreeTerms'], "true (you agree to the certificate authority's terms of service)");
  let hosts: AcmeConfig['hosts'] = 'all';
  const rawHosts = o['hosts'];
  if (rawHosts !== undefined && rawHosts !== 'all') {
    if (!Array.isArray(rawHosts) || rawHosts.length === 0) {
      v.fail('acme.hosts', rawHosts, '"all" or a list of app host names');
    } else {
      const list: string[] = [];
      rawHosts.forEach((h, i) => {
        const p = join('acme.hosts', i);
        if (typeof h !== 'string') return void v.fail(p, h, 'a host name');
        const host = h.toLowerCase();
        if (host.startsWith('*.'))
          return void v.fail(
            p,
            h,
            'a host name without a wildcard (wildcard hosts need a certificate file, apps[].tls: ACME here validates with HTTP-01 and TLS-ALPN-01, and wildcards need DNS-01)',
          );
        const app = apps.find((a) => a.host === host);
        if (!HOST.test(host) || !app) return void v.fail(p, h, 'the host of an app (its externalUrl)');
        if (app.tls) return void v.fail(p, h, 'a host whose app has no certificate file (apps[].tls)');
        list.push(host);
      });
      hosts = [...new Set(list)];
    }
  }
  let caPem: string | undefined;
  const caFile = o['caFile'] === undefined ? undefined : str(v, 'acme.caFile', o['caFile']);
  if (caFile !== undefined) {
    try {
      caPem = readFileSync(path.resolve(baseDir, caFile), 'utf8');
      new X509Certificate(caPem);
    } catch (err) {
      v.fail(
        'acme.caFile',
        caFile,
        `a readable PEM CA certificate (${(err as NodeJS.ErrnoException).code ?? 'not a certificate'})`,
      );
    }
  }
  const renewBeforeMs =
    o['renewBefore'] === undefined ? undefined : duration(v, 'acme.renewBefore', o['renewBefore'], '30d', 60_000);
  if (!directory || email === undefined) return undefined;
  return { directory, email, hosts, caPem, renewBeforeMs };
}

/** The hosts ACME obtains certificates for under `cfg`: app hosts without a certificate file, no wildcards. */
export function acmeHosts(cfg: AcmeConfig | undefined, apps: readonly { host: string; tls: unknown }[]): string[] {
  if (!cfg) return [];
  const eligible = new Set(apps.filter((a) => !a.tls && !a.host.startsWith('*.')).map((a) => a.host));
  const wanted = cfg.hosts === 'all' ? [...eligible] : cfg.hosts.filter((h) => eligible.has(h));
  return [...new Set(wanted)].sort();
}
