// The HTTP API's bound on open connections (http.max_connections): the
// connections it holds, and the answer a connection past the bound gets.
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

/** How long a refused client has to close its side after the 503 before the socket is destroyed. */
const REFUSED_LINGER_MS = 1000;

/** The connections the HTTP API holds, counted as the SMTP listener counts its sessions. */
export class ConnectionBound {
  private readonly open = new Set<Socket>();

  /** Connections held now. */
  get size(): number {
    return this.open.size;
  }

  /**
   * Takes `socket` if fewer than `max` are held, until it closes (whichever way:
   * 'close' follows every end, error, timeout and destroy); otherwise answers
   * it 503, ends it and returns false. `max` is read at each call, so a refresh
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
    endSocket(socket, REFUSED_LINGER_MS, BUSY_RESPONSE);
    return false;
  }
}
