// The secondary's batches taken together: a batch frame and every batch
// frame already queued behind it on the link (of the same epoch) become one
// list of operations and one body, applied with one write pass and one
// fdatasync per touched file (apply.ts), after which each batch is acked in
// order. Under mode sync the primary keeps two batches on the link, and the
// second one arrives while the secondary waits for the first one's disk: on
// a busy machine more queue up, and each fdatasync and its thread-pool trip
// is the secondary's largest cost per batch. Concatenating is exact: ops
// apply in order and carry absolute offsets, bodies follow their ops.
import type { Frame } from '../shared/proxy-protocol';
import { parseOps, type BatchOp } from './apply';

export interface BatchGroup {
  /** The batches' sequence numbers, in the order they came (and are acked). */
  seqs: unknown[];
  ops: BatchOp[];
  body: Buffer;
  /** The newest batch frame (its header carries the newest lag). */
  last: Frame;
}

/** Where the next queued frame comes from: the link's frame channel. */
export interface QueuedFrames {
  peek(): Frame | undefined;
  next(): Promise<Frame>;
}

/**
 * `first` and the batch frames queued right behind it with the same epoch,
 * taken off `link` (synchronously: only frames already here). Every batch's
 * ops are checked against its own body before anything is applied: one bad
 * batch refuses the group (nothing of it is acked).
 */
export function gatherBatches(link: QueuedFrames, first: Frame): BatchGroup {
  const frames = [first];
  for (let q = link.peek(); q !== undefined && q.header.t === 'batch' && q.header.epoch === first.header.epoch; q = link.peek()) {
    // The head of the queue: next() hands it out at once.
    void link.next();
    frames.push(q);
  }
  const ops: BatchOp[] = [];
  const bodies: Buffer[] = [];
  for (const f of frames) {
    const body = f.body ?? Buffer.alloc(0);
    for (const op of parseOps(f.header.ops, body.length)) ops.push(op);
    bodies.push(body);
  }
  return { seqs: frames.map((f) => f.header.seq), ops, body: frames.length === 1 ? bodies[0] : Buffer.concat(bodies), last: frames[frames.length - 1] };
}
