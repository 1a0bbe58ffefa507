// `volley proxy` as a real process for tests: its log, its worker pids (the
// primary's children, from /proc), a way to make every connection land on one
// chosen worker (the others SIGSTOPped: a stopped worker calls no accept(), so
// the shared listening socket hands its connections to the one left), and a
// stop that never leaves a process behind (its own process group, SIGKILLed
// if it did not exit).
import { spawn, type ChildProcess } from 'node:child_process';
import { VOLLEY } from './mta-process';
import { childrenByParent, processState } from './procs';
import { waitUntil } from './proxy-fixtures';

export interface ProxyProcess {
  proc: ChildProcess;
  log: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The live workers' pids (the primary's children). */
  workerPids: () => number[];
  /** Runs `fn` with every worker but `pid` stopped, then lets them go on. */
  onlyWorker: <T>(pid: number, fn: () => Promise<T>) => Promise<T>;
  /** SIGTERM, then the whole group SIGKILLed if anything of it is left. */
  stop: () => Promise<void>;
}

export async function startProxyProcess(configPath: string, workers: number, extraArgs: string[] = []): Promise<ProxyProcess> {
  let text = '';
  const proc = spawn(process.execPath, [VOLLEY, 'proxy', '--config', configPath, '--workers', String(workers), ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  proc.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  const workerPids = (): number[] => childrenByParent().get(proc.pid!) ?? [];
  const p: ProxyProcess = {
    proc,
    log: () => text,
    exited,
    workerPids,
    onlyWorker: async (pid, fn) => {
      const all = workerPids();
      // A pid that is not one of the workers would stop them all: nothing would serve.
      if (!all.includes(pid)) throw new Error(`onlyWorker: ${pid} is not a worker of this proxy (${all.join(', ')})`);
      const others = all.filter((w) => w !== pid);
      for (const w of others) process.kill(w, 'SIGSTOP');
      try {
        // kill() returns with the stop only pending: a worker not yet scheduled could still be
        // woken for the next connection. Once /proc says T it is off every wait queue.
        await waitUntil(() => others.every((w) => processState(w) === 'T' || processState(w) === ''), 10_000, () => others.map((w) => `${w}: ${processState(w)}`).join(', '));
        return await fn();
      } finally {
        // Only those still children of our proxy: a pid is never signalled after it could have been reused.
        const live = new Set(workerPids());
        for (const w of others) if (live.has(w)) process.kill(w, 'SIGCONT');
      }
    },
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 40_000).unref())]);
        if (!done) process.kill(-proc.pid!, 'SIGKILL');
      }
      // Workers left behind (they should not be): the group is ours.
      try {
        process.kill(-proc.pid!, 'SIGKILL');
      } catch {
        // nothing left
      }
    },
  };
  await waitUntil(() => text.includes('proxy: every worker listening') || proc.exitCode !== null, 20_000, () => text);
  if (proc.exitCode !== null) throw new Error(`volley proxy exited ${proc.exitCode}: ${text}`);
  return p;
}
