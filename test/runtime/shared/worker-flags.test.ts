// The workers' execArgv as both daemons build it: each daemon's own default
// flags (the lb's are none), VOLLEY_WORKER_V8_FLAGS instead when set, then
// the primary's flags.
import { LB_WORKER_V8_FLAGS } from '../../../runtime/lb/primary';
import { workerExecArgv } from '../../../runtime/shared/worker-flags';

test("a daemon's own defaults come first, then the primary's flags", () => {
  expect(workerExecArgv(['--a=1'], ['--enable-source-maps'], {})).toEqual(['--a=1', '--enable-source-maps']);
  expect(workerExecArgv(LB_WORKER_V8_FLAGS, ['--enable-source-maps'], {})).toEqual(['--enable-source-maps']);
});

test('VOLLEY_WORKER_V8_FLAGS replaces the defaults of whichever daemon reads it', () => {
  expect(workerExecArgv(['--a=1'], [], { VOLLEY_WORKER_V8_FLAGS: ' --b=2  --c=3 ' })).toEqual(['--b=2', '--c=3']);
  expect(workerExecArgv(['--a=1'], ['--x'], { VOLLEY_WORKER_V8_FLAGS: '' })).toEqual(['--x']);
});
