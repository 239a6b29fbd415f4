// One HTTPS request on a fresh TLS connection whose session the test controls: offered
// (`session`, to resume) and kept (the ticket the server sent), for session-resumption tests.
import { once } from 'node:events';
import { request } from 'node:http';
import { connect, type PeerCertificate, type SecureVersion } from 'node:tls';

export interface TlsVisit {
  status: number;
  body: string;
  /** The server accepted the offered session (no full handshake). */
  reused: boolean;
  /** The session to offer next time (the last ticket the server sent), and that ticket alone. */
  session: Buffer | undefined;
  ticket: Buffer | undefined;
  /** The server's certificate (of this handshake, or of the session resumed). */
  peer: PeerCertificate;
  protocol: string | null;
}

export interface VisitOptions {
  ca: string | string[];
  session?: Buffer | undefined;
  maxVersion?: SecureVersion;
  /** A client certificate (a device certificate). */
  cert?: string;
  key?: string;
  path?: string;
  headers?: Record<string, string>;
}

export async function visit(port: number, host: string, opts: VisitOptions): Promise<TlsVisit> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    servername: host,
    ca: opts.ca,
    ALPNProtocols: ['http/1.1'],
    ...(opts.session ? { session: opts.session } : {}),
    ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
    ...(opts.cert && opts.key ? { cert: opts.cert, key: opts.key } : {}),
  });
  let session: Buffer | undefined;
  let ticket: Buffer | undefined;
  socket.on('session', (s: Buffer) => {
    session = s;
    ticket = socket.getTLSTicket();
  });
  try {
    await once(socket, 'secureConnect');
    const reused = socket.isSessionReused();
    const peer = socket.getPeerCertificate();
    const protocol = socket.getProtocol();
    const req = request({
      createConnection: () => socket,
      host,
      path: opts.path ?? '/robots.txt',
      headers: { host, connection: 'close', ...opts.headers },
    });
    req.end();
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
    let body = '';
    res.setEncoding('utf8');
    for await (const chunk of res) body += chunk as string;
    return { status: res.statusCode ?? 0, body, reused, session, ticket, peer, protocol };
  } finally {
    socket.destroy();
  }
}

/** The session with one byte of its ticket's sealed part flipped (the ticket is found inside the session). */
export function tamperedSession(session: Buffer, ticket: Buffer): Buffer {
  const at = session.indexOf(ticket);
  if (at < 0 || ticket.length < 64) throw new Error('the ticket is not inside the session');
  const copy = Buffer.from(session);
  // After the key name (16 bytes) and IV (16 bytes): the encrypted state.
  copy[at + 40] = copy[at + 40]! ^ 0xff;
  return copy;
}
