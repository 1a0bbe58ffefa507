// The mirror's sync socket as another local user meets it: the file the
// bind makes is 0660 from its first moment, whatever the umask the mirror
// was started with, so no other user can connect in the moment before the
// mode is set (a connect to a Unix socket needs only write permission).
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { startSyncServer, type SyncServer } from '../../../runtime/mirror/sync-server';
import { captureLogger } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

// The module object the runtime calls through (an ES import would give a copy to spy on).
const fs = require('node:fs') as typeof import('node:fs');

const dir = tempDir('volley-sync-socket-');

test('under umask 0 the socket is never wider than 0660: not when it is made, not after', async () => {
  const path = join(dir, 'mirror', 'sync.sock');
  // Its mode at the moment the server sets it: what the bind made.
  const made: number[] = [];
  const chmod = jest.spyOn(fs, 'chmodSync').mockImplementation(function (this: unknown, p, mode) {
    if (p === path) made.push(lstatSync(path).mode & 0o777);
    chmod.mockRestore();
    fs.chmodSync(p, mode);
  });
  const umask = process.umask(0);
  let srv: SyncServer;
  try {
    srv = await startSyncServer(path, async () => ({ ok: true, state: 'sync' }), captureLogger().logger);
  } finally {
    process.umask(umask);
    chmod.mockRestore();
  }
  try {
    expect(made).toEqual([0o660]);
    expect(lstatSync(path).mode & 0o777).toBe(0o660);
  } finally {
    await srv.close();
  }
});
