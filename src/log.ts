// Structured JSON logs on stderr (stdout is kept for command output).
// Field names are fixed: request_id, app, connector_id, status, duration_ms.
// Never pass tokens, cookies or keys to a logger: no call site does, and there is
// no redaction pass to hide a mistake (it cost ~5% of the relay's CPU per request).
import { pino, destination, stdTimeFunctions, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent = 'info', name = 'proxyctl'): Logger {
  const envLevel = process.env['PROXYCTL_LOG_LEVEL'] as LevelWithSilent | undefined;
  return pino(
    {
      name,
      level: envLevel ?? level,
      base: { pid: process.pid },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination({ fd: 2, sync: false }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
