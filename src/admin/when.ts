// When a log filter starts or ends: an ISO 8601 date or time, or a duration that long
// ago ("24h", "7d"). Shared by the CLI's --since/--until and the API's since/until.
import { parseDuration } from '../config/duration.js';
import { ProxyctlError } from '../errors.js';

export function parseWhen(name: string, text: string, now: number): number {
  const ago = parseDuration(text);
  if (ago !== undefined) return now - ago;
  const at = /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text.trim()) ? Date.parse(text) : NaN;
  if (!Number.isFinite(at))
    throw new ProxyctlError(
      'ERR_USAGE',
      `${name} takes a date or time (2026-12-01, 2026-12-01T08:00:00Z) or a duration ago (24h, 7d); found ${JSON.stringify(text)}`,
      { status: 400 },
    );
  return at;
}
