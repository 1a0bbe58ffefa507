import { WORKER_V8_FLAGS, workerExecArgv } from '../../../runtime/mta/worker-flags';

test("the workers' heap flags come first, so a flag the node was started with overrides them", () => {
  expect(WORKER_V8_FLAGS).toEqual(['--min-semi-space-size=64', '--initial-old-space-size=256']);
  expect(workerExecArgv(['--min-semi-space-size=16', '--enable-source-maps'])).toEqual([...WORKER_V8_FLAGS, '--min-semi-space-size=16', '--enable-source-maps']);
  expect(workerExecArgv([])).toEqual(WORKER_V8_FLAGS);
});
