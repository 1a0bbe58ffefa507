// A primary's guard on each worker it forks. A worker that died is still in
// the primary's books until its exit is read; a send to it meanwhile (a
// /status query, a broadcast) emits 'error' (ERR_IPC_CHANNEL_CLOSED) on the
// worker, and an 'error' with no listener throws: the primary, and with it
// every other worker and the node, went down because one worker died at the
// wrong moment. With this the error is logged and the exit handled as usual.
import type { EventEmitter } from 'node:events';

export function keepIpcErrors(worker: EventEmitter, log: (err: Error) => void): void {
  worker.on('error', log);
}
