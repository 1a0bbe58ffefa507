// A whole file larger than one frame of the link, between two mirror daemons
// in this process over the real TLS + HMAC link with the frame limit lowered
// (the codec's DEFAULT_MAX_FRAME, which both ends' channels take, mocked to
// 1.25 MiB: no 256 MB file): the primary refuses that file, logs and counts
// it, and everything else keeps replicating; once it is small enough again it
// is shipped. Before, the frame carrying it was longer than the secondary
// takes: it dropped the link at every try and nothing replicated any more.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeState } from '../../../runtime/mirror/state';
import { getFreePort } from '../../helpers/postfix-tools';
import { waitUntil } from '../../helpers/proxy-fixtures';
import { inProcessMirrors } from '../../helpers/mirror-daemons';

jest.mock('../../../runtime/shared/proxy-protocol/codec', () => ({
  ...jest.requireActual<typeof import('../../../runtime/shared/proxy-protocol/codec')>('../../../runtime/shared/proxy-protocol/codec'),
  DEFAULT_MAX_FRAME: 1_310_720,
}));

const SEG = 'spool/p000/000000000001.seg';
const BIG = 'inbound/unmatched/1733367799.big.eml';

function put(root: string, rel: string, data: string | Buffer): void {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), data);
}

const read = (file: string): string => (existsSync(file) ? readFileSync(file, 'utf8') : '');

describe('a file too large for one frame of the link', () => {
  const mirrors = inProcessMirrors('volley-mirror-frame-');

  test('is refused, logged and counted; the mail after it replicates; once smaller it is shipped', async () => {
    const pa = await getFreePort();
    const pb = await getFreePort();
    mkdirSync(join(mirrors.base, 'a'), { recursive: true });
    writeState(join(mirrors.base, 'a'), { role: 'primary', epoch: 1, caughtUp: false });
    // A 2 MiB report kept in inbound/unmatched/ (a whole file), and mail.
    put(join(mirrors.base, 'a'), BIG, Buffer.alloc(2 * 1024 * 1024, 'x'));
    put(join(mirrors.base, 'a'), SEG, 'first record\n');
    const b = await mirrors.node('b', { self: pb, peer: pa });
    const a = await mirrors.node('a', { self: pa, peer: pb });
    const state = (): string => JSON.stringify([a.daemon.status(), b.daemon.status()]);

    await waitUntil(() => read(join(b.root, SEG)) === 'first record\n', 10_000, state);
    appendFileSync(join(a.root, SEG), 'second record\n');
    await waitUntil(() => read(join(b.root, SEG)) === 'first record\nsecond record\n', 10_000, state);
    await waitUntil(() => a.daemon.status().lag_bytes === 0, 10_000, state);
    expect(existsSync(join(b.root, BIG))).toBe(false);
    expect(a.daemon.status()).toMatchObject({ refused_files: 1, peer_connected: true });
    const refused = a.log.lines().filter((l) => String(l.msg).includes('too large for one frame'));
    expect(refused).toEqual([expect.objectContaining({ file: BIG, size: 2 * 1024 * 1024 })]);

    // Cut down (an operator moved the report's attachment away): shipped at the next scan.
    writeFileSync(join(a.root, BIG), 'a report small enough\n');
    await waitUntil(() => read(join(b.root, BIG)) === 'a report small enough\n', 10_000, state);
    expect(a.daemon.status().refused_files).toBe(0);
  });
});
