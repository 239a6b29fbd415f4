// Structured JSON logs on stderr (stdout is kept for command output).
// Field names are fixed: request_id, app, connector_id, status, duration_ms.
// Never pass tokens, cookies or keys to a logger: no call site does, and there is
// no redaction pass to hide a mistake (it cost ~5% of the relay's CPU per request).
import { pino, destination, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * pino's `"time"` field, ISO 8601 in UTC with milliseconds, exactly as
 * `Date#toISOString` writes it. The date and clock part is formatted once per
 * second and reused: formatting a Date for every request line was ~2.5% of the
 * relay's instructions per small request (callgrind).
 */
let second = Number.NaN;
let secondPrefix = '';
export function isoTimeField(now: number = Date.now()): string {
  const s = Math.floor(now / 1000);
  if (s !== second) {
    second = s;
    secondPrefix = new Date(s * 1000).toISOString().slice(0, -4); // "2026-11-27T16:27:07."
  }
  const ms = now - s * 1000;
  return `,"time":"${secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
}

/** Lines are written in batches of up to 4 KiB, at the latest every 100 ms, and on exit. */
const FLUSH_MS = 100;

export function createLogger(level: LevelWithSilent = 'info', name = 'proxyctl'): Logger {
  const envLevel = process.env['PROXYCTL_LOG_LEVEL'] as LevelWithSilent | undefined;
  // One write per request line was ~9% of the relay's CPU under load: batch them. And write
  // each batch on this thread: an asynchronous write is a round trip through libuv's thread
  // pool (a thread wake-up and a loop wake-up per batch), profiled at ~4% of the relay under
  // load. The price: a log reader that stops reading stalls the process, as with any
  // synchronous logger (files, journald and terminals read promptly).
  const dest = destination({ fd: 2, sync: true, minLength: 4096 });
  const timer = setInterval(() => dest.flush(), FLUSH_MS);
  timer.unref();
  process.once('exit', () => {
    try {
      dest.flushSync();
    } catch {
      // nothing more can be done for log lines at exit
    }
  });
  return pino(
    {
      name,
      level: envLevel ?? level,
      base: { pid: process.pid },
      timestamp: isoTimeField,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
