// The file arbiter's compare-and-swap: create only if absent, a write
// conditioned on a stale version refused, of two writers racing on the same
// version exactly one wins, old generations cleaned up, and a folder that
// cannot be reached an error (never "no lease").
import { mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileArbiter } from '../../../runtime/mirror/arbiter-file';
import type { Lease } from '../../../runtime/mirror/arbiter';
import { tempDir } from '../../helpers/tmp';

const base = tempDir('volley-arbiter-file-');
let n = 0;
function fresh(): { dir: string; arbiter: FileArbiter } {
  const dir = join(base, `t${++n}`);
  mkdirSync(dir);
  return { dir, arbiter: new FileArbiter(join(dir, 'lease.json')) };
}
const lease = (holder: string, epoch: number, at = 1_000_000): Lease => ({ holder, epoch, expires_at: at });

test('no lease yet reads as none; the first write creates it only if absent', async () => {
  const { arbiter } = fresh();
  expect(await arbiter.read()).toEqual({});
  const etag = await arbiter.write(lease('a', 1), undefined);
  expect(await arbiter.read()).toEqual({ lease: lease('a', 1), etag });
  await expect(arbiter.write(lease('b', 1), undefined)).rejects.toMatchObject({ code: 'ELEASECONFLICT' });
  expect((await arbiter.read()).lease?.holder).toBe('a');
});

test('a write conditioned on the version read wins once; the same version again is refused', async () => {
  const { arbiter } = fresh();
  const v1 = await arbiter.write(lease('a', 1), undefined);
  const v2 = await arbiter.write(lease('a', 1, 2_000_000), v1);
  expect(v2).not.toBe(v1);
  await expect(arbiter.write(lease('b', 2), v1)).rejects.toMatchObject({ code: 'ELEASECONFLICT' });
  expect(await arbiter.read()).toEqual({ lease: lease('a', 1, 2_000_000), etag: v2 });
});

test('two writers racing on the same version: exactly one wins, and the lease is the winner\'s', async () => {
  const { arbiter } = fresh();
  const other = new FileArbiter(arbiter.where);
  for (let round = 0; round < 20; round++) {
    const { etag } = await arbiter.read();
    const results = await Promise.allSettled([arbiter.write(lease('a', round + 2), etag), other.write(lease('b', round + 2), etag)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toMatchObject({ code: 'ELEASECONFLICT' });
    const read = await arbiter.read();
    expect(read.etag).toBe((won[0] as PromiseFulfilledResult<string>).value);
  }
});

test('old generations are removed, the last few kept; no temporary file is left behind', async () => {
  const { dir, arbiter } = fresh();
  let etag: string | undefined;
  for (let i = 0; i < 30; i++) etag = await arbiter.write(lease('a', 1, i), etag);
  const names = readdirSync(dir).sort();
  expect(names.length).toBeLessThanOrEqual(9);
  expect(names).toContain('lease.json.30');
  expect(names.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  expect((await arbiter.read()).lease?.expires_at).toBe(29);
});

test('an unreachable folder is an error for reads and writes, not an absent lease', async () => {
  const { dir } = fresh();
  const target = join(dir, 'shared');
  mkdirSync(target);
  const view = join(dir, 'view');
  symlinkSync(target, view);
  const arbiter = new FileArbiter(join(view, 'lease.json'));
  const etag = await arbiter.write(lease('a', 1), undefined);
  rmSync(view);
  writeFileSync(view, 'not a folder');
  await expect(arbiter.read()).rejects.toMatchObject({ code: 'EARBITER' });
  await expect(arbiter.write(lease('a', 1), etag)).rejects.toMatchObject({ code: 'EARBITER' });
});

test('a lease file that is not a lease is an error naming it', async () => {
  const { dir, arbiter } = fresh();
  writeFileSync(join(dir, 'lease.json.1'), '{"holder": 3}');
  await expect(arbiter.read()).rejects.toMatchObject({ code: 'EARBITER', message: expect.stringContaining('lease.json.1') });
});
