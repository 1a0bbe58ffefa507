import { connect, createServer, type Server, type Socket } from 'node:net';
import { listen } from '../../runtime/shared/listen';

export interface LatencyRelay {
  port: number;
  close(): Promise<void>;
}

/**
 * A TCP relay on loopback that delivers every chunk, each way, `oneWayMs`
 * after it arrived (in order): a wide-area round trip of 2 × oneWayMs between
 * an MTA and a sink that are both on this machine.
 */
export function startLatencyRelay(target: { host: string; port: number }, oneWayMs: number): Promise<LatencyRelay> {
  const sockets = new Set<Socket>();
  const delayed = (from: Socket, to: Socket): void => {
    from.on('data', (chunk: Buffer) => {
      setTimeout(() => {
        if (!to.destroyed) to.write(chunk);
      }, oneWayMs);
    });
    from.on('end', () => setTimeout(() => to.end(), oneWayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), oneWayMs + 10));
  };
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    }
    delayed(client, upstream);
    delayed(upstream, client);
  });
  return listen(server, 0, '127.0.0.1').then((port) => ({
    port,
    close: () =>
      new Promise<void>((done) => {
        for (const s of sockets) s.destroy();
        server.close(() => done());
      }),
  }));
}
