// Conditional Access, the data: named locations, policies and the sign-in
// context they are evaluated against. Validated in config.ts, evaluated in
// evaluate.ts (the only place decisions are made).

export type PolicyState = 'on' | 'off' | 'reportOnly';
export type Platform = 'windows' | 'macos' | 'linux' | 'ios' | 'android' | 'other';
export type RiskLevel = 'none' | 'low' | 'medium' | 'high';
export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';

export const PLATFORMS: readonly Platform[] = ['windows', 'macos', 'linux', 'ios', 'android', 'other'];
export const RISK_LEVELS: readonly RiskLevel[] = ['none', 'low', 'medium', 'high'];
export const WEEKDAYS: readonly Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

export interface NamedLocation {
  readonly name: string;
  readonly cidrs: readonly string[];
  readonly countries: readonly string[];
}

export interface IncludeExclude<T> {
  /** 'all' matches everything. */
  readonly include: readonly (T | 'all')[];
  readonly exclude: readonly T[];
}

export interface TimeWindow {
  readonly days: readonly Weekday[];
  /** Minutes after midnight, in timeZone. from > to wraps past midnight. */
  readonly fromMin: number;
  readonly toMin: number;
  readonly timeZone: string;
  /** true: the condition matches outside the window. */
  readonly outside: boolean;
  readonly text: string;
}

export interface Policy {
  readonly name: string;
  readonly state: PolicyState;
  readonly users: IncludeExclude<string>;
  readonly groups: IncludeExclude<string>;
  readonly apps: IncludeExclude<string>;
  readonly locations: IncludeExclude<string> | undefined;
  readonly platforms: IncludeExclude<Platform> | undefined;
  readonly signInRisk: readonly RiskLevel[] | undefined;
  /** The user's aggregated risk (detections over time, until an administrator dismisses them). */
  readonly userRisk: readonly RiskLevel[] | undefined;
  readonly time: TimeWindow | undefined;
  readonly grant: {
    readonly block: boolean;
    readonly requireMfa: boolean;
    readonly requireAcr: string | undefined;
    readonly requireDeviceCertificate: boolean;
    readonly operator: 'all' | 'any';
  };
  readonly session: { readonly signInFrequencyMs: number | undefined; readonly persistentBrowser: boolean | undefined };
}

export interface AccessConfig {
  readonly namedLocations: readonly NamedLocation[];
  readonly policies: readonly Policy[];
}

/** Everything a decision may depend on; built from a sign-in or by `policy what-if`. */
export interface SignInContext {
  readonly app: string;
  readonly user: string;
  readonly email: string | undefined;
  readonly groups: readonly string[];
  readonly ip: string;
  /** ISO 3166 alpha-2, from GeoIP; undefined for private or unknown addresses. */
  readonly country: string | undefined;
  readonly platform: Platform;
  readonly amr: readonly string[];
  readonly acr: string | undefined;
  /** Sign-in risk: this attempt's detections. */
  readonly risk: RiskLevel;
  /** User risk: the user's detections over time. */
  readonly userRisk: RiskLevel;
  readonly time: Date;
  readonly deviceCertificate: boolean;
}

export type Outcome = 'notApplicable' | 'granted' | 'blocked' | 'unsatisfied';

export interface PolicyResult {
  readonly name: string;
  readonly state: PolicyState;
  readonly applies: boolean;
  /** Why it applies or not, e.g. "location office excluded". */
  readonly why: string;
  readonly outcome: Outcome;
  /** Unmet requirements: mfa, acr:<value>, deviceCertificate. */
  readonly missing: readonly string[];
}

export interface Decision {
  readonly result: 'allow' | 'deny' | 'stepUp';
  readonly policies: readonly PolicyResult[];
  /** The enforced policy that denied (or asks for step-up). */
  readonly decidedBy: string | undefined;
  /** What would satisfy it, for the denial page. */
  readonly hint: string | undefined;
  /** For step-up: what to ask the provider for. */
  readonly stepUp: { readonly acr: string | undefined; readonly mfa: boolean } | undefined;
  readonly session: { readonly signInFrequencyMs: number | undefined; readonly persistentBrowser: boolean | undefined };
}
