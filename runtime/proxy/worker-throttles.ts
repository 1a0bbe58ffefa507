// A proxy worker's ThrottleAuthority: every decision is the primary's (one
// ClusterThrottles per node), asked over the cluster IPC channel. MTA ids are
// scoped with this worker's index and pid (workerScoped), so ids from two
// workers, or from a worker and the one that replaced it, never meet in the
// primary's counts, while the MTA node they belong to stays readable: an MTA
// node's control links on two workers are still one MTA to the merge.
//
// A primary that does not answer (hung, or stopped while its workers run)
// must not hold every acquire for the MTA's own answer timeout while this
// worker still answers its pings: past ASK_MS the acquire is refused ("not
// now", the MTA tries again later), and a connection permit the primary
// grants after that is given straight back, so none leaks.
import { workerScoped, type ClusterLimits, type MessagePermit } from '../shared/throttle/cluster-throttles';
import type { FromProxyWorker, ThrottleOp } from './ipc';
import type { ThrottleAuthority } from './throttle-authority';

/** How long an acquire waits for the primary: an IPC round trip takes well under a millisecond. */
export const ASK_MS = 3_000;
/** What a message acquire the primary did not answer gets: try again in a second. */
const NOT_NOW: MessagePermit = { ok: false, waitMs: 1_000 };

export class WorkerThrottles implements ThrottleAuthority {
  private nextId = 0;
  private readonly pending = new Map<number, (value: boolean | MessagePermit) => void>();
  /** Connection asks given up on: a late grant is released. */
  private readonly abandoned = new Map<number, { mta: string; key: string }>();
  private readonly scope: string;

  constructor(
    worker: number,
    private readonly send: (m: FromProxyWorker) => void,
  ) {
    this.scope = `w${worker}.${process.pid}`;
  }

  /** The primary's answer to one of our questions. */
  answer(id: number, value: boolean | MessagePermit): void {
    const late = this.abandoned.get(id);
    if (late) {
      this.abandoned.delete(id);
      if (value === true) this.send({ type: 'throttle', id: 0, q: { op: 'release', mta: late.mta, key: late.key } });
      return;
    }
    const resolve = this.pending.get(id);
    this.pending.delete(id);
    resolve?.(value);
  }

  tryConnection(mta: string, key: string, limits: ClusterLimits, reclaim = false): Promise<boolean> {
    return this.ask({ op: 'connection', mta: workerScoped(mta, this.scope), key, limits, reclaim }, false) as Promise<boolean>;
  }

  tryMessage(mta: string, key: string, limits: ClusterLimits): Promise<MessagePermit> {
    return this.ask({ op: 'message', mta: workerScoped(mta, this.scope), key, limits }, NOT_NOW) as Promise<MessagePermit>;
  }

  // No answer wanted: the IPC channel keeps order, so a later acquire sees the release done.
  releaseConnection(mta: string, key: string): void {
    this.send({ type: 'throttle', id: 0, q: { op: 'release', mta: workerScoped(mta, this.scope), key } });
  }

  forget(mta: string): void {
    this.send({ type: 'throttle', id: 0, q: { op: 'forget', mta: workerScoped(mta, this.scope) } });
  }

  private ask(q: ThrottleOp, refused: boolean | MessagePermit): Promise<boolean | MessagePermit> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        if (q.op === 'connection') this.abandoned.set(id, { mta: q.mta, key: q.key });
        resolve(refused);
      }, ASK_MS);
      this.pending.set(id, (value) => {
        clearTimeout(timer);
        resolve(value);
      });
      this.send({ type: 'throttle', id, q });
    });
  }
}
