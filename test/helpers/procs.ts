import { readdirSync, readFileSync } from 'node:fs';

/** Every process's children, from the parent pids in /proc. */
export function childrenByParent(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(d)]);
    } catch {
      // gone
    }
  }
  return children;
}

/** A process's argv, from /proc (throws if it is gone). */
export function commandLine(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
}

/** Whether a process runs: signal 0 reaches it and it is not a zombie waiting to be reaped (that one has stopped). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A process's state letter from /proc/<pid>/stat (R running, S sleeping, T stopped, Z zombie…); '' once it is gone. */
export function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] ?? '';
  } catch {
    return '';
  }
}
