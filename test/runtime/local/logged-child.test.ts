// spawnLogged, the way `volley local` starts each part: its stderr lands in its
// log, and a log that cannot be opened or a command that cannot start is
// reported and survived; before, either was an 'error' no one listened to,
// which took `volley local` (and with it the sink MX) down.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnLogged } from '../../../runtime/local/logged-child';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-logged-child-');

/** Resolves with the child's exit code once it has exited and its stdio closed. */
function closed(proc: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => proc.once('close', (code) => resolve(code)));
}

test("the child's stderr is appended to its log", async () => {
  const log = join(dir, 'part.log');
  writeFileSync(log, 'earlier run\n');
  const problems: string[] = [];
  const proc = spawnLogged(process.execPath, ['-e', "process.stderr.write('this run\\n')"], log, (m) => problems.push(m));
  expect(await closed(proc)).toBe(0);
  expect(readFileSync(log, 'utf8')).toBe('earlier run\nthis run\n');
  expect(problems).toEqual([]);
});

test('a log that cannot be opened (a directory in its place): the part runs anyway and the reason is reported', async () => {
  const log = join(dir, 'blocked.log');
  mkdirSync(log);
  const problems: string[] = [];
  const proc = spawnLogged(process.execPath, ['-e', 'process.exitCode = 3'], log, (m) => problems.push(m));
  expect(await closed(proc)).toBe(3);
  expect(problems).toHaveLength(1);
  expect(problems[0]).toContain(log);
  expect(problems[0]).toContain('EISDIR');
});

test('a command that cannot start is reported, not thrown', async () => {
  const problems: string[] = [];
  const proc = spawnLogged(join(dir, 'no-such-node'), [], join(dir, 'missing.log'), (m) => problems.push(m));
  await closed(proc);
  expect(problems).toHaveLength(1);
  expect(problems[0]).toContain('ENOENT');
});
