import type { Server } from 'node:net';

/** Listens and resolves with the bound port (useful with port 0); rejects on EADDRINUSE and the like. */
export function listen(server: Server, port: number, address: string, backlog?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: address, backlog }, () => {
      server.removeListener('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}
