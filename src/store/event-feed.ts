// The sign-in log, the audit trail and the risk detections as one feed for the SIEM
// export, in the same way for both backends: each log is read past its cursor in id
// order, and merged by time. A log's rows are taken only up to the first gap in its
// ids that is younger than FEED_GAP_WAIT_MS: under concurrency PostgreSQL commits
// rows out of id order, and a cursor moved past a gap would skip the row that fills
// it. An older gap is an id whose transaction rolled back (or a pruned row).
import type {
  AuditEntry,
  EventCursor,
  RiskDetectionRecord,
  SecurityEvent,
  SecurityEventKind,
  SignInRecord,
} from './types.js';

export const FEED_GAP_WAIT_MS = 5_000;

export interface FeedRows {
  signIn: SignInRecord[];
  audit: AuditEntry[];
  riskDetection: RiskDetectionRecord[];
}

const PREFIX: Readonly<Record<SecurityEventKind, string>> = { signIn: 'signin', audit: 'audit', riskDetection: 'risk' };

/** The stable id receivers de-duplicate on. */
export const eventId = (kind: SecurityEventKind, id: number): string => `${PREFIX[kind]}-${id}`;

/** Rows of one log (ascending ids above `after`) up to the first gap too young to skip. */
function contiguous<T extends { id: number; at: number }>(rows: T[], after: number, now: number): T[] {
  let expected = after + 1;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    if (row.id !== expected && now - row.at < FEED_GAP_WAIT_MS) return rows.slice(0, i);
    expected = row.id + 1;
  }
  return rows;
}

export function mergeFeed(
  rows: FeedRows,
  after: EventCursor,
  limit: number,
  now: number,
): { events: SecurityEvent[]; cursor: EventCursor } {
  const queues: { kind: SecurityEventKind; rows: (SignInRecord | AuditEntry | RiskDetectionRecord)[] }[] = [
    { kind: 'signIn', rows: contiguous(rows.signIn, after.signIn, now) },
    { kind: 'audit', rows: contiguous(rows.audit, after.audit, now) },
    { kind: 'riskDetection', rows: contiguous(rows.riskDetection, after.riskDetection, now) },
  ];
  const cursor = { ...after };
  const events: SecurityEvent[] = [];
  const next = [0, 0, 0];
  // A k-way merge by time: each log is consumed in id order, so its cursor only moves over a prefix.
  while (events.length < limit) {
    let pick = -1;
    for (let q = 0; q < queues.length; q++) {
      const row = queues[q]!.rows[next[q]!];
      if (row && (pick < 0 || row.at < queues[pick]!.rows[next[pick]!]!.at)) pick = q;
    }
    if (pick < 0) break;
    const { kind, rows: list } = queues[pick]!;
    const row = list[next[pick]!++]!;
    events.push({ id: eventId(kind, row.id), kind, at: row.at, data: row });
    cursor[kind] = row.id;
  }
  return { events, cursor };
}
