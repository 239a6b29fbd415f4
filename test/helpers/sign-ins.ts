// A complete sign-in record with neutral defaults, for tests that write the log directly.
import type { SignInRecord } from '../../src/store/types.js';

export function signInRecord(over: Partial<Omit<SignInRecord, 'id'>> = {}): Omit<SignInRecord, 'id'> {
  return {
    at: 0,
    requestId: null,
    traceId: null,
    kind: 'interactive',
    app: null,
    subject: null,
    ip: null,
    country: null,
    city: null,
    latitude: null,
    longitude: null,
    asn: null,
    network: null,
    userAgent: null,
    browser: null,
    os: null,
    clientType: null,
    methods: [],
    result: 'failure',
    reason: null,
    policies: [],
    risk: 'none',
    detections: [],
    ...over,
  };
}
