// The mirror's end of the sync-barrier protocol (runtime/shared/mirror-sync):
// a Unix socket in the mirror's own folder (never replicated) where the
// node's MTA workers ask for barriers. Each BARRIER line is handed to
// `barrier()` and answered whenever that settles, in any order.
import { chmodSync, lstatSync, mkdirSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../shared/log';
import { VolleyError } from '../shared/errors';
import { SYNC_GREETING, SYNC_PROTOCOL_VERSION, answerLine, lineSplitter, parseSyncLine, type BarrierAnswer } from '../shared/mirror-sync/protocol';

export interface SyncServer {
  close(): Promise<void>;
}

export async function startSyncServer(path: string, barrier: () => Promise<BarrierAnswer>, logger: Logger): Promise<SyncServer> {
  mkdirSync(dirname(path), { recursive: true });
  // A socket left by a mirror that was killed: nothing listens on it any more (a second mirror on one path would fail its admin port first).
  try {
    if (lstatSync(path).isSocket()) rmSync(path);
    else throw new VolleyError('ESYNCSOCKET', `sync_socket ${path} exists and is not a socket: refusing to replace it`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let greeted = false;
    const feed = lineSplitter((text) => {
      const line = parseSyncLine(text);
      if (!greeted) {
        if (line.t !== 'greeting' || line.version !== SYNC_PROTOCOL_VERSION) throw new VolleyError('EMIRRORSYNC', `a client of another sync protocol: ${text.slice(0, 40)}`);
        greeted = true;
        return void socket.write(`${SYNC_GREETING}\n`);
      }
      if (line.t !== 'barrier') throw new VolleyError('EMIRRORSYNC', `expected BARRIER, got ${text.slice(0, 40)}`);
      void barrier().then(
        (a) => !socket.destroyed && socket.write(answerLine(line.n, a)),
        (err: Error) => !socket.destroyed && socket.write(answerLine(line.n, { ok: false, reason: 'error', message: err.message })),
      );
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        feed(chunk);
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'mirror: a sync socket client broke the protocol; closed');
        socket.destroy();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new VolleyError('ESYNCSOCKET', `cannot listen on sync_socket ${path}: ${err.message}`)));
    // The socket file is made by the bind, inside listen(), with the process's umask: under a
    // permissive one (0, 002) it was writable by every local user until the chmod below, and a
    // connect needs only that. Made 0660 from the start instead; listen() binds synchronously
    // here (no cluster worker), so the umask is back before any other file is made.
    const umask = process.umask(0o117);
    try {
      server.listen(path, () => resolve());
    } finally {
      process.umask(umask);
    }
  });
  // Only this node's own processes (the MTA runs as the same user) may ask.
  chmodSync(path, 0o660);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
