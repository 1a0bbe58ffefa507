// For tests that need a process out of file descriptors (EMFILE): run the
// process under `prlimit --nofile=N` and call this first. Returns what it
// holds, so a test can give them back.
import { openSync } from 'node:fs';

export function takeEveryDescriptor(): number[] {
  const held: number[] = [];
  for (;;) {
    try {
      held.push(openSync('/dev/null', 'r'));
    } catch {
      return held; // EMFILE: the table is full
    }
  }
}
