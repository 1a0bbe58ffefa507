import type { Socket } from 'node:net';

/**
 * Ends a socket (a FIN after whatever is queued, `data` last) and destroys
 * it if it has not closed within `lingerMs`. The fallback timer is cleared
 * at 'close': left running it holds the socket, and all it references, for
 * the whole linger, which at thousands of connections a second is long
 * enough to promote every one into the old generation and pay for it in
 * major collections.
 */
export function endSocket(socket: Socket, lingerMs: number, data?: string): void {
  if (socket.destroyed) return;
  if (data === undefined) socket.end();
  else socket.end(data);
  const timer = setTimeout(() => socket.destroy(), lingerMs).unref();
  socket.once('close', () => clearTimeout(timer));
}
