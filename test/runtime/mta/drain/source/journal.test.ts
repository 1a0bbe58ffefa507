// The drain journal: what it says is still open after a crash at any point,
// and after an append that met a full disk.
import { appendFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Journal, journalPath, readJournal, unsettled } from '../../../../../runtime/mta/drain/source/journal';
import { fillVolume, mountTmpfs } from '../../../../helpers/tmpfs';
import { tempDir } from '../../../../helpers/tmp';

const dir = tempDir();

test('sent and not removed is open, to the destination it was sent to; removed or released settles it; a later send supersedes', () => {
  const open = unsettled([
    { dest: 'a:1', ids: ['m1', 'm2', 'm3'], at: 1 },
    { removed: ['m1'], at: 2 },
    { released: ['m2'], dest: 'a:1', at: 3 },
    { dest: 'b:1', ids: ['m2'], at: 4 },
    { released: ['m3'], dest: 'b:1', at: 5 }, // released by another destination: still open at a
  ]);
  expect([...open]).toEqual([
    ['m3', 'a:1'],
    ['m2', 'b:1'],
  ]);
});

test('a torn last line (a crash mid-append) is ignored and the next append starts on a line of its own; damage before the end is an error', () => {
  const file = journalPath(join(dir, 'pp1'));
  const j = new Journal(file);
  j.append({ dest: 'a:1', ids: ['m1'], at: 1 });
  j.close();
  appendFileSync(file, '{"dest":"a:1","ids":["m2"');
  expect(unsettled(readJournal(file)).size).toBe(1);
  const again = new Journal(file);
  again.append({ removed: ['m1'], at: 2 });
  again.close();
  expect(unsettled(readJournal(file)).size).toBe(0);
  writeFileSync(file, 'not json\n{"removed":[],"at":1}\n');
  expect(() => readJournal(file)).toThrow(/line 1 is not JSON/);
});

test('opening to append cuts a torn last line however long, reading back only to the line before it; a journal that is one torn line becomes empty', () => {
  const file = journalPath(join(dir, 'pp3'));
  const j = new Journal(file);
  j.append({ dest: 'a:1', ids: ['m1'], at: 1 });
  j.close();
  const whole = statSync(file).size;
  appendFileSync(file, `{"dest":"a:1","ids":["${'x'.repeat(200_000)}`); // longer than one read back
  new Journal(file).close();
  expect(statSync(file).size).toBe(whole);
  writeFileSync(file, '{"dest":"a:1","ids":["m2"');
  const again = new Journal(file);
  again.append({ removed: ['m3'], at: 3 });
  again.close();
  expect(readJournal(file)).toEqual([{ removed: ['m3'], at: 3 }]);
});

test('retire keeps the settled journal beside, so the next drain starts clean', () => {
  const file = journalPath(join(dir, 'pp2'));
  const j = new Journal(file);
  j.append({ dest: 'a:1', ids: ['m1'], at: 1 });
  j.append({ removed: ['m1'], at: 2 });
  j.retire();
  expect(existsSync(file)).toBe(false);
  expect(readFileSync(`${file}.done`, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
});

test('an append that meets a full disk throws and leaves no part of its line, even when part of it fit (a torn line in the middle would make the journal unreadable)', async () => {
  const fs = mountTmpfs('volley-journal-full-', '64k');
  try {
    const file = journalPath(join(fs.mnt, 'pp'));
    const j = new Journal(file);
    // The first line ends 10 bytes short of a page: the next line's first 10 bytes fit in that page, and no more.
    const bare = JSON.stringify({ dest: 'a:1', ids: [''], at: 1 }).length + 1;
    j.append({ dest: 'a:1', ids: ['x'.repeat(4096 - 10 - bare)], at: 1 });
    expect(statSync(file).size).toBe(4096 - 10);
    fillVolume(join(fs.mnt, 'filler'));
    expect(() => j.append({ dest: 'a:1', ids: ['m2'], at: 2 })).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
    expect(statSync(file).size).toBe(4096 - 10);
    rmSync(join(fs.mnt, 'filler'));
    j.append({ removed: ['m3'], at: 3 });
    j.close();
    expect(readJournal(file).map((l) => l.at)).toEqual([1, 3]);
  } finally {
    await fs.release();
  }
});
