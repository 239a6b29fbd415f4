// How a security event is written for a SIEM: JSON (webhook, file, syslog MSG),
// CEF, and the RFC 5424 syslog record around either. Every value a stranger can set
// (user agent, user name, failure reason, policy names) passes through an escaper
// here: a hostile value must never start a second syslog record or forge a CEF field.
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import type { AuditEntry, RiskDetectionRecord, SecurityEvent, SignInRecord } from '../store/types.js';
import { VERSION } from '../version.js';

/** RFC 5424 severities. */
export const SEVERITY = { error: 3, warning: 4, notice: 5, info: 6 } as const;

/**
 * The enterprise number in the STRUCTURED-DATA id: 32473 is the one RFC 5612 reserves
 * for documentation; proxyctl has no number of its own.
 */
export const SD_ID = 'proxyctl@32473';

/** The event as one JSON object (one line: JSON escapes every control character). */
export function eventJson(e: SecurityEvent): string {
  return JSON.stringify({ id: e.id, kind: e.kind, time: new Date(e.at).toISOString(), data: e.data });
}

/** Syslog severity: failures and risk at warning or above, successes info. */
export function severityOf(e: SecurityEvent): number {
  if (e.kind === 'signIn') {
    const s = e.data as SignInRecord;
    if (s.risk === 'high') return SEVERITY.error;
    if (s.result === 'failure' || s.risk === 'medium') return SEVERITY.warning;
    if (s.result === 'stepUp' || s.risk === 'low') return SEVERITY.notice;
    return SEVERITY.info;
  }
  if (e.kind === 'riskDetection') {
    const level = (e.data as RiskDetectionRecord).level;
    return level === 'high' ? SEVERITY.error : level === 'medium' ? SEVERITY.warning : SEVERITY.notice;
  }
  return SEVERITY.notice;
}

export interface SyslogFields {
  facility: number;
  appName: string;
  /** Default: this machine's name. */
  hostname?: string;
  procId?: string;
  format: 'json' | 'cef';
}

/** Printable US-ASCII without spaces (RFC 5424 header fields), at most `max`; `-` when empty. */
export function headerField(value: string, max: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** RFC 5424 PARAM-VALUE: `"`, `\` and `]` escaped with a backslash. */
export function sdValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

const HOST = headerField(hostname(), 255);

/** One RFC 5424 record (no framing, no trailing newline). */
export function syslogLine(e: SecurityEvent, f: SyslogFields): string {
  const pri = f.facility * 8 + severityOf(e);
  const time = new Date(e.at).toISOString();
  const host = f.hostname === undefined ? HOST : headerField(f.hostname, 255);
  const app = headerField(f.appName, 48);
  const proc = headerField(f.procId ?? String(process.pid), 128);
  const msgid = headerField(e.kind, 32);
  const sd = `[${SD_ID} id="${sdValue(e.id)}"]`;
  const msg = f.format === 'cef' ? cefLine(e) : eventJson(e);
  // MSG is JSON (control characters escaped) or CEF (newlines escaped): never a line break.
  return `<${pri}>1 ${time} ${host} ${app} ${proc} ${msgid} ${sd} ${msg}`;
}

/** RFC 6587 octet counting: `<byte length> <record>`. */
export function octetFrame(line: string): string {
  return `${Buffer.byteLength(line)} ${line}`;
}

// --- CEF -------------------------------------------------------------------------

/** CEF header field: `\` and `|` escaped, line breaks flattened (the header is one line). */
export function cefHeader(value: string, max = 512): string {
  return clip(value, max)
    .replace(/[\\|]/g, (c) => `\\${c}`)
    .replace(/[\r\n]+/g, ' ');
}

/** CEF extension value: `\` and `=` escaped, CR and LF as `\r` `\n`, other control characters dropped. */
export function cefValue(value: string, max = 1023): string {
  return (
    clip(value, max)
      // eslint-disable-next-line no-control-regex
      .replace(/[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]/g, '')
      .replace(/[\\=\r\n]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\${c}`))
  );
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** At most `max` UTF-16 units, never splitting a surrogate pair; lone surrogates become U+FFFD as on the wire. */
function clip(value: string, max: number): string {
  const whole = value.replace(LONE_SURROGATE, '\ufffd');
  if (whole.length <= max) return whole;
  const end = /[\ud800-\udbff]/.test(whole[max - 1] ?? '') ? max - 1 : max;
  return whole.slice(0, end);
}

type Ext = [key: string, value: string | number | null | undefined, max?: number];

function extensions(pairs: Ext[]): string {
  const out: string[] = [];
  for (const [key, value, max] of pairs) {
    if (value === null || value === undefined || value === '') continue;
    out.push(`${key}=${cefValue(String(value), max)}`);
  }
  return out.join(' ');
}

/** Custom string fields travel as csN with their label csNLabel. */
const cs = (n: number, label: string, value: string | null | undefined): Ext[] =>
  value === null || value === undefined || value === ''
    ? []
    : [
        [`cs${n}Label`, label],
        [`cs${n}`, value, 4000],
      ];

const cn = (n: number, label: string, value: number | null | undefined): Ext[] =>
  value === null || value === undefined
    ? []
    : [
        [`cn${n}Label`, label],
        [`cn${n}`, value],
      ];

const LEVEL_SCORE = { none: 0, low: 3, medium: 6, high: 9 } as const;

/** One CEF:0 record. */
export function cefLine(e: SecurityEvent): string {
  let signature: string;
  let name: string;
  let severity: number;
  let ext: Ext[];
  if (e.kind === 'signIn') {
    const s = e.data as SignInRecord;
    signature = `signIn:${s.result}`;
    name = s.result === 'success' ? 'Sign-in succeeded' : s.result === 'stepUp' ? 'Sign-in step-up' : 'Sign-in failed';
    severity = Math.max(s.result === 'failure' ? 6 : s.result === 'stepUp' ? 4 : 3, LEVEL_SCORE[s.risk]);
    ext = [
      ['rt', e.at],
      ['externalId', e.id],
      ['src', s.ip && isIP(s.ip) ? s.ip : null],
      ['suser', s.subject],
      ['outcome', s.result],
      ['reason', s.reason],
      ['destinationServiceName', s.app],
      ['requestClientApplication', s.userAgent],
      ['slat', s.latitude],
      ['slong', s.longitude],
      ...cs(1, 'policies', s.policies.length ? JSON.stringify(s.policies) : null),
      ...cs(2, 'signInRisk', s.risk),
      ...cs(3, 'detections', s.detections.length ? JSON.stringify(s.detections) : null),
      ...cs(4, 'requestId', s.requestId),
      ...cs(5, 'location', [s.city, s.country].filter(Boolean).join(', ')),
      ...cs(6, 'methods', s.methods.join(',')),
      ...cn(1, 'asn', s.asn),
      ['cat', s.kind],
    ];
  } else if (e.kind === 'riskDetection') {
    const r = e.data as RiskDetectionRecord;
    signature = `risk:${r.type}`;
    name = `Risk detection: ${r.type}`;
    severity = LEVEL_SCORE[r.level];
    ext = [
      ['rt', e.at],
      ['externalId', e.id],
      ['src', r.ip && isIP(r.ip) ? r.ip : null],
      ['suser', r.subject],
      ['act', r.type],
      ['destinationServiceName', r.app],
      ...cs(2, 'riskLevel', r.level),
      ...cs(3, 'details', Object.keys(r.details).length ? JSON.stringify(r.details) : null),
      ...cs(4, 'requestId', r.requestId),
      ...cn(2, 'signInId', r.signInId),
    ];
  } else {
    const a = e.data as AuditEntry;
    signature = `audit:${a.action}`;
    name = `Administrative change: ${a.action}`;
    severity = 4;
    ext = [
      ['rt', e.at],
      ['externalId', e.id],
      ['suser', a.actor],
      ['act', a.action],
      ...cs(1, 'details', Object.keys(a.details).length ? JSON.stringify(a.details) : null),
      ...cs(4, 'connectorId', a.connectorId),
    ];
  }
  const header = ['CEF:0', 'proxyctl', 'proxyctl', VERSION, signature, name, String(severity)].map((h, i) =>
    i === 0 ? h : cefHeader(h, i === 4 ? 1023 : 512),
  );
  return `${header.join('|')}|${extensions(ext)}`;
}
