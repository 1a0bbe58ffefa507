import { execFileSync } from 'node:child_process';
import { WORKER_V8_FLAGS, workerExecArgv } from '../../../runtime/shared/worker-flags';
import { LB_WORKER_V8_FLAGS } from '../../../runtime/lb/primary';

test("the workers' flags come before the primary's own", () => {
  expect(workerExecArgv(['--enable-source-maps'], {})).toEqual([...WORKER_V8_FLAGS, '--enable-source-maps']);
});

test('VOLLEY_WORKER_V8_FLAGS replaces them; set but empty, the workers get V8 defaults', () => {
  expect(workerExecArgv(['--enable-source-maps'], { VOLLEY_WORKER_V8_FLAGS: ' --max-semi-space-size=32  --initial-old-space-size=512 ' })).toEqual([
    '--max-semi-space-size=32',
    '--initial-old-space-size=512',
    '--enable-source-maps',
  ]);
  expect(workerExecArgv([], { VOLLEY_WORKER_V8_FLAGS: '' })).toEqual([]);
});

test('on the Node the MTA runs, the flags give the young generation the size the comment claims', () => {
  const newSpaceMb = (flags: string[]): number =>
    Number(execFileSync(process.execPath, [...flags, '-e', "const s = require('v8').getHeapSpaceStatistics().find((x) => x.space_name === 'new_space'); console.log(s.space_size / 1048576)"], { encoding: 'utf8' }).trim());
  expect(newSpaceMb(WORKER_V8_FLAGS)).toBe(64);
  expect(newSpaceMb([])).toBeLessThan(64);
});

test("a daemon's own defaults replace the MTA's (the lb's are none), and the variable still overrides them", () => {
  expect(workerExecArgv(['--enable-source-maps'], {}, LB_WORKER_V8_FLAGS)).toEqual(['--enable-source-maps']);
  expect(workerExecArgv([], { VOLLEY_WORKER_V8_FLAGS: '--b=2' }, LB_WORKER_V8_FLAGS)).toEqual(['--b=2']);
});
