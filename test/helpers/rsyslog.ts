// Debian's rsyslogd as the SIEM under test: a TCP input and, with certificates, a TLS
// input (GnuTLS, client certificate required), both on ports the kernel picks
// (listenPortFileName), writing each record it parsed as one JSON line (omfile). And
// strict parsers for what proxyctl writes (RFC 5424, RFC 6587 octet counting, CEF),
// so tests read records back the way a SIEM does.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import type { ExporterOptions } from '../../src/export/exporter.js';
import type { SyslogSinkConfig } from '../../src/config/export-config.js';
import type {
  AuditEntry,
  EventCursor,
  EventFeed,
  ExportCursorRepo,
  RiskDetectionRecord,
  SecurityEvent,
  SignInRecord,
} from '../../src/store/types.js';
import { caFromPem, generateCa } from '../../src/crypto/ca.js';
import { ec, ecCsr } from './csr.js';
import { tempDir } from './proc.js';
import { waitFor } from './wait.js';

export const RSYSLOGD = ['/usr/sbin/rsyslogd', '/sbin/rsyslogd'].find((p) => existsSync(p));
/** Why rsyslog tests skip, or false when they can run (CI installs the packages). */
export const rsyslogMissing: string | false = RSYSLOGD
  ? existsSync('/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so') || existsSync('/usr/lib/rsyslog/lmnsd_gtls.so')
    ? false
    : 'rsyslog-gnutls is not installed (apt-get install rsyslog-gnutls)'
  : 'rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls)';

export interface RsyslogTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** One record as rsyslog parsed it. */
export interface ReceivedRecord {
  pri: string;
  time: string;
  host: string;
  app: string;
  procid: string;
  msgid: string;
  sd: string;
  msg: string;
}

interface Test {
  teardown(fn: () => void | Promise<void>): void;
}

export class Rsyslog {
  tcpPort = 0;
  tlsPort = 0;
  private proc: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly dir: string;
  readonly outFile: string;

  constructor(
    t: Test,
    private readonly tls: RsyslogTls | undefined,
  ) {
    this.dir = tempDir(t, 'proxyctl-rsyslog-');
    this.outFile = path.join(this.dir, 'received.jsonl');
    if (tls) {
      writeFileSync(path.join(this.dir, 'ca.pem'), tls.caPem);
      writeFileSync(path.join(this.dir, 'cert.pem'), tls.certPem);
      writeFileSync(path.join(this.dir, 'key.pem'), tls.keyPem, { mode: 0o600 });
    }
    t.teardown(() => this.stop());
  }

  /** Starts rsyslogd; the first start takes ports from the kernel, a restart listens on the same ones again. */
  async start(): Promise<void> {
    if (!RSYSLOGD) throw new Error('rsyslogd is not installed');
    const d = this.dir;
    const tcpPortFile = path.join(d, 'tcp.port');
    const tlsPortFile = path.join(d, 'tls.port');
    for (const f of [tcpPortFile, tlsPortFile]) writeFileSync(f, '');
    const conf = path.join(d, 'rsyslog.conf');
    writeFileSync(
      conf,
      [
        `global(workDirectory="${d}" maxMessageSize="1m")`,
        'module(load="imtcp" maxSessions="200")',
        'template(name="record" type="list" option.jsonf="on") {',
        ...[
          ['pri', 'pri'],
          ['time', 'timereported'],
          ['host', 'hostname'],
          ['app', 'app-name'],
          ['procid', 'procid'],
          ['msgid', 'msgid'],
          ['sd', 'structured-data'],
          ['msg', 'msg'],
        ].map(([out, name]) => `  property(outname="${out}" name="${name}" format="jsonf" dateFormat="rfc3339")`),
        '}',
        `input(type="imtcp" port="${this.tcpPort}" listenPortFileName="${tcpPortFile}" ruleset="siem")`,
        ...(this.tls
          ? [
              `input(type="imtcp" port="${this.tlsPort}" listenPortFileName="${tlsPortFile}" ruleset="siem"`,
              '  streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid"',
              `  streamDriver.CAFile="${d}/ca.pem" streamDriver.CertFile="${d}/cert.pem" streamDriver.KeyFile="${d}/key.pem")`,
            ]
          : []),
        `ruleset(name="siem") { action(type="omfile" file="${this.outFile}" template="record") }`,
        '',
      ].join('\n'),
    );
    const proc = spawn(RSYSLOGD, ['-n', '-f', conf, '-i', path.join(d, 'rsyslogd.pid')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    const portOf = (f: string) => Number(readFileSync(f, 'utf8').trim());
    const restart = this.tcpPort > 0;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`rsyslogd exited ${proc.exitCode}: ${stderr}`);
        // rsyslog writes the port file only for a port it was given as 0; a restart is probed.
        if (restart) return (await accepts(this.tcpPort)) && (!this.tls || (await accepts(this.tlsPort)));
        return portOf(tcpPortFile) > 0 && (!this.tls || portOf(tlsPortFile) > 0);
      },
      { timeoutMs: 15_000, what: 'rsyslogd listening' },
    );
    if (!restart) {
      this.tcpPort = portOf(tcpPortFile);
      if (this.tls) this.tlsPort = portOf(tlsPortFile);
    }
  }

  /** SIGTERM: rsyslog closes its inputs and writes out what it received. */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    proc.kill('SIGTERM');
    await this.exited;
  }

  /** Every record written so far. */
  records(): ReceivedRecord[] {
    if (!existsSync(this.outFile)) return [];
    const lines = readFileSync(this.outFile, 'utf8').split('\n');
    // The last piece is a line rsyslog is still writing (or the empty rest after the final newline).
    return lines.slice(0, -1).map((l) => JSON.parse(l) as ReceivedRecord);
  }

  /** The event ids of the records received (STRUCTURED-DATA id param), in order. */
  ids(): string[] {
    return this.records().map((r) => sdParam(r.sd, 'id') ?? '?');
  }
}

/** Whether something accepts TCP connections on the port (closed again at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startRsyslog(t: Test, tls?: RsyslogTls): Promise<Rsyslog> {
  const r = new Rsyslog(t, tls);
  await r.start();
  return r;
}

// --- Parsers ---------------------------------------------------------------------

/** A PARAM-VALUE of a structured-data element, unescaped; undefined when absent. */
export function sdParam(sd: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}="((?:[^"\\\\\\]]|\\\\["\\\\\\]])*)"`).exec(sd);
  return m?.[1]!.replace(/\\(["\\\]])/g, '$1');
}

export interface Rfc5424 {
  pri: number;
  version: number;
  time: string;
  host: string;
  app: string;
  procid: string;
  msgid: string;
  sd: string;
  msg: string;
}

const SD_PARAM = String.raw`[^\s="\]]{1,32}="(?:[^"\\\]]|\\["\\\]])*"`;
const SD_ELEMENT = String.raw`\[[^\s="\]]{1,32}(?: ${SD_PARAM})*\]`;
const RFC5424 = new RegExp(
  String.raw`^<(\d{1,3})>(\d{1,2}) (\S+) ([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) (-|(?:${SD_ELEMENT})+)(?: ([\s\S]*))?$`,
);

/** Parses one record strictly; throws when it is not RFC 5424. */
export function parseRfc5424(line: string): Rfc5424 {
  const m = RFC5424.exec(line);
  if (!m) throw new Error(`not an RFC 5424 record: ${JSON.stringify(line.slice(0, 200))}`);
  return {
    pri: Number(m[1]),
    version: Number(m[2]),
    time: m[3]!,
    host: m[4]!,
    app: m[5]!,
    procid: m[6]!,
    msgid: m[7]!,
    sd: m[8]!,
    msg: m[9] ?? '',
  };
}

/** Splits an RFC 6587 octet-counted stream into records; throws on a broken frame. */
export function parseOctetCounted(stream: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < stream.length) {
    const sp = stream.indexOf(0x20, i);
    const len = Number(stream.subarray(i, sp).toString('ascii'));
    if (sp < 0 || !/^[1-9]\d*$/.test(stream.subarray(i, sp).toString('ascii')) || sp + 1 + len > stream.length)
      throw new Error(`broken octet-counted frame at byte ${i}`);
    out.push(stream.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    i = sp + 1 + len;
  }
  return out;
}

export interface Cef {
  header: string[];
  ext: Record<string, string>;
  /** Extension keys in order (a forged key shows up here). */
  keys: string[];
}

/** Parses CEF:0 as a SIEM does: seven header fields split on unescaped `|`, then key=value pairs. */
export function parseCef(line: string): Cef {
  const header: string[] = [];
  let i = 0;
  let field = '';
  while (header.length < 7) {
    if (i >= line.length) throw new Error('CEF header ended early');
    const c = line[i]!;
    if (c === '\\' && (line[i + 1] === '|' || line[i + 1] === '\\')) {
      field += line[i + 1];
      i += 2;
    } else if (c === '|') {
      header.push(field);
      field = '';
      i++;
    } else {
      field += c;
      i++;
    }
  }
  const rest = line.slice(i);
  const ext: Record<string, string> = {};
  const keys: string[] = [];
  // A key starts the text or follows a space, and its `=` is not escaped.
  const starts = [...rest.matchAll(/(?:^| )([A-Za-z0-9_]+)=/g)];
  starts.forEach((m, k) => {
    const from = m.index + m[0].length;
    const to = k + 1 < starts.length ? starts[k + 1]!.index : rest.length;
    const raw = rest.slice(from, to);
    keys.push(m[1]!);
    ext[m[1]!] = raw.replace(/\\([\\=nr])/g, (_s, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
  });
  return { header, ext, keys };
}

/** A syslog sink as buildExport makes it, sending to 127.0.0.1:`port`. */
export function syslogSink(over: Partial<SyslogSinkConfig> & { port: number }): SyslogSinkConfig {
  const protocol = over.protocol ?? 'tcp';
  return {
    kind: 'syslog',
    name: `syslog:${protocol}://127.0.0.1:${over.port}`,
    url: `${protocol}://127.0.0.1:${over.port}`,
    protocol,
    host: '127.0.0.1',
    format: 'json',
    caPem: undefined,
    certPem: undefined,
    keyPem: undefined,
    serverName: undefined,
    facility: 10,
    facilityName: 'authpriv',
    appName: 'proxyctl',
    confirmMs: 300,
    queueSize: 10_000,
    batchSize: 100,
    from: 'start',
    ...over,
  };
}

// --- Events to send ----------------------------------------------------------------

export function signInRecord(id: number, over: Partial<SignInRecord> = {}): SignInRecord {
  return {
    id,
    at: Date.UTC(2026, 0, 2, 3, 4, 5, 678) + id,
    requestId: `req-${id}`,
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    kind: 'interactive',
    app: 'wiki',
    subject: 'alice@example.com',
    ip: '203.0.113.7',
    country: 'DE',
    city: 'Berlin',
    latitude: 52.52,
    longitude: 13.405,
    asn: 64500,
    network: 'Example Net',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0',
    browser: 'Firefox 130',
    os: 'Linux',
    clientType: 'browser',
    methods: ['pwd', 'otp'],
    result: 'success',
    reason: null,
    policies: [{ name: 'mfa-for-admins', result: 'success' }],
    risk: 'none',
    detections: [],
    ...over,
  };
}

export function signInEvent(id: number, over: Partial<SignInRecord> = {}): SecurityEvent {
  const data = signInRecord(id, over);
  return { id: `signin-${id}`, kind: 'signIn', at: data.at, data };
}

export function auditEvent(id: number, over: Partial<AuditEntry> = {}): SecurityEvent {
  const data: AuditEntry = {
    id,
    at: Date.UTC(2026, 0, 2, 3, 4, 5) + id,
    actor: 'admin@example.com',
    action: 'connector.revoke',
    connectorId: 'c-1',
    details: { reason: 'lost laptop' },
    ...over,
  };
  return { id: `audit-${id}`, kind: 'audit', at: data.at, data };
}

export function riskEvent(id: number, over: Partial<RiskDetectionRecord> = {}): SecurityEvent {
  const data: RiskDetectionRecord = {
    id,
    at: Date.UTC(2026, 0, 2, 3, 4, 5) + id,
    subject: 'alice@example.com',
    ip: '198.51.100.9',
    app: 'wiki',
    type: 'atypicalTravel',
    level: 'high',
    signInId: 3,
    requestId: 'req-3',
    details: { km: 6200, minutes: 40 },
    ...over,
  };
  return { id: `risk-${id}`, kind: 'riskDetection', at: data.at, data };
}

// --- A store for exporters under test ---------------------------------------------

/**
 * The three logs in commit order, cursors and leases, in memory: what the SQLite and
 * PostgreSQL stores keep, for exporter tests that do not need a database.
 */
export class MemoryStore implements EventFeed {
  readonly log: SecurityEvent[] = [];
  reads = 0;
  readonly saved = new Map<string, EventCursor>();
  readonly leases = new Map<string, { owner: string; until: number }>();
  private next = { signIn: 0, audit: 0, riskDetection: 0 };

  add(kind: SecurityEvent['kind'] = 'signIn'): SecurityEvent {
    const n = ++this.next[kind];
    const e = kind === 'signIn' ? signInEvent(n) : kind === 'audit' ? auditEvent(n) : riskEvent(n);
    this.log.push(e);
    return e;
  }

  read(after: EventCursor, limit: number): Promise<{ events: SecurityEvent[]; cursor: EventCursor }> {
    this.reads++;
    const events = this.log.filter((e) => e.data.id > after[e.kind]).slice(0, limit);
    const cursor = { ...after };
    for (const e of events) cursor[e.kind] = e.data.id;
    return Promise.resolve({ events, cursor });
  }

  head(): Promise<EventCursor> {
    return Promise.resolve({ ...this.next });
  }

  readonly cursors: ExportCursorRepo = {
    load: (sink) => Promise.resolve(this.saved.get(sink)),
    save: (sink, cursor, owner) => {
      if (this.leases.get(sink)?.owner !== owner) return Promise.resolve(false);
      this.saved.set(sink, { ...cursor });
      return Promise.resolve(true);
    },
    claim: (sink, owner, until, now) => {
      const l = this.leases.get(sink);
      if (l && l.owner !== owner && l.until > now) return Promise.resolve(false);
      this.leases.set(sink, { owner, until });
      return Promise.resolve(true);
    },
    release: (sink, owner) => {
      if (this.leases.get(sink)?.owner === owner) this.leases.delete(sink);
      return Promise.resolve();
    },
  };

  get store(): ExporterOptions['store'] {
    return { events: this, exportCursors: this.cursors };
  }
}

// --- Certificates ------------------------------------------------------------------

export interface TestPki {
  caPem: string;
  /** For 127.0.0.1 and localhost. */
  server: { certPem: string; keyPem: string };
  /** A client certificate from the same CA (clientAuth). */
  client: { certPem: string; keyPem: string };
}

/** A CA made for this run, with a server and a client certificate (the relay CA's own code issues them). */
export async function makeTestPki(): Promise<TestPki> {
  const pem = await generateCa();
  const ca = await caFromPem(pem.certPem, pem.keyPem, 'test CA');
  const server = await ca.issueServerCertificate(['127.0.0.1', 'localhost'], 86_400_000);
  const keys = ec('prime256v1');
  const client = await ca.signConnectorCsr(ecCsr(keys), { connectorId: 'siem-client', lifetimeMs: 86_400_000 });
  return {
    caPem: pem.certPem,
    server: { certPem: server.certPem, keyPem: server.keyPem },
    client: {
      certPem: client.certPem,
      keyPem: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    },
  };
}
