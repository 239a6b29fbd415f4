// A scripted browser for sign-in tests without Chromium: follows redirects across
// the relay and the identity provider by hand, keeping a cookie jar per host.
import { request, type Dispatcher } from 'undici';

export class CookieJar {
  readonly byHost = new Map<string, Map<string, string>>();

  store(host: string, setCookie: string | string[] | undefined): void {
    for (const line of [setCookie ?? []].flat()) {
      const [pair, ...attrs] = line.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      const jar = this.byHost.get(host) ?? new Map<string, string>();
      this.byHost.set(host, jar);
      if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  header(host: string): string | undefined {
    const jar = this.byHost.get(host);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  get(host: string, name: string): string | undefined {
    return this.byHost.get(host)?.get(name);
  }

  set(host: string, name: string, value: string): void {
    const jar = this.byHost.get(host) ?? new Map<string, string>();
    jar.set(name, value);
    this.byHost.set(host, jar);
  }
}

export interface SimResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  url: string;
}

export class BrowserSim {
  readonly jar = new CookieJar();
  constructor(private readonly relayClient: Dispatcher) {}

  async get(
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ): Promise<SimResponse> {
    const u = new URL(url);
    const cookie = this.jar.header(u.host);
    const res = await request(url, {
      method: init.method ?? 'GET',
      headers: { ...(cookie ? { cookie } : {}), ...init.headers },
      ...(init.body !== undefined ? { body: init.body } : {}),
      ...(u.protocol === 'https:' ? { dispatcher: this.relayClient } : {}),
    });
    this.jar.store(u.host, res.headers['set-cookie']);
    return { status: res.statusCode, headers: res.headers, body: await res.body.text(), url };
  }

  /** Follows redirects (GET) until a non-redirect answer or `stopAt` matches the next URL. */
  async follow(url: string, stopAt?: (next: URL) => boolean, max = 15): Promise<SimResponse> {
    let current = url;
    for (let i = 0; i < max; i++) {
      const r = await this.get(current);
      const loc = r.headers['location'];
      if (r.status < 300 || r.status >= 400 || typeof loc !== 'string') return r;
      const next = new URL(loc, current);
      if (stopAt?.(next)) return { ...r, url: next.href };
      current = next.href;
    }
    throw new Error('too many redirects');
  }

  /**
   * Full sign-in: open `url` on the relay, log in at the provider's form as
   * `username`, come back through the callback; returns the final answer.
   */
  async signIn(url: string, username: string, opts: { mfa?: boolean; password?: string } = {}): Promise<SimResponse> {
    const atLogin = await this.follow(url);
    const m = /action="([^"]+)"/.exec(atLogin.body);
    if (!m) throw new Error(`no login form at ${atLogin.url}: ${atLogin.status} ${atLogin.body.slice(0, 200)}`);
    const form = new URLSearchParams({ username, password: opts.password ?? 'x', ...(opts.mfa ? { mfa: '1' } : {}) });
    const posted = await this.get(new URL(m[1]!, atLogin.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    });
    const loc = posted.headers['location'];
    if (typeof loc !== 'string') return posted; // an error page, or a second-factor form
    return this.follow(new URL(loc, posted.url).href);
  }

  /** Posts a form found in `page` (first form), with the given fields, and follows redirects. */
  async submit(page: SimResponse, fields: Record<string, string>): Promise<SimResponse> {
    const m = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/.exec(page.body);
    if (!m) throw new Error(`no form at ${page.url}: ${page.body.slice(0, 200)}`);
    const action = new URL(m[1]!.replace(/&amp;/g, '&'), page.url).href;
    // Inputs the page already carries (hidden xsrf, pre-filled codes), then ours.
    const values: Record<string, string> = {};
    for (const input of m[2]!.matchAll(/<input[^>]*>/g)) {
      const name = /name="([^"]*)"/.exec(input[0])?.[1];
      const value = /value="([^"]*)"/.exec(input[0])?.[1];
      if (name && value !== undefined && !/type="checkbox"/.test(input[0])) values[name] = value;
    }
    const posted = await this.get(action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ...values, ...fields }).toString(),
    });
    const loc = posted.headers['location'];
    if (typeof loc !== 'string') return { ...posted, url: action };
    return this.follow(new URL(loc, action).href);
  }
}
