// A listener's bound on open connections (smtp.max_connections,
// http.max_connections): the connections it holds, and the answer a
// connection past the bound gets instead of a session.
import type { Socket } from 'node:net';
import { endSocket } from '../../shared/end-socket';

/**
 * What a connection past the bound is told, before and instead of reading its
 * request: a 503 that every HTTP client understands and may retry (on another
 * MTA, behind the lb or DNS), where a bare close (what Node's own
 * server.maxConnections does) is a socket error, and an injector does not
 * resend a POST it cannot tell was not taken.
 */
export const BUSY_RESPONSE = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n';

/** How long a refused client has to close its side after the refusal before the socket is destroyed. */
const REFUSED_LINGER_MS = 1000;

/** The SMTP listeners' refusal past smtp.max_connections. */
export const SMTP_BUSY_REPLY = '421 4.7.0 too many connections, try again later\r\n';

/** The connections a listener holds; one past `max` is told `refusal` and ended. */
export class ConnectionBound {
  private readonly open = new Set<Socket>();

  constructor(private readonly refusal: string) {}

  /** Connections held now. */
  get size(): number {
    return this.open.size;
  }

  /** Ends every connection held (a listener's stop). */
  destroyAll(): void {
    for (const s of this.open) s.destroy();
  }

  /**
   * Takes `socket` if fewer than `max` are held, until it closes (whichever way:
   * 'close' follows every end, error, timeout and destroy); otherwise answers
   * it the refusal, ends it and returns false. `max` is read at each call, so a refresh
   * applies to the next connection and those open stay open.
   */
  admit(socket: Socket, max: number): boolean {
    if (this.open.size < max) {
      this.open.add(socket);
      socket.once('close', () => this.open.delete(socket));
      return true;
    }
    socket.on('error', () => undefined);
    // Whatever the client sends is read and dropped: bytes left unread at the
    // close would make it a reset, which can reach the client before the 503.
    socket.resume();
    endSocket(socket, REFUSED_LINGER_MS, this.refusal);
    return false;
  }
}
