// promote_command runs as an argv without a shell (a value with shell syntax
// is one literal argument), gets the new epoch in its environment, and its
// exit is reported and logged, failure and a missing program included.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runPromoteCommand } from '../../../runtime/mirror/promote-command';
import { captureLogger } from '../../helpers/proxy-fixtures';
import { tempDir } from '../../helpers/tmp';

const dir = tempDir('volley-promote-command-');

test('argv without a shell: shell syntax arrives as one literal argument; the epoch is in VOLLEY_MIRROR_EPOCH', async () => {
  const { logger, lines } = captureLogger();
  const out = join(dir, 'args');
  // sh -c here is the test's own program, not the daemon's: it writes its arguments and the epoch so they can be read back.
  const pwned = join(dir, 'pwned');
  const literal = `$(touch ${pwned}); touch ${pwned}`;
  const r = await runPromoteCommand(['/bin/sh', '-c', 'printf "%s|%s" "$1" "$VOLLEY_MIRROR_EPOCH" > "$2"', 'sh', literal, out], 7, logger);
  expect(r).toMatchObject({ exit: 0 });
  expect(readFileSync(out, 'utf8')).toBe(`${literal}|7`);
  expect(existsSync(pwned)).toBe(false);
  expect(lines().find((l) => l.msg === 'mirror: promote_command finished')).toMatchObject({ exit: 0 });
});

test('a failing command and a missing program are reported and logged as errors', async () => {
  const { logger, lines } = captureLogger();
  expect(await runPromoteCommand(['/bin/false'], 2, logger)).toMatchObject({ exit: 1 });
  expect(lines().find((l) => l.msg === 'mirror: promote_command failed: start the MTA by hand')).toMatchObject({ exit: 1, level: 50 });
  const missing = await runPromoteCommand([join(dir, 'no-such-program')], 2, logger);
  expect(missing.error).toContain('ENOENT');
  expect(lines().some((l) => l.msg === 'mirror: promote_command could not start')).toBe(true);
});

test('no file descriptor left for its pipes (EMFILE): reported as a start failure, not a crash of the mirror', async () => {
  // Node then gives the child no stdout and emits 'error' a tick later: reading child.stdout threw, before the 'error'
  // listener was attached, so the promise rejected (it "never rejects") and the unheard 'error' killed the process.
  const script = join(__dirname, '../../helpers/promote-emfile-child.ts');
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile('prlimit', ['--nofile=256:256', process.execPath, '--import', 'tsx', script], (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
  expect({ code: r.code, stderr: r.code === 0 ? '' : r.stderr }).toEqual({ code: 0, stderr: '' });
  expect(JSON.parse(r.stdout)).toMatchObject({ argv: ['/bin/true'], error: expect.stringContaining('EMFILE') });
});
