// How the primary tells its secondary the lag it measured (the secondary
// shows it in its status): in the header of the batch that goes out anyway,
// and in a `status` frame of its own only when no batch goes out and the
// figure changed since it was last told. Under sync intake the lag changes
// before nearly every batch: a status frame each time was one TLS write on
// the primary and one frame read on the secondary per batch (every frame
// write is a loopback syscall that wakes the peer, the top item of both
// mirrors' profiles), for a figure the batch can carry.

export interface LagFields {
  lag_bytes: number;
  lag_seconds: number;
}

export class LagReport {
  private told = '';

  /** The fields a batch about to go out carries; the secondary then knows this figure. */
  forBatch(lagBytes: number, lagSeconds: number): LagFields {
    this.told = key(lagBytes, lagSeconds);
    return { lag_bytes: lagBytes, lag_seconds: lagSeconds };
  }

  /** No batch goes out: the fields of a status frame to send, or undefined when the secondary knows this figure already. */
  forIdle(lagBytes: number, lagSeconds: number): LagFields | undefined {
    const k = key(lagBytes, lagSeconds);
    if (k === this.told) return undefined;
    this.told = k;
    return { lag_bytes: lagBytes, lag_seconds: lagSeconds };
  }
}

/** The lag a frame from the primary carries (a status frame, or a batch from a primary that sends it), if it carries one. */
export function lagOf(header: Record<string, unknown>): { bytes: number; seconds: number } | undefined {
  const b = header.lag_bytes;
  const s = header.lag_seconds;
  if (typeof b !== 'number' && typeof s !== 'number') return undefined;
  return { bytes: typeof b === 'number' ? b : 0, seconds: typeof s === 'number' ? s : 0 };
}

/** Tenths of a second are what the status shows: a change below that is not worth a frame. */
function key(lagBytes: number, lagSeconds: number): string {
  return `${lagBytes} ${lagBytes === 0 ? 0 : lagSeconds.toFixed(1)}`;
}
