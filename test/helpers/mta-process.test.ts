// The MTA test helper's stop: a hung MTA must fail its test, not hang the run.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeTestConfig } from './config';
import { startMta, type MtaProcess } from './mta-process';
import { childrenByParent } from './procs';
import { waitUntil } from './proxy-fixtures';
import { tempDir } from './tmp';

const dir = tempDir();
let mta: MtaProcess | undefined;
afterEach(async () => {
  if (mta && mta.proc.exitCode === null && mta.proc.signalCode === null) await mta.crash();
  mta = undefined;
});

/** Whether the process exists and is not a zombie (state Z in /proc/PID/stat). */
const running = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

test('stop() on an MTA that cannot stop: past its deadline the whole process group is SIGKILLed and stop() rejects', async () => {
  mta = await startMta({ configPath: writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] }), persistentPath: join(dir, 'pp'), workers: 2 });
  const m = mta;
  const workers = childrenByParent().get(m.proc.pid!) ?? [];
  expect(workers).toHaveLength(2);
  // SIGSTOP the primary and its workers: the SIGTERM stays pending, the MTA is hung for good.
  process.kill(-m.proc.pid!, 'SIGSTOP');
  await expect(m.stop({ deadlineMs: 500 })).rejects.toThrow(/did not stop within 500 ms of SIGTERM; its process group was killed/);
  expect(m.proc.signalCode).toBe('SIGKILL');
  // The workers went with the group (not reparented and left running): dead or a zombie until their reaper gets to them.
  await waitUntil(() => !workers.some(running), 10_000, () => `still running: ${workers.filter(running).join(', ')}`);
});

test('stop() on a healthy MTA resolves once it exited by itself, with no kill', async () => {
  mta = await startMta({ configPath: writeTestConfig(dir, { relayFrom: ['127.0.0.0/8'] }), persistentPath: join(dir, 'pp-ok'), workers: 1 });
  await mta.stop();
  expect(mta.proc.exitCode).toBe(0);
  expect(mta.proc.signalCode).toBeNull();
});
