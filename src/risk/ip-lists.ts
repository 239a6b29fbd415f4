// Address lists behind the anonymous-IP and malicious-IP detections: files of
// addresses and CIDR ranges, one a line, or the Tor exit list format. Each file
// is re-read when it changes (fs.watch on its folder, so a file replaced by
// rename is seen, plus a slow stat poll for file systems that do not notify);
// an unreadable or vanished file keeps the last list that was read.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { ProxyctlError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseCidr, type Cidr } from '../net/address.js';
import { RangeTable, addressKey, cidrBounds } from './ranges.js';

/** Anonymous: Tor exits, anonymising VPNs and proxies. Malicious: known attack sources. */
export type ListKind = 'anonymous' | 'malicious';

export interface ListProblem {
  line: number;
  reason: string;
  /** The line, cut to 80 characters. */
  text: string;
}

/** Membership of any spelling of an address in a parsed list. */
export class IpMatcher {
  private readonly v4 = new RangeTable(1);
  private readonly v6 = new RangeTable(4);

  /** Entries as written (before overlapping ranges are merged). */
  entries = 0;

  add(c: Cidr): void {
    const [start, end] = cidrBounds(c);
    (c.family === 'ipv4' ? this.v4 : this.v6).add(start, end);
    this.entries++;
  }

  build(): this {
    this.v4.build(true);
    this.v6.build(true);
    return this;
  }

  has(address: string): boolean {
    const key = addressKey(address);
    if (!key) return false;
    return (key.length === 1 ? this.v4 : this.v6).find(key) !== undefined;
  }
}

export interface ParsedIpList {
  matcher: IpMatcher;
  /** Lines that were neither an entry, a comment, a blank nor a Tor exit list header. */
  bad: number;
  /** The first MAX_PROBLEMS bad lines. */
  problems: ListProblem[];
}

/** Bad lines named one by one in the log; the rest are only counted. */
export const MAX_PROBLEMS = 20;
/** No address or range is written longer; a longer line is refused unread. */
const MAX_LINE = 256;
/** Wider ranges than these are refused: a list saying "the whole internet" is a broken list. */
const MIN_BITS = { ipv4: 8, ipv6: 16 } as const;
const TOR_HEADER = /^(?:ExitNode|Published|LastStatus)(?:\s|$)/;
const TOR_EXIT = /^ExitAddress\s+(\S+)(?:\s|$)/;

/**
 * Plain lines ("192.0.2.7", "198.51.100.0/24", "2001:db8::/48"), `#` or `;`
 * comments (whole-line or trailing), blanks, and the Tor exit list
 * ("ExitAddress 192.0.2.7 2024-05-01 10:00:00"; ExitNode, Published and
 * LastStatus lines skipped).
 */
export function parseIpList(text: string): ParsedIpList {
  const steps = parseSteps(text);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** parseIpList, letting the event loop run every few milliseconds (a 100k-line list takes about half a second). */
export async function parseIpListAsync(text: string): Promise<ParsedIpList> {
  const steps = parseSteps(text);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const SLICE_MS = 8;

/** The parser, yielding when it has run SLICE_MS. */
function* parseSteps(text: string): Generator<void, ParsedIpList> {
  const matcher = new IpMatcher();
  const problems: ListProblem[] = [];
  let bad = 0;
  const fail = (line: number, reason: string, raw: string) => {
    bad++;
    if (problems.length < MAX_PROBLEMS) problems.push({ line, reason, text: raw.slice(0, 80) });
  };
  const lines = text.split('\n');
  let sliceStart = performance.now();
  for (let i = 0; i < lines.length; i++) {
    if (i % 256 === 255 && performance.now() - sliceStart > SLICE_MS) {
      yield;
      sliceStart = performance.now();
    }
    let raw = lines[i]!;
    if (i === 0 && raw.charCodeAt(0) === 0xfeff) raw = raw.slice(1);
    if (raw.length > MAX_LINE) {
      fail(i + 1, 'line too long', raw);
      continue;
    }
    const cut = raw.search(/[#;]/);
    const line = (cut === -1 ? raw : raw.slice(0, cut)).trim();
    if (line === '' || TOR_HEADER.test(line)) continue;
    const entry = TOR_EXIT.exec(line)?.[1] ?? line;
    const c = /\s/.test(entry) ? undefined : parseCidr(entry);
    if (!c) fail(i + 1, 'not an address or CIDR range', raw);
    else if (c.bits < MIN_BITS[c.family]) fail(i + 1, `range wider than /${MIN_BITS[c.family]}`, raw);
    else matcher.add(c);
  }
  return { matcher: matcher.build(), bad, problems };
}

export interface IpListOptions {
  clock?: Clock;
  logger?: Logger;
  /** Stat poll interval, in ms (default 60 s); the fallback when fs.watch says nothing. */
  pollMs?: number;
  /** Quiet time after a change event before the file is read (default 200 ms): writers write in pieces. */
  settleMs?: number;
  /** Use fs.watch (default true); the poll runs either way. */
  watch?: boolean;
}

/** Larger list files are refused (the last good list is kept): a download gone wrong, not a list. */
export const MAX_LIST_BYTES = 64 * 1024 * 1024;

export interface IpListStats {
  file: string;
  kind: ListKind;
  entries: number;
  bad: number;
  /** Successful reads so far (1 after start). */
  loads: number;
  loadedAt: number | null;
  /** Why the last read attempt failed, while the file stays unreadable. */
  error: string | null;
}

/** One list file, kept current. */
export class IpListFile {
  private matcher = new IpMatcher().build();
  private watcher: FSWatcher | undefined;
  private poll: Timer | undefined;
  private settle: Timer | undefined;
  private version = '';
  private reading: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private readonly clock: Clock;
  private readonly info: IpListStats;

  constructor(
    readonly file: string,
    readonly kind: ListKind,
    private readonly options: IpListOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.info = { file, kind, entries: 0, bad: 0, loads: 0, loadedAt: null, error: null };
  }

  get stats(): IpListStats {
    return { ...this.info };
  }

  has(address: string): boolean {
    return this.matcher.has(address);
  }

  /** Reads the file (refused with ERR_CONFIG_READ when it cannot be), then watches it. */
  async start(): Promise<void> {
    await this.read(true);
    if (this.closed) return;
    if (this.options.watch !== false) this.watchFolder();
    this.poll = this.clock.setInterval(() => void this.checkStat(), this.options.pollMs ?? 60_000);
    this.poll.unref();
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.clock.clearInterval(this.poll);
    this.clock.clearTimeout(this.settle);
  }

  /** Re-reads the file now (what a change event leads to); concurrent calls share one read. */
  reload(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        await this.read(false);
      } while (this.again && !this.closed);
    })().finally(() => (this.reading = undefined));
    return this.reading;
  }

  private watchFolder(): void {
    const base = path.basename(this.file);
    try {
      this.watcher = watch(path.dirname(this.file), { persistent: false }, (_event, name) => {
        if (name !== null && name !== base) return;
        this.clock.clearTimeout(this.settle);
        this.settle = this.clock.setTimeout(() => void this.reload(), this.options.settleMs ?? 200);
      });
      this.watcher.on('error', () => {
        // The folder went away or cannot be watched: the poll carries on alone.
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      this.watcher = undefined;
    }
  }

  private async checkStat(): Promise<void> {
    if (this.closed) return;
    try {
      const s = await stat(this.file);
      if (versionOf(s) !== this.version) await this.reload();
    } catch (err) {
      this.unreadable(err);
    }
  }

  private async read(first: boolean): Promise<void> {
    let text: string;
    let version: string;
    try {
      const s = await stat(this.file);
      if (!s.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOTFILE' });
      if (s.size > MAX_LIST_BYTES) throw Object.assign(new Error('file too large'), { code: 'EFBIG' });
      version = versionOf(s);
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if (first) {
        throw new ProxyctlError(
          'ERR_CONFIG_READ',
          `cannot read the ${this.kind} IP list ${this.file}: ${codeOf(err)}`,
          {
            cause: err,
            details: { file: this.file },
          },
        );
      }
      this.unreadable(err);
      return;
    }
    if (this.closed) return;
    const parsed = await parseIpListAsync(text);
    if (this.closed) return;
    this.matcher = parsed.matcher;
    this.version = version;
    Object.assign(this.info, {
      entries: parsed.matcher.entries,
      bad: parsed.bad,
      loads: this.info.loads + 1,
      loadedAt: this.clock.now(),
      error: null,
    });
    const log = this.options.logger;
    for (const p of parsed.problems) {
      log?.warn(
        { list: this.kind, where: `${this.file}:${p.line}`, reason: p.reason, line: p.text },
        'IP list line skipped',
      );
    }
    log?.info(
      { list: this.kind, file: this.file, entries: parsed.matcher.entries, bad_lines: parsed.bad },
      first ? 'IP list loaded' : 'IP list re-read',
    );
  }

  private unreadable(err: unknown): void {
    const reason = codeOf(err);
    if (this.info.error === reason) return;
    this.info.error = reason;
    this.options.logger?.warn(
      { list: this.kind, file: this.file, error: reason, entries: this.info.entries },
      'IP list unreadable; keeping the last one read',
    );
  }
}

function versionOf(s: { mtimeMs: number; size: number; ino: number }): string {
  return `${s.mtimeMs}:${s.size}:${s.ino}`;
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : String((err as Error | null)?.message ?? err).slice(0, 120);
}

export interface IpListsConfig {
  anonymous: readonly string[];
  malicious: readonly string[];
}

/** The anonymous and malicious lists together: which file, if any, lists an address. */
export class IpLists {
  private readonly files: IpListFile[];

  constructor(config: IpListsConfig, options: IpListOptions = {}) {
    this.files = [
      ...config.anonymous.map((f) => new IpListFile(f, 'anonymous', options)),
      ...config.malicious.map((f) => new IpListFile(f, 'malicious', options)),
    ];
  }

  /** Reads every file; refused (ERR_CONFIG_READ) when one cannot be read. */
  async start(): Promise<void> {
    try {
      await Promise.all(this.files.map((f) => f.start()));
    } catch (err) {
      this.close();
      throw err;
    }
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  get stats(): IpListStats[] {
    return this.files.map((f) => f.stats);
  }

  /** The first file of that kind listing the address, or undefined. */
  listing(kind: ListKind, address: string | null | undefined): string | undefined {
    if (!address) return undefined;
    return this.files.find((f) => f.kind === kind && f.has(address))?.file;
  }

  isAnonymous(address: string | null | undefined): boolean {
    return this.listing('anonymous', address) !== undefined;
  }

  isMalicious(address: string | null | undefined): boolean {
    return this.listing('malicious', address) !== undefined;
  }
}
