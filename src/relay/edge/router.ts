// Which app a request is for: exact host first, then the most specific wildcard
// (*.apps.example.com), then the longest path prefix on that host.
import type { AppConfig, RelayConfig } from '../../config/relay-config.js';

export interface Route {
  app: AppConfig;
  /**
   * Path and query after the app's prefix (which ends in "/"), exactly as sent:
   * the backend receives the internal prefix followed by this, so an extra slash
   * the user sent (//admin) stays, and the backend sees the path the relay matched.
   */
  rest: string;
  /** The apps on the request's host, most specific prefix first. */
  candidates: readonly AppConfig[];
}

export class Router {
  private readonly exact = new Map<string, AppConfig[]>();
  private readonly wildcard: { suffix: string; apps: AppConfig[] }[] = [];

  constructor(apps: readonly AppConfig[]) {
    const wild = new Map<string, AppConfig[]>();
    for (const app of apps) {
      const table = app.host.startsWith('*.') ? wild : this.exact;
      const key = app.host.startsWith('*.') ? app.host.slice(1) : app.host;
      table.set(key, [...(table.get(key) ?? []), app]);
    }
    for (const list of [...this.exact.values(), ...wild.values()])
      list.sort((a, b) => b.pathPrefix.length - a.pathPrefix.length);
    this.wildcard = [...wild.entries()]
      .map(([suffix, list]) => ({ suffix, apps: list }))
      .sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /** host: the host name as hostName() gives it; target: the request target (origin form). */
  match(host: string, target: string): Route | undefined {
    if (!host) return undefined;
    let candidates = this.exact.get(host);
    if (!candidates) {
      for (const w of this.wildcard) {
        // "*.apps.example.com" covers exactly one more label, as TLS wildcards do.
        if (
          host.endsWith(w.suffix) &&
          !host.slice(0, -w.suffix.length).includes('.') &&
          host.length > w.suffix.length
        ) {
          candidates = w.apps;
          break;
        }
      }
    }
    if (!candidates) return undefined;
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    for (const app of candidates) {
      const prefix = app.pathPrefix;
      if (path.startsWith(prefix) || `${path}/` === prefix) {
        return { app, rest: target.slice(Math.min(prefix.length, path.length)), candidates };
      }
    }
    return undefined;
  }
}

/** A Host header as a host name: no port, lower case, no trailing dot. */
export function hostName(hostHeader: string): string {
  return stripPort(hostHeader).toLowerCase().replace(/\.$/, '');
}

export function stripPort(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const i = host.lastIndexOf(':');
  return i >= 0 ? host.slice(0, i) : host;
}

const cache = new WeakMap<RelayConfig, Router>();

export function routerFor(config: RelayConfig): Router {
  let r = cache.get(config);
  if (!r) {
    r = new Router(config.apps);
    cache.set(config, r);
  }
  return r;
}
