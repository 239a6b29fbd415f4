// The `export:` part of the relay config: where the security events (sign-ins, audit
// rows, risk detections) are sent. A list of sinks, each one mapping with exactly one
// of `syslog`, `webhook` or `file`. Files named here (CA, client certificate, secret)
// are read now, so a missing one is refused before anything listens.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parseSize } from './limits-config.js';
import { Validation, duration, int, join, obj, oneOf, optStr, str, url } from './schema.js';

export type ExportFormat = 'json' | 'cef';
/** Where a sink without a stored cursor starts: at the end of the logs, or at their start (replay). */
export type ExportFrom = 'head' | 'start';

interface SinkBase {
  /** Stable and unique: it keys the sink's persisted cursor. Default `<kind>:<url or path>`. */
  readonly name: string;
  /** Events held in memory for this sink before the drop counter moves (they are re-read from the store). */
  readonly queueSize: number;
  /** Events sent in one syslog write, one webhook POST or one file append. */
  readonly batchSize: number;
  readonly from: ExportFrom;
}

export interface SyslogSinkConfig extends SinkBase {
  readonly kind: 'syslog';
  readonly url: string;
  readonly protocol: 'tcp' | 'tls';
  readonly host: string;
  readonly port: number;
  readonly format: ExportFormat;
  /** PEM of the CA(s) the receiver's certificate must chain to; undefined = Node's public roots. */
  readonly caPem: string | undefined;
  /** Client certificate and key (PEM) for receivers that ask for one. */
  readonly certPem: string | undefined;
  readonly keyPem: string | undefined;
  /** Name sent in SNI and checked in the receiver's certificate; default the URL's host. */
  readonly serverName: string | undefined;
  readonly facility: number;
  readonly facilityName: string;
  readonly appName: string;
  /**
   * TCP has no application acknowledgement: a batch counts as delivered once the
   * connection stayed up this long after the write.
   */
  readonly confirmMs: number;
}

export interface WebhookSinkConfig extends SinkBase {
  readonly kind: 'webhook';
  readonly url: string;
  /** HMAC-SHA256 key of the x-proxyctl-signature header. */
  readonly secret: string;
  readonly caPem: string | undefined;
  readonly timeoutMs: number;
}

export interface FileSinkConfig extends SinkBase {
  readonly kind: 'file';
  /** Absolute path of the NDJSON file. */
  readonly path: string;
  /** Rotated when the next batch would take it past this many bytes. */
  readonly maxSize: number;
  /** Rotated files kept (`x.ndjson.1` newest … `x.ndjson.<keep>`). */
  readonly keep: number;
}

export type ExportSinkConfig = SyslogSinkConfig | WebhookSinkConfig | FileSinkConfig;

const COMMON_KEYS = ['name', 'queueSize', 'batchSize', 'from'] as const;
export const EXPORT_KEYS = {
  syslog: [
    'url',
    'format',
    'caFile',
    'certFile',
    'keyFile',
    'serverName',
    'facility',
    'appName',
    'confirmTime',
    ...COMMON_KEYS,
  ],
  webhook: ['url', 'secretFile', 'secretEnv', 'caFile', 'timeout', ...COMMON_KEYS],
  file: ['path', 'maxSize', 'keep', ...COMMON_KEYS],
} as const;
const KINDS = Object.keys(EXPORT_KEYS) as (keyof typeof EXPORT_KEYS)[];

export const EXPORT_DEFAULTS = Object.freeze({
  queueSize: 10_000,
  batchSize: { syslog: 500, webhook: 100, file: 1000 },
  format: 'json',
  facility: 'authpriv',
  appName: 'proxyctl',
  confirmMs: 1500,
  timeoutMs: 10_000,
  maxSize: 100_000_000,
  keep: 5,
});

/** RFC 5424 facility names and codes. */
export const FACILITIES: Readonly<Record<string, number>> = Object.freeze({
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  ntp: 12,
  security: 13,
  console: 14,
  'solaris-cron': 15,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
});

/** A webhook secret shorter than this is refused: it is an HMAC key, not a password. */
const MIN_SECRET_BYTES = 16;

/** `export:` as written (raw is the value of that key, undefined when absent). `env` is for secretEnv. */
export function buildExport(
  v: Validation,
  raw: unknown,
  baseDir: string,
  env: NodeJS.ProcessEnv = process.env,
): ExportSinkConfig[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    v.fail('export', raw, 'a list of sinks such as [ { syslog: { url: "tls://siem.example:6514" } } ]');
    return [];
  }
  const sinks: ExportSinkConfig[] = [];
  const names = new Map<string, string>();
  raw.forEach((item: unknown, i) => {
    const p = join('export', i);
    const o = obj(v, p, item, KINDS);
    if (!o) return;
    const kinds = KINDS.filter((k) => o[k] !== undefined);
    if (kinds.length !== 1) {
      v.fail(p, item, 'a mapping with exactly one of syslog, webhook, file');
      return;
    }
    const kind = kinds[0]!;
    const kp = join(p, kind);
    const body = obj(v, kp, o[kind], EXPORT_KEYS[kind]);
    if (!body) return;
    const sink =
      kind === 'syslog'
        ? syslogSink(v, kp, body, baseDir)
        : kind === 'webhook'
          ? webhookSink(v, kp, body, baseDir, env)
          : fileSink(v, kp, body, baseDir);
    if (!sink) return;
    const taken = names.get(sink.name);
    if (taken !== undefined) {
      v.fail(join(kp, 'name'), sink.name, `a name no other sink has (${taken} has it; names key the stored cursor)`);
      return;
    }
    names.set(sink.name, kp);
    sinks.push(sink);
  });
  return sinks;
}

function common(
  v: Validation,
  p: string,
  o: Record<string, unknown>,
  kind: ExportSinkConfig['kind'],
  defaultName: string,
): SinkBase {
  const name =
    str(v, join(p, 'name'), o['name'], defaultName, /^[\x21-\x7e][\x20-\x7e]{0,199}$/, 'printable ASCII, 1 to 200') ??
    defaultName;
  return {
    name,
    queueSize: int(v, join(p, 'queueSize'), o['queueSize'], EXPORT_DEFAULTS.queueSize, 1, 10_000_000),
    batchSize: int(v, join(p, 'batchSize'), o['batchSize'], EXPORT_DEFAULTS.batchSize[kind], 1, 10_000),
    from: oneOf(v, join(p, 'from'), o['from'], ['head', 'start'] as const, 'head'),
  };
}

function syslogSink(
  v: Validation,
  p: string,
  o: Record<string, unknown>,
  baseDir: string,
): SyslogSinkConfig | undefined {
  const u = url(v, join(p, 'url'), o['url'], ['tcp', 'tls']);
  if (u && (!u.hostname || !u.port || (u.pathname !== '' && u.pathname !== '/'))) {
    v.fail(join(p, 'url'), o['url'], 'tcp://host:port or tls://host:port (a port, no path)');
    return undefined;
  }
  const format = oneOf(v, join(p, 'format'), o['format'], ['json', 'cef'] as const, EXPORT_DEFAULTS.format);
  const caPem = pemFile(v, join(p, 'caFile'), o['caFile'], baseDir, 'certificate');
  const certPem = pemFile(v, join(p, 'certFile'), o['certFile'], baseDir, 'certificate');
  const keyPem = pemFile(v, join(p, 'keyFile'), o['keyFile'], baseDir, 'key');
  if ((o['certFile'] === undefined) !== (o['keyFile'] === undefined))
    v.fail(join(p, o['certFile'] === undefined ? 'certFile' : 'keyFile'), undefined, 'certFile and keyFile together');
  if (certPem && keyPem) matchingKey(v, join(p, 'keyFile'), o['keyFile'], certPem, keyPem);
  const protocol = u?.protocol === 'tls:' ? 'tls' : 'tcp';
  for (const k of ['caFile', 'certFile', 'keyFile', 'serverName'])
    if (protocol === 'tcp' && o[k] !== undefined) v.fail(join(p, k), o[k], `nothing: ${k} needs a tls:// url`);
  const serverName = optStr(v, join(p, 'serverName'), o['serverName']);
  const facilityName = oneOf(v, join(p, 'facility'), o['facility'], Object.keys(FACILITIES), EXPORT_DEFAULTS.facility);
  const appName =
    str(
      v,
      join(p, 'appName'),
      o['appName'],
      EXPORT_DEFAULTS.appName,
      /^[\x21-\x7e]{1,48}$/,
      'printable ASCII, 1 to 48, no spaces',
    ) ?? EXPORT_DEFAULTS.appName;
  const confirmMs = duration(v, join(p, 'confirmTime'), o['confirmTime'], `${EXPORT_DEFAULTS.confirmMs}ms`, 0);
  if (!u) return undefined;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return {
    kind: 'syslog',
    ...common(v, p, o, 'syslog', `syslog:${u.protocol}//${u.host}`),
    url: `${u.protocol}//${u.host}`,
    protocol,
    host,
    port: Number(u.port),
    format,
    caPem,
    certPem,
    keyPem,
    serverName,
    facility: FACILITIES[facilityName]!,
    facilityName,
    appName,
    confirmMs,
  };
}

function webhookSink(
  v: Validation,
  p: string,
  o: Record<string, unknown>,
  baseDir: string,
  env: NodeJS.ProcessEnv,
): WebhookSinkConfig | undefined {
  const u = url(v, join(p, 'url'), o['url'], ['https', 'http']);
  if (u && u.protocol === 'http:' && !isLoopback(u.hostname)) {
    v.fail(join(p, 'url'), o['url'], 'an https:// URL (http:// only to a loopback address)');
  }
  const secret = webhookSecret(v, p, o, baseDir, env);
  const caPem = pemFile(v, join(p, 'caFile'), o['caFile'], baseDir, 'certificate');
  if (u?.protocol === 'http:' && o['caFile'] !== undefined)
    v.fail(join(p, 'caFile'), o['caFile'], 'nothing: caFile needs an https:// url');
  const timeoutMs = duration(v, join(p, 'timeout'), o['timeout'], `${EXPORT_DEFAULTS.timeoutMs}ms`, 100);
  if (!u || secret === undefined) return undefined;
  return {
    kind: 'webhook',
    ...common(v, p, o, 'webhook', `webhook:${u.href}`),
    url: u.href,
    secret,
    caPem,
    timeoutMs,
  };
}

function fileSink(v: Validation, p: string, o: Record<string, unknown>, baseDir: string): FileSinkConfig | undefined {
  const text = str(v, join(p, 'path'), o['path']);
  let file: string | undefined;
  if (text !== undefined) {
    file = path.resolve(baseDir, text);
    try {
      if (!statSync(path.dirname(file)).isDirectory()) throw new Error('not a directory');
      if (statSync(file, { throwIfNoEntry: false })?.isDirectory()) {
        v.fail(join(p, 'path'), text, 'a file path, not a directory');
        file = undefined;
      }
    } catch {
      v.fail(join(p, 'path'), text, 'a file in an existing directory');
      file = undefined;
    }
  }
  const rawSize = o['maxSize'];
  let maxSize: number = EXPORT_DEFAULTS.maxSize;
  if (rawSize !== undefined) {
    const n = typeof rawSize === 'number' ? rawSize : typeof rawSize === 'string' ? parseSize(rawSize) : undefined;
    if (n === undefined || !Number.isSafeInteger(n) || n < 1024) {
      v.fail(join(p, 'maxSize'), rawSize, 'a size of at least 1KiB, such as 100MB or 1GiB');
    } else {
      maxSize = n;
    }
  }
  const keep = int(v, join(p, 'keep'), o['keep'], EXPORT_DEFAULTS.keep, 0, 1000);
  if (file === undefined) return undefined;
  return { kind: 'file', ...common(v, p, o, 'file', `file:${file}`), path: file, maxSize, keep };
}

function webhookSecret(
  v: Validation,
  p: string,
  o: Record<string, unknown>,
  baseDir: string,
  env: NodeJS.ProcessEnv,
): string | undefined {
  const file = optStr(v, join(p, 'secretFile'), o['secretFile']);
  const envName = optStr(v, join(p, 'secretEnv'), o['secretEnv']);
  if ((file === undefined) === (envName === undefined)) {
    if (o['secretFile'] === undefined && o['secretEnv'] === undefined)
      v.fail(join(p, 'secretFile'), undefined, 'secretFile or secretEnv (the HMAC key of the signature)');
    else if (file !== undefined) v.fail(join(p, 'secretEnv'), envName, 'either secretFile or secretEnv, not both');
    return undefined;
  }
  let secret: string | undefined;
  let where: string;
  if (file !== undefined) {
    where = join(p, 'secretFile');
    try {
      secret = readFileSync(path.resolve(baseDir, file), 'utf8').trim();
    } catch (err) {
      return v.fail(where, file, `a readable file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    }
  } else {
    where = join(p, 'secretEnv');
    secret = env[envName!];
    if (secret === undefined) return v.fail(where, envName, 'the name of an environment variable that is set');
    secret = secret.trim();
  }
  if (Buffer.byteLength(secret) < MIN_SECRET_BYTES)
    // The secret itself is never shown.
    return v.fail(where, file ?? envName, `a secret of at least ${MIN_SECRET_BYTES} bytes`);
  return secret;
}

/** Reads a PEM file named by the config; undefined when the key is absent or the file is refused. */
function pemFile(
  v: Validation,
  p: string,
  raw: unknown,
  baseDir: string,
  what: 'certificate' | 'key',
): string | undefined {
  const file = optStr(v, p, raw);
  if (file === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(path.resolve(baseDir, file), 'utf8');
  } catch (err) {
    return v.fail(p, file, `a readable PEM file (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  try {
    if (what === 'certificate') new X509Certificate(pem);
    else createPrivateKey(pem);
  } catch {
    return v.fail(p, file, what === 'certificate' ? 'a PEM certificate' : 'a PEM private key');
  }
  return pem;
}

function matchingKey(v: Validation, p: string, raw: unknown, certPem: string, keyPem: string): void {
  try {
    if (!new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem)))
      v.fail(p, raw, 'the private key of the certificate in certFile');
  } catch {
    v.fail(p, raw, 'the private key of the certificate in certFile');
  }
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}
