import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, openSync, closeSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { VolleyError } from '../shared/errors';

/**
 * The node's identity lives on the persistent path, so it follows the volume
 * to a replacement instance: the queue and the name that owns it move together.
 */
export function nodeIdentity(persistentPath: string, given?: string): string {
  mkdirSync(persistentPath, { recursive: true });
  const file = join(persistentPath, 'node-id');
  if (existsSync(file)) {
    const stored = readFileSync(file, 'utf8').trim();
    if (given && given !== stored) {
      throw new VolleyError('ENODEID', `persistent path ${persistentPath} belongs to node "${stored}", not "${given}"`);
    }
    return stored;
  }
  const id = given ?? `mta-${randomUUID().slice(0, 8)}`;
  writeFileSync(file, `${id}\n`, { flag: 'wx' });
  return id;
}

/**
 * One MTA per persistent path: a second one would interleave writes into the
 * same segments. The lock names the holder's pid; a stale lock (dead pid, as
 * after kill -9 or a power cut) is taken over.
 */
export function lockPersistentPath(persistentPath: string): () => void {
  mkdirSync(persistentPath, { recursive: true });
  const file = join(persistentPath, 'mta.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new VolleyError('ELOCKED', `persistent path ${persistentPath} is in use by pid ${pid}`);
      }
      unlinkSync(file);
    }
  }
  throw new VolleyError('ELOCKED', `cannot lock ${persistentPath}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}
