// Black-box helpers: run the built `proxyctl` binary as a user would, watch its
// JSON log lines, and inspect its sockets through /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(ROOT, 'bin/proxyctl.js');

export function tempDir(t: { teardown(fn: () => void): void }, prefix = 'proxyctl-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment a user's shell would give the binary: the test's, without tap's
 * loaders (NODE_OPTIONS would load tap's process tracker into every child, slowing each
 * start), without a token, a relay URL or a user config directory.
 */
function childEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NODE_OPTIONS: undefined,
    PROXYCTL_TOKEN: undefined,
    PROXYCTL_RELAY: undefined,
    PROXYCTL_CONFIG_DIR: '/nonexistent/proxyctl-config',
  };
}

export function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...childEnv(), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface LogLine {
  msg?: string;
  level?: string;
  [k: string]: unknown;
}

/** A long-running proxyctl process whose JSON log lines can be awaited. */
export class Proc {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  stderrText = '';
  stdoutText = '';
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  private stdoutWaiters: (() => void)[] = [];
  /** The process has exited and its output streams are closed: nothing more will be printed. */
  private outputClosed = false;
  readonly exited: Promise<number | null>;

  constructor(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...childEnv(), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderrText += d.toString();
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { msg: text, raw: true };
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.stdoutText += d.toString();
      for (const check of [...this.stdoutWaiters]) check();
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    this.child.on('close', () => (this.outputClosed = true));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Resolves with the first log line (already seen, or future) matching pred. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<LogLine> {
    const seen = this.lines.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for log line; stderr so far:\n${this.stderrText.slice(-3000)}`)),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`process exited (${code}) while waiting; stderr:\n${this.stderrText.slice(-3000)}`));
      });
    });
  }

  waitMsg(msg: string, timeoutMs?: number, from = 0): Promise<LogLine> {
    return this.waitFor((l) => l.msg === msg, timeoutMs, from);
  }

  /**
   * Resolves with the match once stdout (everything printed so far, or later) matches re;
   * rejects after timeoutMs, or when the process has closed its output without printing it.
   */
  waitForStdout(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    const re = new RegExp(pattern.source, pattern.flags.replace(/[gy]/g, '')); // no lastIndex state
    const seen = re.exec(this.stdoutText);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.stdoutWaiters = this.stdoutWaiters.filter((w) => w !== check);
        this.child.off('close', onClose);
      };
      const check = () => {
        const m = re.exec(this.stdoutText);
        if (!m) return;
        done();
        resolve(m);
      };
      const fail = (why: string) => {
        done();
        reject(
          new Error(
            `${why} waiting for ${re} on stdout; stdout:\n${this.stdoutText}\nstderr:\n${this.stderrText.slice(-3000)}`,
          ),
        );
      };
      const onClose = () => fail(`process exited (${this.child.exitCode ?? this.child.signalCode})`);
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      if (this.outputClosed) return onClose();
      this.stdoutWaiters.push(check);
      // 'close' (not 'exit'): every byte the process printed has been read by then.
      this.child.once('close', onClose);
    });
  }

  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}

/** TCP sockets in LISTEN state owned by a process: [{ address, port }]. */
export function listeningSockets(pid: number): { address: string; port: number }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // fd closed meanwhile
    }
  }
  const out: { address: string; port: number }[] = [];
  for (const table of ['tcp', 'tcp6']) {
    const rows = readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1);
    for (const row of rows) {
      const cols = row.trim().split(/\s+/);
      const [local, , state] = [cols[1]!, cols[2]!, cols[3]!];
      if (state !== '0A' || !inodes.has(cols[9]!)) continue;
      const [hexAddr, hexPort] = local.split(':') as [string, string];
      out.push({ address: decodeAddr(hexAddr), port: parseInt(hexPort, 16) });
    }
  }
  return out;
}

function decodeAddr(hex: string): string {
  if (hex.length === 8) return [3, 2, 1, 0].map((i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16)).join('.');
  // IPv6 in /proc is four little-endian 32-bit words.
  const words = hex.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().join(''));
  const v6 = words
    .join('')
    .match(/.{4}/g)!
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':');
  return v6 === '0:0:0:0:0:0:0:1' ? '::1' : v6;
}

/**
 * A port nothing listens on (bound and closed a moment ago): only for "the backend is
 * down" cases. A server must listen on port 0 and report its port instead.
 */
export function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}
