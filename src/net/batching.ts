// Control-channel frames sent in the same event-loop turn leave in one write:
// the channel's socket is corked on the first send and uncorked in the check
// phase. Under load this turns one TLS record and syscall per frame into one
// per batch; when idle it adds no measurable delay.
import type { WebSocket } from 'ws';
import type { Socket } from 'node:net';

const pending = new WeakSet<Socket>();

export function sendBatched(ws: WebSocket, data: string | Buffer, binary: boolean): void {
  // ws keeps its TCP/TLS socket in a private field; corking it is safe (ws writes through it).
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  if (socket && !pending.has(socket)) {
    pending.add(socket);
    socket.cork();
    setImmediate(() => {
      pending.delete(socket);
      socket.uncork();
    });
  }
  ws.send(data, { binary });
}
