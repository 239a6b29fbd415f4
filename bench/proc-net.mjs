// The machine's TCP sockets as the kernel lists them (/proc/net/tcp and tcp6), for the
// bench scripts that count connections of a port (closed ones, open ones).
import { readFileSync } from 'node:fs';

/**
 * Every TCP socket: its state (hex, as the kernel writes it: 01 ESTABLISHED, 06 TIME_WAIT…),
 * its local and remote "address:port" fields and their ports.
 */
export function tcpSockets() {
  const out = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let rows = [];
    try {
      rows = readFileSync(table, 'utf8').trim().split('\n').slice(1);
    } catch {
      continue;
    }
    for (const row of rows) {
      const cols = row.trim().split(/\s+/);
      out.push({
        state: cols[3],
        local: cols[1],
        remote: cols[2],
        localPort: parseInt(cols[1].split(':')[1], 16),
        remotePort: parseInt(cols[2].split(':')[1], 16),
      });
    }
  }
  return out;
}
