// A primary's guard on each worker it forks. A worker that died is still in
// the primary's books until its exit is read; a send to it meanwhile (a
// /status query, a broadcast) emits 'error' (ERR_IPC_CHANNEL_CLOSED) on the
// worker, and an 'error' with no listener throws: the primary, and with it
// every other worker and the node, went down because one worker died at the
// wrong moment. With this the error is logged and the exit handled as usual.
//
// A fork whose spawn fails (EMFILE or ENFILE: no descriptor left for its IPC
// channel; EAGAIN: no process slot) emits only 'error', never 'exit': the
// primary's exit handler, which forgets the worker's permits and forks it
// again after its delay, never ran, and the node went on one worker short
// until a restart. Such an error is followed by an 'exit' of our own (code
// and signal null), so the usual path forks it again.
import type { EventEmitter } from 'node:events';

/** A cluster Worker (its ChildProcess as `process`), or a ChildProcess itself. */
export type Forked = EventEmitter & { readonly process?: { readonly pid?: number }; readonly pid?: number };

export function keepIpcErrors(worker: Forked, log: (err: Error) => void): void {
  let neverStarted = false;
  worker.on('error', (err: Error) => {
    log(err);
    const pid = worker.process ? worker.process.pid : worker.pid;
    if (pid !== undefined || neverStarted) return;
    neverStarted = true;
    // After the other 'error' listeners: the exit is read as it would be for a worker that died at once.
    setImmediate(() => worker.emit('exit', null, null));
  });
}
