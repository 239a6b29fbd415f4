// The sign-in log: every sign-in attempt (and every first use of a bearer token
// under a configuration) with its result, reason and per-policy results.
import type { IncomingMessage } from 'node:http';
import type { AppConfig } from '../../config/relay-config.js';
import type { Logger } from '../../log.js';
import { countryOf } from '../../policy/context.js';
import type { Decision } from '../../policy/model.js';
import type { Store } from '../../store/index.js';
import { clientAddress } from '../edge/client-address.js';
import type { Identity } from './session.js';

export class SignInLog {
  constructor(private readonly deps: { store: Store; log: Logger; now: () => number }) {}

  record(
    req: IncomingMessage,
    app: AppConfig,
    who: Identity | undefined,
    requestId: string,
    result: 'success' | 'failure' | 'stepUp',
    reason: string | undefined,
    decision: Decision | undefined,
  ): void {
    const ip = clientAddress(req);
    try {
      this.deps.store.signIns
        .record({
          at: this.deps.now(),
          requestId,
          app: app.name,
          subject: who?.sub ?? null,
          ip,
          country: countryOf(ip) ?? null,
          userAgent: req.headers['user-agent'] ?? null,
          result,
          reason: reason ?? null,
          policies:
            decision?.policies.map((p) => ({
              name: p.name,
              state: p.state,
              applies: p.applies,
              outcome: p.outcome,
              why: p.why,
              missing: p.missing,
            })) ?? [],
          risk: 'none',
          detections: [],
          kind: 'interactive',
          traceId: null,
          city: null,
          latitude: null,
          longitude: null,
          asn: null,
          network: null,
          browser: null,
          os: null,
          clientType: null,
          methods: [],
        })
        .catch((err: unknown) =>
          this.deps.log.error({ request_id: requestId, err: (err as Error).message }, 'cannot record sign-in'),
        );
    } catch (err) {
      this.deps.log.error({ request_id: requestId, err: (err as Error).message }, 'cannot record sign-in');
    }
  }

  /** Failures before an identity is known (bad state, provider errors) are sign-in attempts too. */
  failure(req: IncomingMessage, app: AppConfig, requestId: string, code: string): void {
    this.record(req, app, undefined, requestId, 'failure', code, undefined);
  }
}
