import { open, type FileHandle } from 'node:fs/promises';

interface Handle {
  fh: Promise<FileHandle>;
  users: number;
  retired: boolean;
}

/**
 * Read handles of segment files, kept open between reads. A message read for
 * delivery that is no longer in the recent-body cache (a retry, the backlog
 * after a restart) cost open+read+close, three trips through libuv's thread
 * pool; with the handle kept it is one. A handle is separate from the writer's:
 * the writer may roll to a new segment and close its own at any time.
 */
export class SegmentHandles {
  private readonly handles = new Map<number, Handle>();
  private closed = false;

  constructor(
    private readonly pathOf: (segment: number) => string,
    private readonly max = 8,
  ) {}

  async use<T>(segment: number, read: (fh: FileHandle) => Promise<T>): Promise<T> {
    if (this.closed) {
      // The partition is closed: a late read still gets its answer, on a handle of its own.
      const fh = await open(this.pathOf(segment), 'r');
      try {
        return await read(fh);
      } finally {
        await fh.close();
      }
    }
    let h = this.handles.get(segment);
    if (h) {
      // Most recently used last: eviction takes the first.
      this.handles.delete(segment);
      this.handles.set(segment, h);
    } else {
      const opened = open(this.pathOf(segment), 'r');
      const fresh: Handle = { fh: opened, users: 0, retired: false };
      h = fresh;
      this.handles.set(segment, fresh);
      // A failed open is not kept: the next read tries again.
      opened.catch(() => {
        if (this.handles.get(segment) === fresh) this.handles.delete(segment);
      });
      this.evict();
    }
    h.users++;
    try {
      return await read(await h.fh);
    } finally {
      h.users--;
      if (h.retired && h.users === 0) closeQuietly(h);
    }
  }

  /** The segment was deleted or is no longer wanted: its handle closes once its reads finish. */
  retire(segment: number): void {
    const h = this.handles.get(segment);
    if (!h) return;
    this.handles.delete(segment);
    h.retired = true;
    if (h.users === 0) closeQuietly(h);
  }

  closeAll(): void {
    this.closed = true;
    for (const segment of [...this.handles.keys()]) this.retire(segment);
  }

  get open(): number {
    return this.handles.size;
  }

  private evict(): void {
    for (const segment of this.handles.keys()) {
      if (this.handles.size <= this.max) return;
      this.retire(segment);
    }
  }
}

function closeQuietly(h: Handle): void {
  h.fh.then(
    (fh) => fh.close().catch(() => undefined),
    () => undefined,
  );
}
