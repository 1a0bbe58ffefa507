// "Every process of the unit" without cgroups: systemd kills a unit's whole
// control group, so a child that setsid()s or double-forks away is still the
// unit's. Here a unit's processes are its main process's descendants (from the
// parent pids in /proc) plus every process whose environment carries the
// unit's marker variable, which every descendant inherits even after its
// parent has died and it was re-parented.
import { readdirSync, readFileSync } from 'node:fs';

interface ProcEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly state: string;
}

function procEntries(): ProcEntry[] {
  const out: ProcEntry[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(d), ppid: Number(ppid), state });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

function hasMarker(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(marker);
  } catch {
    return false;
  }
}

/**
 * The live processes of a unit: descendants of `roots` and carriers of
 * `marker` ("NAME=value"). Zombies are left out: they cannot be signalled and
 * their parent (or init) reaps them.
 */
export function unitProcesses(roots: readonly number[], marker: string): number[] {
  const entries = procEntries().filter((e) => e.state !== 'Z' && e.pid !== process.pid);
  const children = new Map<number, number[]>();
  for (const e of entries) children.set(e.ppid, [...(children.get(e.ppid) ?? []), e.pid]);
  const live = new Set(entries.map((e) => e.pid));
  const found = new Set<number>();
  const queue = roots.filter((pid) => live.has(pid));
  while (queue.length > 0) {
    const pid = queue.pop() as number;
    if (found.has(pid)) continue;
    found.add(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  for (const e of entries) if (!found.has(e.pid) && hasMarker(e.pid, marker)) found.add(e.pid);
  return [...found].sort((a, b) => a - b);
}

/** Sends `signal` to each pid, ignoring those already gone. */
export function signalAll(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone between the scan and the kill
    }
  }
}
