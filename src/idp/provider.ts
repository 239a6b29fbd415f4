// The embedded identity provider: a certified OpenID provider library
// (oidc-provider) served by the relay on its own host of the public listener,
// with users from the relay store (or a users file), scrypt passwords, optional
// TOTP (amr "mfa", each code good once), failures slowed by growing delays
// (throttle.ts), device flow for `proxyctl login`, and JWT access tokens for the
// administrator audience carrying the roles claim. No page of it can be framed.
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Provider, interactionPolicy, type ClientMetadata } from 'oidc-provider';
import type { AppConfig, IdentityConfig } from '../config/relay-config.js';
import { writeFileAtomic } from '../fs-atomic.js';
import type { Logger } from '../log.js';
import type { IdpArtifactRepo, UserRepo } from '../store/index.js';
import { formPage, loginPage, messagePage, totpPage } from './pages.js';
import { renderDocument, renderError, securityHeaders, sendPage } from '../http/render.js';
import { ProxyctlError } from '../errors.js';
import { CLI_CLIENT_ID, idpKeysFile, newIdpSecrets, type IdpSecrets } from './secrets.js';
import { LoginThrottle, SharedLoginThrottle, type ThrottleVerdict } from './throttle.js';
import { UserDirectory, totpStep, verifyPassword } from './users.js';

export { CLI_CLIENT_ID, idpKeysFile, newIdpSecrets, type IdpSecrets } from './secrets.js';

/** Signing and cookie keys persist in the data directory so sessions and tokens survive restarts. */
async function loadSecretsFile(dataDir: string): Promise<string> {
  const file = idpKeysFile(dataDir);
  if (existsSync(file)) return readFileSync(file, 'utf8');
  const secrets = await newIdpSecrets();
  writeFileAtomic(file, secrets, 0o600);
  return secrets;
}

function adapterFor(artifacts: IdpArtifactRepo) {
  return class StoreAdapter {
    constructor(private readonly model: string) {}
    async upsert(id: string, payload: Record<string, unknown>, expiresIn: number) {
      await artifacts.upsert(this.model, id, payload, expiresIn);
    }
    async find(id: string) {
      return artifacts.find(this.model, 'id', id);
    }
    async findByUid(uid: string) {
      return artifacts.find(this.model, 'uid', uid);
    }
    async findByUserCode(code: string) {
      return artifacts.find(this.model, 'userCode', code);
    }
    async consume(id: string) {
      await artifacts.consume(this.model, id);
    }
    async destroy(id: string) {
      await artifacts.destroy(this.model, id);
    }
    async revokeByGrantId(grantId: string) {
      await artifacts.revokeByGrantId(grantId);
    }
  };
}

export interface EmbeddedIdpOptions {
  issuer: string;
  dataDir: string;
  /** The provider's keys as JSON (newIdpSecrets), from where replicas share them; idp-keys.json in dataDir by default. */
  loadSecrets?: () => Promise<string>;
  users: UserRepo;
  /** Where oidc-provider keeps grants, codes, sessions and interactions. */
  artifacts: IdpArtifactRepo;
  identity: IdentityConfig;
  apps: readonly AppConfig[];
  /** Ports the public listener is reached on (redirect URIs are registered for each). */
  publicPort: number;
  log: Logger;
  /** Clock for the throttle, TOTP and the second-factor wait (tests). */
  now?: () => number;
  /** Kept by the relay across reloads, so rebuilding the provider forgets no failures. */
  throttle?: LoginThrottle | SharedLoginThrottle;
  /**
   * The client's address as the relay's edge vetted it (X-Forwarded-For only from
   * trusted proxies): throttling counts it, never a proxy's address.
   */
  clientAddress: (req: IncomingMessage) => string;
  /** Told of every refused attempt (the sign-in log, password-spray and brute-force detection). */
  attempt?: (a: ProviderAttempt) => void;
}

/** A refused attempt at the embedded provider's sign-in pages. */
export interface ProviderAttempt {
  req: IncomingMessage;
  /** As typed (lower-cased); `known` says whether such a user exists. */
  username: string;
  known: boolean;
  ip: string;
  step: 'password' | 'totp';
  reason: 'wrong password' | 'unknown user' | 'bad second factor' | 'replayed second factor' | 'throttled';
  /** The password tried (password step): the relay keeps only a keyed fingerprint of it, in memory. */
  password?: string;
}

/** An authorization request parameter as oidc-provider holds it: a string, or nothing. */
const param = (v: unknown): string => (typeof v === 'string' ? v : '');

/** How long a password that passed waits for its TOTP code. */
const SECOND_FACTOR_WAIT_MS = 5 * 60_000;
/** Interactions waiting for a code, at most (each needed a correct password). */
const MAX_PENDING_SECOND_FACTOR = 10_000;

interface InteractionDetails {
  uid: string;
  prompt: { name: string; reasons: string[]; details: Record<string, unknown> };
  params: Record<string, unknown>;
  session?: { accountId?: string };
  lastSubmission?: Record<string, unknown>;
}

export class EmbeddedIdp {
  readonly issuer: string;
  private provider!: Provider;
  private providerCallback!: ReturnType<Provider['callback']>;
  private readonly users: UserDirectory;
  private readonly throttle: LoginThrottle | SharedLoginThrottle;
  private readonly now: () => number;
  /** Interactions whose password step passed and that wait for a TOTP code. */
  private readonly pendingSecondFactor = new Map<string, { username: string; at: number }>();
  private clients: ClientMetadata[] = [];

  private constructor(private readonly options: EmbeddedIdpOptions) {
    this.issuer = options.issuer;
    this.users = new UserDirectory(options.users, options.identity.embedded.usersFile);
    this.now = options.now ?? Date.now;
    this.throttle = options.throttle ?? new LoginThrottle({ now: this.now });
  }

  static async create(options: EmbeddedIdpOptions): Promise<EmbeddedIdp> {
    const idp = new EmbeddedIdp(options);
    await idp.init();
    return idp;
  }

  get host(): string {
    return new URL(this.issuer).hostname;
  }

  private async init(): Promise<void> {
    const { identity, artifacts, log } = this.options;
    const secrets = JSON.parse(
      await (this.options.loadSecrets ? this.options.loadSecrets() : loadSecretsFile(this.options.dataDir)),
    ) as IdpSecrets;
    this.clients = this.clientsFor(this.options.apps);
    const policy = interactionPolicy.base();
    // Step-up: an app (or policy) that asks for acr "mfa" gets a fresh login unless the session already has it.
    policy.get('login')!.checks.add(
      new interactionPolicy.Check(
        'mfa_required',
        'multi-factor authentication is required',
        'login_required',
        (ctx) => {
          const requested = param(ctx.oidc.params?.['acr_values']).split(' ');
          const amr = ctx.oidc.session?.amr ?? [];
          return requested.includes('mfa') && !amr.includes('mfa')
            ? interactionPolicy.Check.REQUEST_PROMPT
            : interactionPolicy.Check.NO_NEED_TO_PROMPT;
        },
      ),
    );
    const users = this.users;
    const adminAudience = identity.adminAudience;
    const adminClaim = identity.adminClaim;
    const groupsClaim = identity.groupsClaim;
    this.provider = new Provider(this.issuer, {
      adapter: adapterFor(artifacts),
      clients: this.clients,
      jwks: secrets.jwks,
      // oidc-provider makes the session cookie SameSite=None (plus a ".legacy" twin) by
      // default. Lax is enough here: the relay's callback uses the default query
      // response mode (a top-level GET redirect), and every POST (sign-in, device
      // approval, sign-out confirmation) comes from the provider's own pages.
      // form_post or web_message would need None; neither is used.
      cookies: {
        keys: secrets.cookieKeys,
        long: { httpOnly: true, sameSite: 'lax', signed: true },
        short: { httpOnly: true, sameSite: 'lax', signed: true },
      },
      conformIdTokenClaims: false,
      claims: {
        openid: ['sub', 'amr', 'acr'],
        email: ['email', 'email_verified'],
        // The administration roles too: the console signs administrators in with the ID token.
        profile: ['name', 'preferred_username', groupsClaim, ...(adminClaim === groupsClaim ? [] : [adminClaim])],
      },
      pkce: { required: () => true },
      acrValues: ['pwd', 'mfa'],
      interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}`, policy },
      findAccount: async (_ctx, id) => {
        const u = await users.find(id);
        if (!u) return undefined;
        return {
          accountId: u.username,
          // An administrator set the e-mail (CLI or users file): the relay may trust it.
          claims: async () => ({
            sub: u.username,
            ...(u.email ? { email: u.email, email_verified: true } : {}),
            name: u.name ?? u.username,
            preferred_username: u.username,
            [adminClaim]: u.roles,
            [groupsClaim]: u.groups,
          }),
        };
      },
      ttl: {
        AccessToken: 3600,
        AuthorizationCode: 60,
        IdToken: 3600,
        Interaction: 600,
        Session: 8 * 3600,
        Grant: 8 * 3600,
        DeviceCode: 600,
      },
      features: {
        devInteractions: { enabled: false },
        deviceFlow: {
          enabled: true,
          userCodeInputSource: async (ctx, form, _out, err) => {
            ctx.body = formPage(
              'Sign in a device',
              err ? 'That code is not valid. Try again.' : 'Enter the code shown by proxyctl.',
              `${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
              false,
            );
          },
          userCodeConfirmSource: async (ctx, form, _client, _info, userCode) => {
            ctx.body = formPage(
              'Confirm sign-in',
              `Sign in proxyctl on the device showing code ${userCode}?`,
              `${form}<button autofocus type="submit" form="op.deviceConfirmForm">Continue</button>`,
              false,
            );
          },
          successSource: async (ctx) => {
            ctx.body = messagePage('Signed in', 'You can close this page and return to proxyctl.');
          },
        },
        rpInitiatedLogout: {
          enabled: true,
          // Sign-out was already chosen at the app; finish it without another question.
          logoutSource: async (ctx, form) => {
            ctx.body = formPage(
              'Signing out',
              'Signing you out…',
              form.replace(
                '</form>',
                '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>',
              ),
              true,
              cspNonce(ctx),
            );
          },
          postLogoutSuccessSource: async (ctx) => {
            ctx.body = messagePage('Signed out', 'You are signed out.');
          },
        },
        resourceIndicators: {
          enabled: true,
          defaultResource: (ctx, _client, oneOf) =>
            ctx.oidc.client?.clientId === CLI_CLIENT_ID ? adminAudience : (oneOf ?? []),
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resource) => ({
            scope: 'openid profile email proxyctl.admin',
            audience: resource,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          }),
        },
      },
      extraTokenClaims: async (_ctx, token) => {
        const accountId = (token as { accountId?: string }).accountId;
        const u = accountId ? await users.find(accountId) : undefined;
        if (!u) return undefined;
        const aud = (token as { aud?: string | string[] }).aud;
        const sid = (token as { sid?: unknown }).sid;
        const out: Record<string, unknown> = {
          [groupsClaim]: u.groups,
          ...(u.email ? { email: u.email, email_verified: true } : {}),
          ...(typeof sid === 'string' ? { sid } : {}),
        };
        if ([aud].flat().includes(adminAudience)) out[adminClaim] = u.roles;
        return out;
      },
      // The relay's one renderer: the same page, JSON and headers as every other refusal.
      renderError: async (ctx, out) => {
        const requestId = randomUUID();
        const status = ctx.status >= 400 ? ctx.status : 400;
        log.info(
          { request_id: requestId, error: out['error'], status },
          'embedded identity provider refused a request',
        );
        const err = new ProxyctlError(
          'ERR_SIGNIN_PROVIDER',
          `${String(out['error'])}: ${String(out['error_description'] ?? '')}`,
          { status },
        );
        const d = renderDocument(ctx.req, err, requestId);
        ctx.status = d.status;
        ctx.set(d.headers);
        ctx.body = d.body;
      },
    });
    this.provider.proxy = false;
    // Name the provider session (sid) in every client's tokens, as Keycloak and Entra ID do;
    // oidc-provider does so on its own only for clients registered for back-channel logout.
    (this.provider as unknown as { Client: { prototype: { includeSid(): boolean } } }).Client.prototype.includeSid =
      () => true;
    // Before the provider's own middleware, so the pages it renders (end session,
    // device flow, errors, form_post) carry the headers and it can add script hashes
    // to them; set again afterwards in case a step replaced them.
    this.provider.use(async (ctx, next) => {
      const nonce = randomBytes(16).toString('base64');
      (ctx.state as Record<string, unknown>)['cspNonce'] = nonce;
      ctx.set(securityHeaders('provider', { scriptNonce: nonce }));
      try {
        await next();
      } finally {
        ctx.set('x-frame-options', 'DENY');
        if (!/frame-ancestors 'none'/.test(ctx.response.get('content-security-policy')))
          ctx.set(securityHeaders('provider', { scriptNonce: nonce }));
      }
    });
    this.providerCallback = this.provider.callback();
    this.provider.on('server_error', (_ctx: unknown, err: Error) =>
      log.error({ err: err.message }, 'embedded identity provider error'),
    );
  }

  /** One client per distinct app client id, with every callback URL its hosts can produce. */
  private clientsFor(apps: readonly AppConfig[]): ClientMetadata[] {
    const byId = new Map<string, { secret: string | undefined; redirects: Set<string>; logouts: Set<string> }>();
    for (const app of apps) {
      if (app.preauth !== 'oidc' || app.host.startsWith('*.')) continue;
      const entry = byId.get(app.clientId) ?? {
        secret: app.clientSecret,
        redirects: new Set<string>(),
        logouts: new Set<string>(),
      };
      for (const port of new Set(['', app.externalUrl.port, String(this.options.publicPort)])) {
        const origin = `https://${app.host}${port && port !== '443' ? `:${port}` : ''}`;
        entry.redirects.add(`${origin}${app.pathPrefix}.proxyctl/callback`);
        entry.logouts.add(`${origin}${app.pathPrefix}.proxyctl/signed-out`);
      }
      byId.set(app.clientId, entry);
    }
    const clients: ClientMetadata[] = [...byId].map(([id, c]) => ({
      client_id: id,
      ...(c.secret
        ? { client_secret: c.secret, token_endpoint_auth_method: 'client_secret_basic' }
        : { token_endpoint_auth_method: 'none' }),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [...c.redirects],
      post_logout_redirect_uris: [...c.logouts],
    }));
    clients.push({
      client_id: CLI_CLIENT_ID,
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
      response_types: [],
      redirect_uris: [],
    });
    return clients;
  }

  /** The request listener for the provider's host on the public listener. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const m = /^\/interaction\/([\w-]+)(?:\/(login|totp))?$/.exec((req.url ?? '').split('?')[0] ?? '');
    if (!m) {
      void this.providerCallback(req, res);
      return;
    }
    // Here too for the redirects oidc-provider writes itself (interactionFinished).
    for (const [name, value] of Object.entries(securityHeaders('page', { formAction: null })))
      res.setHeader(name, value);
    this.interaction(req, res, m[1]!, m[2]).catch((err: unknown) => {
      const requestId = randomUUID();
      this.options.log.warn({ request_id: requestId, err: (err as Error).message }, 'sign-in interaction failed');
      renderError(
        req,
        res,
        new ProxyctlError(
          'ERR_SIGNIN_STATE',
          'This sign-in page has expired. Go back to the application and start again.',
          { status: 400 },
        ),
        requestId,
      );
    });
  }

  private async interaction(
    req: IncomingMessage,
    res: ServerResponse,
    uid: string,
    step: string | undefined,
  ): Promise<void> {
    const details = (await this.provider.interactionDetails(req, res)) as unknown as InteractionDetails;
    if (details.uid !== uid) throw new Error('interaction mismatch');
    const base = `/interaction/${uid}`;
    const stepUp = param(details.params['acr_values']).split(' ').includes('mfa');
    if (details.prompt.name === 'consent') {
      // First-party clients: consent to what was asked.
      const grant = new this.provider.Grant({
        accountId: details.session!.accountId!,
        clientId: String(details.params['client_id']),
      });
      grant.addOIDCScope(param(details.params['scope']) || 'openid');
      grant.addOIDCClaims(['email', 'email_verified', 'name', this.options.identity.groupsClaim]);
      if (param(details.params['resource']))
        grant.addResourceScope(param(details.params['resource']), param(details.params['scope']) || 'openid');
      const grantId = await grant.save();
      await this.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    if (req.method === 'GET') {
      send(
        res,
        200,
        this.pendingSecondFactor.has(uid) ? totpPage(`${base}/totp`, {}) : loginPage(`${base}/login`, { stepUp }),
      );
      return;
    }
    const form = new URLSearchParams(await readBody(req, 8192));
    // The address the relay vetted in admit() (X-Forwarded-For only from trusted proxies).
    const client = this.options.clientAddress(req);
    if (step === 'login') {
      const username = (form.get('username') ?? '').trim().toLowerCase();
      // Checked before the user is looked up: the answer is the same whether or not the user exists.
      const gate = await this.throttle.check(username, client);
      if (!gate.allowed) {
        this.options.attempt?.({ req, username, known: false, ip: client, step: 'password', reason: 'throttled' });
        this.refuseThrottled(
          res,
          gate,
          loginPage(`${base}/login`, { error: tooManyAttempts(gate.retryAfterS), username, stepUp }),
          username,
          client,
        );
        return;
      }
      const user = await this.users.find(username);
      // Verify even for unknown users so timing does not reveal which names exist.
      const ok = await verifyPassword(
        form.get('password') ?? '',
        user?.passwordHash ?? 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      );
      if (!user || !ok) {
        await this.throttle.failure(username, client);
        this.options.attempt?.({
          req,
          username,
          known: !!user,
          ip: client,
          step: 'password',
          reason: user ? 'wrong password' : 'unknown user',
          password: form.get('password') ?? '',
        });
        this.options.log.info({ username, client }, 'embedded sign-in failed: bad credentials');
        send(
          res,
          401,
          loginPage(`${base}/login`, { error: 'The username or password is incorrect.', username, stepUp }),
        );
        return;
      }
      // The second factor is asked for when the relying party requests it (acr_values=mfa):
      // Conditional Access decides when multi-factor authentication is needed.
      if (stepUp && user.totpSecret) {
        this.awaitSecondFactor(uid, user.username);
        send(res, 200, totpPage(`${base}/totp`, {}));
        return;
      }
      if (stepUp) {
        send(
          res,
          403,
          loginPage(`${base}/login`, {
            error:
              'This application requires a second factor, and your account has none enrolled. Ask your administrator.',
            stepUp,
          }),
        );
        return;
      }
      await this.throttle.success(user.username, client);
      await this.finishLogin(req, res, user.username, ['pwd']);
      return;
    }
    if (step === 'totp') {
      const pending = this.pendingSecondFactor.get(uid);
      if (!pending || this.now() - pending.at > SECOND_FACTOR_WAIT_MS) {
        this.pendingSecondFactor.delete(uid);
        send(res, 400, loginPage(`${base}/login`, { error: 'Start again with your password.' }));
        return;
      }
      const gate = await this.throttle.check(pending.username, client);
      if (!gate.allowed) {
        this.options.attempt?.({
          req,
          username: pending.username,
          known: true,
          ip: client,
          step: 'totp',
          reason: 'throttled',
        });
        this.refuseThrottled(
          res,
          gate,
          totpPage(`${base}/totp`, { error: tooManyAttempts(gate.retryAfterS) }),
          pending.username,
          client,
        );
        return;
      }
      const user = await this.users.find(pending.username);
      const codeStep = user?.totpSecret
        ? totpStep(user.totpSecret, (form.get('code') ?? '').trim(), this.now())
        : undefined;
      // A code is good once (RFC 6238 §5.2): its step must be later than the last accepted one.
      // The store decides atomically, so two relays or two tabs cannot both use one code.
      if (!user || codeStep === undefined || !(await this.options.users.acceptTotpStep(user.username, codeStep))) {
        await this.throttle.failure(pending.username, client);
        this.options.attempt?.({
          req,
          username: pending.username,
          known: !!user,
          ip: client,
          step: 'totp',
          reason: codeStep !== undefined ? 'replayed second factor' : 'bad second factor',
        });
        this.options.log.info(
          { username: pending.username, client, replay: codeStep !== undefined },
          'embedded sign-in failed: bad second factor',
        );
        send(res, 401, totpPage(`${base}/totp`, { error: 'That code is not valid. Try the current one.' }));
        return;
      }
      await this.throttle.success(user.username, client);
      this.pendingSecondFactor.delete(uid);
      await this.finishLogin(req, res, user.username, ['pwd', 'otp', 'mfa']);
      return;
    }
    renderError(req, res, new ProxyctlError('ERR_NOT_FOUND', 'No such sign-in step.', { status: 404 }), randomUUID());
  }

  private refuseThrottled(
    res: ServerResponse,
    gate: Extract<ThrottleVerdict, { allowed: false }>,
    html: string,
    username: string,
    client: string,
  ): void {
    this.options.log.warn(
      { username, client, scope: gate.scope, retry_after_s: gate.retryAfterS },
      'embedded sign-in slowed: too many attempts',
    );
    send(res, 429, html, { 'retry-after': String(gate.retryAfterS) });
  }

  /** Remembers that the password step passed; expired and surplus waits go first (oldest first in a Map). */
  private awaitSecondFactor(uid: string, username: string): void {
    const now = this.now();
    this.pendingSecondFactor.delete(uid);
    for (const [k, v] of this.pendingSecondFactor) {
      if (now - v.at <= SECOND_FACTOR_WAIT_MS && this.pendingSecondFactor.size < MAX_PENDING_SECOND_FACTOR) break;
      this.pendingSecondFactor.delete(k);
    }
    this.pendingSecondFactor.set(uid, { username, at: now });
  }

  private async finishLogin(
    req: IncomingMessage,
    res: ServerResponse,
    accountId: string,
    amr: string[],
  ): Promise<void> {
    this.options.log.info({ username: accountId, amr }, 'embedded sign-in succeeded');
    await this.provider.interactionFinished(
      req,
      res,
      { login: { accountId, amr, acr: amr.includes('mfa') ? 'mfa' : 'pwd' } },
      { mergeWithLastSubmission: false },
    );
  }

  reloadUsers(): void {
    this.users.reload();
  }
}

/** The provider's own pages: its forms post to the interaction and end in a redirect chain (no form-action). */
function send(res: ServerResponse, status: number, html: string, headers: Record<string, string> = {}): void {
  sendPage(undefined, res, status, html, { formAction: null, headers });
}

/** The same words for every throttled scope, and for users that do not exist. */
function tooManyAttempts(retryAfterS: number): string {
  return `Too many attempts. Try again in ${retryAfterS} s.`;
}

/** The script nonce the security-headers middleware put in this response's CSP. */
function cspNonce(ctx: { state: unknown }): string | undefined {
  const n = (ctx.state as Record<string, unknown> | undefined)?.['cspNonce'];
  return typeof n === 'string' ? n : undefined;
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('form too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
