// The mirror's sync socket as another local user meets it: whatever the umask
// the mirror was started with, no other user can connect to it at any moment
// (a connect to a Unix socket needs only write permission on it and search
// permission on every folder above it), and binding it does not change the
// mode of files the process makes meanwhile (the umask is process-wide).
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { Server } from 'node:net';
import { dirname, join } from 'node:path';
import { startSyncServer, type SyncServer } from '../../../runtime/mirror/sync-server';
import { captureLogger } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

// The module object the runtime calls through (an ES import would give a copy to spy on).
const fs = require('node:fs') as typeof import('node:fs');

const dir = tempDir('volley-sync-socket-');

/** Whether a user who is neither the owner nor in the group could connect to the socket at `file`. */
function othersCanConnect(file: string): boolean {
  if ((lstatSync(file).mode & 0o002) === 0) return false;
  for (let d = dirname(file); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

afterEach(() => jest.restoreAllMocks());

/** Starts the sync server with the process umask at `mask` for its start only, then puts the umask and every spy back. */
async function startUnderUmask(path: string, mask: number): Promise<SyncServer> {
  const umask = process.umask(mask);
  try {
    return await startSyncServer(path, async () => ({ ok: true, state: 'sync' }), captureLogger().logger);
  } finally {
    process.umask(umask);
    jest.restoreAllMocks();
  }
}

test('under umask 0 the socket is never one another user can connect to: not when it is bound, not when it is put in place, not after', async () => {
  // Folders others may enter (the temp dir is made 0700), so only the socket's own mode and its private folder stand in the way.
  chmodSync(dir, 0o755);
  const base = join(dir, 'open');
  mkdirSync(base);
  chmodSync(base, 0o755);
  const path = join(base, 'mirror', 'sync.sock');
  // The socket file at each step the server takes: bound (where the bind made it), chmod'ed, renamed into place.
  const seen: { step: string; file: string; othersCanConnect: boolean }[] = [];
  const listen = Server.prototype.listen;
  jest.spyOn(Server.prototype, 'listen').mockImplementation(function (this: Server, ...args: unknown[]) {
    // A Unix socket path is bound synchronously, inside listen().
    const r = (listen as (...a: unknown[]) => Server).apply(this, args);
    if (typeof args[0] === 'string') seen.push({ step: 'bound', file: args[0], othersCanConnect: othersCanConnect(args[0]) });
    return r;
  });
  const chmod = fs.chmodSync;
  jest.spyOn(fs, 'chmodSync').mockImplementation((p, mode) => {
    chmod(p, mode);
    seen.push({ step: 'chmod', file: String(p), othersCanConnect: othersCanConnect(String(p)) });
  });
  const rename = fs.renameSync;
  jest.spyOn(fs, 'renameSync').mockImplementation((from, to) => {
    rename(from, to);
    seen.push({ step: 'in place', file: String(to), othersCanConnect: othersCanConnect(String(to)) });
  });
  const srv = await startUnderUmask(path, 0);
  try {
    expect(seen.map((s) => s.step)).toEqual(['bound', 'chmod', 'in place']);
    expect(seen.filter((s) => s.othersCanConnect)).toEqual([]);
    expect(lstatSync(path).mode & 0o777).toBe(0o660);
    expect(lstatSync(path).isSocket()).toBe(true);
    // The private folder it was bound in is gone.
    expect(readdirSync(dirname(path))).toEqual(['sync.sock']);
  } finally {
    await srv.close();
  }
  expect(readdirSync(dirname(path))).toEqual([]);
});

test('a file the process makes while the socket is bound gets the process\'s own umask (the umask is never changed around the bind)', async () => {
  const path = join(dir, 'umask', 'mirror', 'sync.sock');
  const made = join(dir, 'umask', 'made-meanwhile');
  // A folder made at the bind's moment: what a segment folder or cursor file written on the thread pool
  // just then gets. Before, the bind ran under umask 0117: such a folder came out 0660, with no x to enter it.
  const listen = Server.prototype.listen;
  jest.spyOn(Server.prototype, 'listen').mockImplementation(function (this: Server, ...args: unknown[]) {
    const r = (listen as (...a: unknown[]) => Server).apply(this, args);
    mkdirSync(made);
    return r;
  });
  const srv = await startUnderUmask(path, 0o022);
  try {
    expect((statSync(made).mode & 0o777).toString(8)).toBe('755');
  } finally {
    await srv.close();
  }
});

test('a private bind folder left by a mirror killed mid-bind is removed at the next start; a stale socket is replaced', async () => {
  const path = join(dir, 'leftover', 'sync.sock');
  mkdirSync(join(dir, 'leftover', '.sync.sock.bind-abc123'), { recursive: true });
  const first = await startSyncServer(path, async () => ({ ok: true, state: 'sync' }), captureLogger().logger);
  try {
    expect(readdirSync(dirname(path))).toEqual(['sync.sock']);
  } finally {
    await first.close();
  }
  const second = await startSyncServer(path, async () => ({ ok: true, state: 'sync' }), captureLogger().logger);
  try {
    expect(lstatSync(path).isSocket()).toBe(true);
  } finally {
    await second.close();
  }
});
