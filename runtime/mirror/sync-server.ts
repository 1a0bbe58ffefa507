// The mirror's end of the sync-barrier protocol (runtime/shared/mirror-sync):
// a Unix socket in the mirror's own folder (never replicated) where the
// node's MTA workers ask for barriers. Each BARRIER line is handed to
// `barrier()` and answered whenever that settles, in any order.
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, dirname, join } from 'node:path';
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
  const inode = await bindPrivately(server, path);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
        // The server unlinks the path it was bound at, which was the private one: the file at `path` is
        // removed here, as long as it is still this server's (not one a later mirror bound there).
        removeIfSame(path, inode);
      }),
  };
}

/**
 * Binds `server` at `path` so that no other local user can connect at any
 * moment (a connect to a Unix socket needs only write permission on it): the
 * bind makes the file with the process's umask, which may be permissive (0,
 * 002), so it is made in a fresh directory beside `path` that only this user
 * may enter (mkdtemp: 0700), set to 0660 there (the MTA runs as the same
 * user, or in the group), then renamed into place, which on one filesystem is
 * a single step; the directory is removed. The process-wide umask is left
 * alone: changed around the bind, it also applied to whatever files the
 * thread pool made in that moment (dirs without x, files 0660).
 * Returns the socket file's inode.
 */
async function bindPrivately(server: Server, path: string): Promise<number> {
  // Named after the socket, so a leftover (a mirror killed mid-bind) is known as this socket's and
  // removed here, and another socket's in the same folder is never touched.
  const prefix = `.${basename(path)}.bind-`;
  for (const name of readdirSync(dirname(path))) if (name.startsWith(prefix)) rmSync(join(dirname(path), name), { recursive: true, force: true });
  const privateDir = mkdtempSync(join(dirname(path), prefix));
  const privatePath = join(privateDir, 'sync.sock');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new VolleyError('ESYNCSOCKET', `cannot listen on sync_socket ${path}: ${err.message}`)));
      server.listen(privatePath, () => resolve());
    });
    chmodSync(privatePath, 0o660);
    renameSync(privatePath, path);
    return lstatSync(path).ino;
  } catch (err) {
    server.close();
    if (err instanceof VolleyError) throw err;
    throw new VolleyError('ESYNCSOCKET', `cannot put the sync_socket in place at ${path}: ${(err as Error).message}`);
  } finally {
    rmSync(privateDir, { recursive: true, force: true });
  }
}

function removeIfSame(path: string, inode: number): void {
  try {
    if (lstatSync(path).ino === inode) rmSync(path);
  } catch {
    // Already gone: nothing to remove.
  }
}
