// A proxy worker's ThrottleAuthority: every decision is the primary's (one
// ClusterThrottles per node), asked over the cluster IPC channel. MTA ids are
// prefixed with this worker's index and pid, so ids from two workers, or from
// a worker and the one that replaced it, never meet in the primary's counts.
import type { ClusterLimits, MessagePermit } from '../shared/throttle/cluster-throttles';
import type { FromProxyWorker, ThrottleOp } from './ipc';
import type { ThrottleAuthority } from './throttle-authority';

export class WorkerThrottles implements ThrottleAuthority {
  private nextId = 0;
  private readonly pending = new Map<number, (value: boolean | MessagePermit) => void>();
  private readonly prefix: string;

  constructor(
    worker: number,
    private readonly send: (m: FromProxyWorker) => void,
  ) {
    this.prefix = `w${worker}.${process.pid}/`;
  }

  /** The primary's answer to one of our questions. */
  answer(id: number, value: boolean | MessagePermit): void {
    const resolve = this.pending.get(id);
    this.pending.delete(id);
    resolve?.(value);
  }

  tryConnection(mta: string, key: string, limits: ClusterLimits, reclaim = false): Promise<boolean> {
    return this.ask({ op: 'connection', mta: this.prefix + mta, key, limits, reclaim }) as Promise<boolean>;
  }

  tryMessage(mta: string, key: string, limits: ClusterLimits): Promise<MessagePermit> {
    return this.ask({ op: 'message', mta: this.prefix + mta, key, limits }) as Promise<MessagePermit>;
  }

  // No answer wanted: the IPC channel keeps order, so a later acquire sees the release done.
  releaseConnection(mta: string, key: string): void {
    this.send({ type: 'throttle', id: 0, q: { op: 'release', mta: this.prefix + mta, key } });
  }

  forget(mta: string): void {
    this.send({ type: 'throttle', id: 0, q: { op: 'forget', mta: this.prefix + mta } });
  }

  private ask(q: ThrottleOp): Promise<boolean | MessagePermit> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.send({ type: 'throttle', id, q });
    });
  }
}
